#!/usr/bin/env node
'use strict';
/**
 * Publish rate of ONE process through RedisBroker, and redis-server CPU per
 * publish (INFO cpu before/after, summed over the masters), on one Redis or on
 * a 3-master Redis Cluster that this script starts on loopback ports and stops.
 *
 *   node bench/publish-rate.js [--topology single|cluster] [--seconds 5] [--inflight 64]
 *                              [--channels 100] [--history 1000] [--bytes 100]
 *
 * Prints ONE JSON line. Uses the built package (dist/) unless SSE_RELAY_DIST names another build.
 */
const { spawn, execFile } = require('node:child_process');
const { mkdtempSync, rmSync } = require('node:fs');
const { createServer } = require('node:net');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

function arg(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  return i === -1 ? fallback : process.argv[i + 1];
}
const topology = arg('topology', 'single');
const seconds = Number(arg('seconds', '5'));
const inflight = Number(arg('inflight', '64'));
const channelCount = Number(arg('channels', '100'));
const history = Number(arg('history', '1000'));
const bytes = Number(arg('bytes', '100'));
if (!['single', 'cluster'].includes(topology)) throw new Error('--topology must be single or cluster');

const { RedisBroker } = require(process.env.SSE_RELAY_DIST || '../dist');
const Redis = require('ioredis');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const children = [];
const dirs = [];
function cleanup() {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(1));

async function startServer(extra = []) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'sse-relay-bench-'));
  dirs.push(dir);
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--loglevel',
      'warning',
      ...extra,
    ],
    { stdio: 'ignore' },
  );
  children.push(child);
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => 20 });
  for (let i = 0; i < 200; i++) {
    try {
      await c.connect();
      if ((await c.ping()) === 'PONG') break;
    } catch {
      await sleep(25);
    }
  }
  c.disconnect();
  return port;
}

async function cpuSeconds(ports) {
  let total = 0;
  for (const port of ports) {
    const c = new Redis({ port, host: '127.0.0.1' });
    const info = await c.info('cpu');
    c.disconnect();
    const user = Number(/used_cpu_user:([\d.]+)/.exec(info)[1]);
    const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)[1]);
    total += user + sys;
  }
  return total;
}

async function main() {
  let ports;
  let broker;
  if (topology === 'single') {
    ports = [await startServer()];
    broker = new RedisBroker({ url: `redis://127.0.0.1:${ports[0]}`, commandTimeout: 10000 });
  } else {
    ports = [];
    for (let i = 0; i < 3; i++)
      ports.push(await startServer(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf']));
    await new Promise((resolve, reject) =>
      execFile('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-yes'], (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    for (let i = 0; i < 200; i++) {
      const c = new Redis({ port: ports[0], host: '127.0.0.1' });
      const info = await c.cluster('INFO');
      c.disconnect();
      if (info.includes('cluster_state:ok')) break;
      await sleep(50);
    }
    await sleep(500);
    broker = new RedisBroker({
      cluster: ports.map((port) => ({ host: '127.0.0.1', port })),
      commandTimeout: 10000,
      ...(arg('partitions') ? { partitions: Number(arg('partitions')) } : {}),
    });
  }
  const channels = Array.from({ length: channelCount }, (_, i) => `bench:${i}`);
  const data = 'x'.repeat(bytes);
  let count = 0;
  let running = true;
  let next = 0;
  const worker = async () => {
    while (running) {
      await broker.publish(channels[next++ % channels.length], { data }, history);
      count++;
    }
  };
  // warm up (fills histories so trimming is part of the measurement)
  running = true;
  const warm = Array.from({ length: inflight }, worker);
  await sleep(1500);
  running = false;
  await Promise.all(warm);
  const cpu0 = await cpuSeconds(ports);
  count = 0;
  running = true;
  const t0 = process.hrtime.bigint();
  const cpuProc0 = process.cpuUsage();
  const workers = Array.from({ length: inflight }, worker);
  await sleep(seconds * 1000);
  running = false;
  await Promise.all(workers);
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const proc = process.cpuUsage(cpuProc0);
  const cpu1 = await cpuSeconds(ports);
  await broker.close();
  const result = {
    bench: 'publish-rate',
    topology,
    masters: ports.length,
    inflight,
    channels: channelCount,
    history,
    dataBytes: bytes,
    publishes: count,
    seconds: Number(elapsed.toFixed(3)),
    publishesPerSecond: Math.round(count / elapsed),
    redisCpuUsPerPublish: Number((((cpu1 - cpu0) * 1e6) / count).toFixed(3)),
    nodeCpuUsPerPublish: Number(((proc.user + proc.system) / count).toFixed(3)),
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().then(
  () => {
    cleanup();
    process.exit(0);
  },
  (err) => {
    console.error(err);
    cleanup();
    process.exit(1);
  },
);
