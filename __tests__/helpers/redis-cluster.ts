/**
 * A real Redis Cluster on loopback ports for tests: 6 redis-servers
 * (`--cluster-enabled yes`, each with its own temp dir), `redis-cli --cluster
 * create ... --cluster-replicas 1` (3 masters, 1 replica each), ready once
 * every node reports `cluster_state:ok` and agrees on all 16384 slots. A node can be
 * SIGKILLed and started again on its own dir (`crash`), a master with no failover
 * meanwhile. Stopped (every process, every dir) by `stop()`.
 */
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import Redis from 'ioredis';
import { freePort, portFree, startRedis, type RedisServer } from './redis-server';

export interface ClusterNodeInfo {
  readonly port: number;
  readonly server: RedisServer;
}

export interface RedisCluster {
  readonly nodes: ClusterNodeInfo[];
  /** `[{ host, port }]` of every node, for `new Cluster(...)` / `RedisBroker({ cluster })`. */
  readonly startup: { host: string; port: number }[];
  /** Port -> 'master' | 'replica', as the cluster says now. */
  roles(): Promise<Map<number, 'master' | 'replica'>>;
  /** The port of the master serving `slot` now. */
  masterOf(slot: number): Promise<number>;
  /** A plain client to one node. */
  client(port: number): Redis;
  /** Resolves once every running node reports cluster_state:ok and the same slot owners, and every replica is in sync. */
  waitHealthy(ms?: number): Promise<void>;
  /** Ports of the running replicas of master `port`. */
  replicasOf(port: number): Promise<number[]>;
  /**
   * SIGKILLs node `port` (no save at exit: its dir keeps nodes.conf and the dump.rdb it last
   * SAVEd). A master's replicas are first told not to take over, so it stays the master of its
   * slots however long it is down. `restart()` starts it again on the same port and dir, with
   * the data of that dump, resolves once the cluster is healthy again (a restarted master's
   * replicas resynced from it), and then lets those replicas fail over again; once restarted,
   * it resolves at once.
   */
  crash(port: number): Promise<CrashedNode>;
  stop(): Promise<void>;
}

export interface CrashedNode {
  readonly port: number;
  restart(): Promise<void>;
}

/** Every node's arguments (a restarted node gets the same). */
const NODE_ARGS = [
  '--cluster-enabled',
  'yes',
  '--cluster-config-file',
  'nodes.conf',
  '--cluster-node-timeout',
  '1000',
  '--enable-debug-command',
  'yes',
];

function redisCli(): string {
  for (const c of [process.env.REDIS_CLI_BIN, '/usr/bin/redis-cli', '/usr/local/bin/redis-cli'])
    if (c && existsSync(c)) return c;
  throw new Error('redis-cli was not found: install the Debian package redis-server (or redis-tools)');
}

export function run(args: string[], timeout = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(redisCli(), args, { timeout }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.slice(0, 4).join(' ')} failed: ${stderr || stdout || err.message}`));
      else resolve(stdout);
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startCluster(): Promise<RedisCluster> {
  const ports: number[] = [];
  for (let i = 0; ports.length < 6; i++) {
    if (i === 1000) throw new Error('no 6 free port pairs (port and port + 10000) found on 127.0.0.1');
    const p = await freePort();
    // the cluster bus listens on port + 10000: that one must be free too
    if (!ports.includes(p) && p < 55_000 && (await portFree(p + 10_000))) ports.push(p);
  }
  const nodes: ClusterNodeInfo[] = [];
  const clients: Redis[] = [];
  /** Dirs of restarted nodes (started on a dir given, so their stop() keeps it). */
  const dirs: string[] = [];
  const stopAll = async (): Promise<void> => {
    for (const c of clients.splice(0)) c.disconnect();
    await Promise.all(nodes.map((n) => n.server.stop()));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  };
  try {
    for (const port of ports) {
      const server = await startRedis({ port, args: NODE_ARGS });
      nodes.push({ port, server });
    }
    await run(
      ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'],
      60_000,
    );
  } catch (err) {
    await stopAll();
    throw err;
  }
  const client = (port: number): Redis => {
    const c = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, lazyConnect: false });
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };
  const admins = new Map<number, Redis>();
  const admin = (port: number): Redis => {
    let c = admins.get(port);
    if (c === undefined) admins.set(port, (c = client(port)));
    return c;
  };
  const alive = (): ClusterNodeInfo[] =>
    nodes.filter((n) => n.server.process.exitCode === null && n.server.process.signalCode === null);
  const slotsOf = async (port: number): Promise<string> => {
    const slots = (await admin(port).call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    return JSON.stringify(slots.map((r) => [r[0], r[1], r[2][1]]).sort((a, b) => a[0]! - b[0]!));
  };
  const cluster: RedisCluster = {
    nodes,
    startup: ports.map((port) => ({ host: '127.0.0.1', port })),
    async roles() {
      const out = new Map<number, 'master' | 'replica'>();
      for (const n of alive()) {
        const info = (await admin(n.port).call('ROLE')) as unknown[];
        out.set(n.port, info[0] === 'master' ? 'master' : 'replica');
      }
      return out;
    },
    async masterOf(slot) {
      const slots = (await admin(alive()[0]!.port).call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
      const r = slots.find((x) => slot >= x[0] && slot <= x[1]);
      if (r === undefined) throw new Error(`no master for slot ${slot}`);
      return Number(r[2][1]);
    },
    client,
    async waitHealthy(ms = 30_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        try {
          const live = alive();
          const infos = await Promise.all(live.map((n) => admin(n.port).call('CLUSTER', 'INFO') as Promise<string>));
          if (infos.every((i) => i.includes('cluster_state:ok'))) {
            const views = await Promise.all(live.map((n) => slotsOf(n.port)));
            const covered = JSON.parse(views[0]!) as number[][];
            const total = covered.reduce((sum, r) => sum + r[1]! - r[0]! + 1, 0);
            // and every replica in sync with its master: one that never synced cannot take over
            const links = await Promise.all(
              live.map((n) => admin(n.port).call('INFO', 'replication') as Promise<string>),
            );
            const synced = links.every((i) => i.includes('role:master') || i.includes('master_link_status:up'));
            if (total === 16384 && views.every((v) => v === views[0]) && synced) return;
          }
        } catch {
          // a node still starting or failing over
        }
        if (Date.now() > deadline) throw new Error(`the Redis Cluster did not become healthy within ${ms} ms`);
        await sleep(100);
      }
    },
    async replicasOf(port) {
      const out: number[] = [];
      for (const n of alive()) {
        const role = (await admin(n.port).call('ROLE')) as unknown[];
        if (role[0] === 'slave' && Number(role[2]) === port) out.push(n.port);
      }
      return out;
    },
    async crash(port) {
      const i = nodes.findIndex((n) => n.port === port);
      const role = (await cluster.roles()).get(port);
      if (i === -1 || role === undefined) throw new Error(`127.0.0.1:${port} is not a running node of this cluster`);
      // A replica whose master is unreachable for cluster-node-timeout (1 s here) starts an
      // election and takes its slots. Restarting "quickly enough" is a race on 2 shared cores,
      // so each replica is told not to (cluster-replica-no-failover: it never starts an
      // automatic failover), whatever the time the master stays down. The cluster reports
      // cluster_state:fail meanwhile (its slots are served by nobody), and the restarted master
      // is master of them again: its replicas then resync from it, the older data.
      const held = role === 'master' ? await cluster.replicasOf(port) : [];
      for (const r of held) await admin(r).call('CONFIG', 'SET', 'cluster-replica-no-failover', 'yes');
      const old = nodes[i]!.server;
      await old.kill();
      let restarting: Promise<void> | undefined;
      return {
        port,
        restart: () =>
          (restarting ??= (async () => {
            const server = await startRedis({ port, dir: old.dir, args: NODE_ARGS });
            nodes[i] = { port, server };
            dirs.push(old.dir);
            await cluster.waitHealthy();
            for (const r of held) await admin(r).call('CONFIG', 'SET', 'cluster-replica-no-failover', 'no');
          })()),
      };
    },
    stop: stopAll,
  };
  try {
    await cluster.waitHealthy();
  } catch (err) {
    await stopAll();
    throw err;
  }
  return cluster;
}
