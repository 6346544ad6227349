'use strict';
// A Redis Cluster for the bench: either the caller's (startup nodes, all on
// 127.0.0.1) or three masters started here (no replicas), reaped with the run.
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { sleep, freePort, redisCommand, startRedis } = require('./procs');

const REDIS_CLI = '/usr/bin/redis-cli';

// Temp dirs of clusters still running: removed on exit too (the runner's watchdog exits without awaiting stop()).
const dirs = new Set();
process.on('exit', () => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** "127.0.0.1:7000,127.0.0.1:7001" -> [{ host, port }]; only loopback nodes are accepted. */
function parseNodes(spec) {
  return spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const m = /^(127\.0\.0\.1|localhost):(\d{1,5})$/.exec(s);
      if (m === null) {
        throw new RangeError(
          `bench: cluster node ${JSON.stringify(s)} must be 127.0.0.1:<port> (the bench stays on loopback)`,
        );
      }
      return { host: '127.0.0.1', port: Number(m[2]) };
    });
}

/** The masters of the cluster that `node` belongs to (CLUSTER NODES), as [{ host, port }]. */
async function masters(node) {
  const text = await redisCommand(node.port, 'CLUSTER', 'NODES');
  if (typeof text !== 'string' || text.startsWith('-')) throw new Error(`CLUSTER NODES on ${node.port}: ${text}`);
  const out = [];
  for (const line of text.split('\n')) {
    const [, addr, flags] = line.split(' ');
    if (!flags || !flags.split(',').includes('master') || flags.includes('fail')) continue;
    const [host, port] = addr.split('@')[0].split(':');
    if (host !== '127.0.0.1') throw new RangeError(`bench: cluster master ${addr} is not on 127.0.0.1`);
    out.push({ host, port: Number(port) });
  }
  return out;
}

async function waitClusterOk(nodes, timeoutMs) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const states = await Promise.all(nodes.map((n) => redisCommand(n.port, 'CLUSTER', 'INFO').catch(() => '')));
    if (states.every((s) => typeof s === 'string' && s.includes('cluster_state:ok'))) return;
    if (Date.now() > until) throw new Error('the bench cluster did not reach cluster_state:ok');
    await sleep(100);
  }
}

/** Starts three cluster-enabled masters on free loopback ports and joins them (16384 slots spread). */
async function startCluster() {
  if (!fs.existsSync(REDIS_CLI)) throw new Error(`redis-cli not found (${REDIS_CLI})`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sse-relay-bench-cluster-'));
  dirs.add(dir);
  const servers = [];
  try {
    for (let i = 0; i < 3; i++) {
      const busPort = await freePort();
      const r = await startRedis(
        [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${i}.conf`,
          '--cluster-port',
          String(busPort),
          '--dir',
          dir,
        ],
        dir,
      );
      if (r.skip) throw new Error(r.skip);
      servers.push(r);
    }
    const addrs = servers.map((s) => `127.0.0.1:${s.port}`);
    await new Promise((resolve, reject) => {
      execFile(
        REDIS_CLI,
        ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'],
        { timeout: 30_000 },
        (err, stdout, stderr) =>
          err ? reject(new Error(`redis-cli --cluster create: ${err.message} ${stderr}`)) : resolve(stdout),
      );
    });
    const nodes = servers.map((s) => ({ host: '127.0.0.1', port: s.port }));
    await waitClusterOk(nodes, 15_000);
    const stop = async () => {
      await Promise.all(servers.map((s) => s.stop()));
      fs.rmSync(dir, { recursive: true, force: true });
      dirs.delete(dir);
    };
    return { nodes, stop };
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    fs.rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
    throw err;
  }
}

module.exports = { parseNodes, masters, startCluster };
