/**
 * A real Sentinel setup on loopback ports for failover tests: a master, one
 * replica of it and one Sentinel (quorum 1) watching them as `mymaster`, each
 * a redis-server of its own with its own temp dir. `failover()` runs
 * `SENTINEL FAILOVER` and resolves once Sentinel names the replica as master,
 * it says so itself, and the old master has been turned into its replica
 * (Sentinel does that about 10 s later: until then both accept writes, and
 * what the old one acknowledges is lost). `stop()` stops every process and
 * removes every dir.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { freePort, redisServerBinary, startRedis, waitForRedis, type RedisServer } from './redis-server';
import { until } from './wait';

export const MASTER_NAME = 'mymaster';

export interface SentinelSet {
  readonly master: RedisServer;
  readonly replica: RedisServer;
  readonly sentinelPort: number;
  /** `{ sentinels, name }` for an ioredis client that finds the master through Sentinel. */
  readonly clientOptions: { sentinels: { host: string; port: number }[]; name: string };
  /** The port Sentinel names as the master now. */
  masterPort(): Promise<number>;
  failover(): Promise<void>;
  stop(): Promise<void>;
}

export async function startSentinelSet(): Promise<SentinelSet> {
  const admin: Redis[] = [];
  const connect = (port: number): Redis => {
    const c = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, lazyConnect: false });
    c.on('error', () => undefined);
    admin.push(c);
    return c;
  };
  const master = await startRedis();
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
  const dir = mkdtempSync(join(tmpdir(), 'sse-relay-sentinel-'));
  const sentinelPort = await freePort();
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${sentinelPort}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${master.port} 1`,
      `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
      `sentinel failover-timeout ${MASTER_NAME} 10000`,
      '',
    ].join('\n'),
  );
  const sentinel = spawn(redisServerBinary(), [conf, '--sentinel'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => sentinel.once('exit', () => resolve()));
  const stopAll = async (): Promise<void> => {
    for (const c of admin) c.disconnect();
    if (sentinel.exitCode === null && sentinel.signalCode === null) {
      sentinel.kill('SIGKILL');
      await exited;
    }
    await replica.stop();
    await master.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForRedis(sentinelPort);
    const s = connect(sentinelPort);
    const r = connect(replica.port);
    await until(
      async () => /master_link_status:up/.test((await r.info('replication').catch(() => '')) as string),
      'the replica to sync with its master',
      10_000,
    );
    await until(
      async () => {
        const reps = (await s.call('SENTINEL', 'REPLICAS', MASTER_NAME).catch(() => [])) as unknown[];
        return reps.length === 1;
      },
      'Sentinel to see the replica',
      15_000,
    );
    const masterPort = async (): Promise<number> => {
      const addr = (await s.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [string, string];
      return Number(addr[1]);
    };
    return {
      master,
      replica,
      sentinelPort,
      clientOptions: { sentinels: [{ host: '127.0.0.1', port: sentinelPort }], name: MASTER_NAME },
      masterPort,
      async failover() {
        const before = await masterPort();
        const next = before === master.port ? replica.port : master.port;
        await s.call('SENTINEL', 'FAILOVER', MASTER_NAME);
        const promoted = connect(next);
        const demoted = connect(before);
        await until(
          async () =>
            (await masterPort()) === next &&
            /role:master/.test((await promoted.info('replication').catch(() => '')) as string),
          'Sentinel to promote the replica',
          20_000,
        );
        await until(
          async () => /role:slave/.test((await demoted.info('replication').catch(() => '')) as string),
          'Sentinel to turn the old master into a replica',
          30_000,
        );
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
