'use strict';
// `npm run bench`: sse-relay against a raw node:http baseline and better-sse.
//
// Every server under test runs in its own child process (bench/server.js);
// load comes from separate client processes (bench/client.js) over raw TCP on
// 127.0.0.1. Servers publish on command with process.hrtime.bigint() in the
// event data; clients on the same machine read the same CLOCK_MONOTONIC, so
// publish -> receive latency needs no clock sync.
//
// Env: BENCH_QUICK=1   a ~1-minute smoke run (smaller counts)
//      BENCH_ONLY=a,b  only these scenarios (fanout, throughput, large, paced, idle, redis)
//      BENCH_SERVERS=a,b  only these servers (raw, better-sse, sse-relay, sse-relay-redis)
//      BENCH_PROF=kind[,kind]  run those servers under --cpu-prof (bench/results/prof/)
//      BENCH_SERVER_FLAGS="--trace-gc ..."  extra node flags for the server processes (diagnosis)
//      BENCH_HUB_OPTIONS='{"history":0}'  extra createHub options for the sse-relay servers (experiments)
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { BUCKETS, quantile, mergeHist } = require('./common');

const QUICK = process.env.BENCH_QUICK === '1';
const ONLY = (process.env.BENCH_ONLY || '').split(',').filter(Boolean);
const SERVERS_ONLY = (process.env.BENCH_SERVERS || '').split(',').filter(Boolean);
const PROF = (process.env.BENCH_PROF || '').split(',').filter(Boolean);
const NCPU = os.cpus().length;
const RESULTS = path.join(__dirname, 'results');
const PROF_DIR = path.join(RESULTS, 'prof');
const BUDGET_MS = QUICK ? 150_000 : 585_000; // hard stop: everything killed
const STARTED = Date.now();
const REDIS_BIN = '/usr/bin/redis-server';
const SERVERS = ['raw', 'better-sse', 'sse-relay', 'sse-relay-redis'];
// Load generators: one per core (at least 2) so no single client process is the limit.
const CLIENT_PROCS = Math.max(2, NCPU);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const q = (full, quick) => (QUICK ? quick : full);

const SCENARIOS = [
  {
    name: 'fanout',
    title: 'fan-out',
    clients: q(1000, 200),
    events: q(2000, 300),
    size: 100,
    batch: 10,
    rate: 0,
    sameRate: true,
  },
  {
    name: 'throughput',
    title: 'throughput',
    clients: 10,
    events: q(100_000, 10_000),
    size: 100,
    batch: 100,
    rate: 0,
    sameRate: true,
  },
  {
    name: 'large',
    title: 'large payloads',
    clients: q(100, 20),
    events: q(2000, 200),
    size: 16384,
    batch: 4,
    rate: 0,
  },
  {
    name: 'paced',
    title: 'paced latency',
    clients: q(1000, 200),
    events: q(200, 60), // 20/s for ~10 s (quick: ~3 s)
    size: 100,
    rate: 20,
  },
  { name: 'idle', title: 'idle memory', streams: q(10_000, 1000) },
  {
    // Few clients, many events: the broker hop per event is what is measured,
    // not the fan-out (1,000 clients would make each event's own fan-out the tail).
    name: 'redis',
    title: 'Redis path',
    clients: q(100, 50),
    events: q(2000, 400), // 200/s for ~10 s (quick: ~2 s)
    size: 100,
    rate: 200,
  },
];

// ---- child processes ---------------------------------------------------------

const children = new Set();
let nofileWrap = 0; // > 0: start children under `ulimit -n <this>`

function spawnTracked(command, args, opts) {
  const child = spawn(command, args, opts);
  children.add(child);
  child.once('exit', () => children.delete(child));
  child.once('error', () => children.delete(child));
  return child;
}

function killAll() {
  for (const child of children) {
    try {
      child.kill(child.guarded ? 'SIGTERM' : 'SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
}

class Proc {
  constructor(name, script, args, execArgv = []) {
    this.name = name;
    this.nextId = 1;
    this.pending = new Map();
    this.exited = false;
    const nodeArgs = [...execArgv, path.join(__dirname, script), ...args];
    const stdio = ['ignore', 'inherit', 'inherit', 'ipc'];
    this.child = nofileWrap > 0
      ? spawnTracked('/bin/sh', ['-c', `ulimit -n ${nofileWrap} && exec "$0" "$@"`, process.execPath, ...nodeArgs], { stdio })
      : spawnTracked(process.execPath, nodeArgs, { stdio });
    this.ready = new Promise((resolve, reject) => {
      this.child.on('message', (msg) => {
        if (msg && msg.id !== undefined) {
          const p = this.pending.get(msg.id);
          if (p === undefined) return;
          this.pending.delete(msg.id);
          clearTimeout(p.timer);
          if (msg.error !== undefined) p.reject(new Error(`${this.name}: ${msg.error}`));
          else p.resolve(msg);
        } else if (msg && msg.type === 'ready') resolve(msg);
        else if (msg && msg.type === 'fatal') reject(new Error(`${this.name}: ${msg.error}`));
      });
      this.child.once('exit', (code, signal) => {
        this.exited = true;
        const err = new Error(`${this.name} exited (${signal || code})`);
        reject(err);
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(err);
        }
        this.pending.clear();
      });
    });
    this.ready.catch(() => undefined);
  }

  call(cmd, args = {}, timeoutMs = 30_000) {
    if (this.exited) return Promise.reject(new Error(`${this.name} is not running`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: ${cmd} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.child.send({ id, cmd, ...args });
    });
  }

  async stop() {
    if (this.exited) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    await this.call('exit', {}, 2000).catch(() => undefined);
    const ok = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
    if (!ok) this.child.kill('SIGKILL');
  }
}

async function startServer(kind, label, redisUrl) {
  const execArgv = ['--expose-gc', ...(process.env.BENCH_SERVER_FLAGS || '').split(' ').filter(Boolean)];
  if (PROF.includes(kind)) {
    fs.mkdirSync(PROF_DIR, { recursive: true });
    execArgv.push('--cpu-prof', '--cpu-prof-dir', PROF_DIR, '--cpu-prof-name', `${label}-${kind}.cpuprofile`);
  }
  const hubOptions = JSON.parse(process.env.BENCH_HUB_OPTIONS || '{}');
  const proc = new Proc(`server ${kind}`, 'server.js', [kind, JSON.stringify({ redisUrl, hubOptions })], execArgv);
  const ready = await withTimeout(proc.ready, 15_000, `${kind} did not start`);
  proc.port = ready.port;
  return proc;
}

async function startClients(n) {
  const procs = [];
  for (let i = 0; i < n; i++) procs.push(new Proc(`client ${i}`, 'client.js', []));
  await Promise.all(procs.map((p) => withTimeout(p.ready, 15_000, 'client did not start')));
  return procs;
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} (${ms} ms)`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Spreads `total` streams over the client processes and waits until each has its 200 head. */
async function connectAll(clients, port, total) {
  const per = clients.map((_, i) => Math.floor(total / clients.length) + (i < total % clients.length ? 1 : 0));
  const results = await Promise.all(
    clients.map((c, i) =>
      per[i] === 0
        ? { opened: 0, failed: 0 }
        : c.call('connect', { port, count: per[i], path: '/events', concurrency: 128 }, 120_000),
    ),
  );
  const opened = results.reduce((a, r) => a + r.opened, 0);
  const failed = results.reduce((a, r) => a + r.failed, 0);
  if (opened !== total) {
    const why = results.map((r) => r.lastError).filter(Boolean)[0] || '';
    throw new Error(`only ${opened} of ${total} streams opened (${failed} failed ${why})`);
  }
}

async function waitSubscribers(server, n, timeoutMs = 30_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const { subscribers } = await server.call('count');
    if (subscribers === n) return;
    if (Date.now() > until) throw new Error(`server has ${subscribers} subscribers, expected ${n}`);
    await sleep(50);
  }
}

// ---- redis-server ------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Sends one Redis command; resolves with the first reply line. */
function redisCommand(port, ...args) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('redis did not answer'));
    }, 2000);
    socket.on('connect', () => {
      socket.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''));
    });
    socket.on('data', (d) => {
      reply += d.toString();
      const i = reply.indexOf('\r\n');
      if (i !== -1) {
        clearTimeout(timer);
        socket.end();
        resolve(reply.slice(0, i));
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function startRedis() {
  if (!fs.existsSync(REDIS_BIN)) return { skip: `redis-server not found (${REDIS_BIN}): Redis rows skipped` };
  let lib;
  try {
    lib = require('../dist');
  } catch (err) {
    return { skip: `dist/ failed to load: ${err.message}` };
  }
  if (typeof lib.RedisBroker !== 'function') {
    return { skip: 'RedisBroker is not exported by dist/ yet (lib/brokers/redis.ts in progress): Redis rows skipped' };
  }
  const port = await freePort();
  // redis-server has no IPC channel to notice that we died, so it runs under a
  // shell that holds a pipe from us: EOF on that pipe (our exit, even SIGKILL)
  // or SIGTERM ends redis-server too.
  const guard = 'trap \'kill $p 2>/dev/null; wait $p; exit 0\' TERM INT HUP; "$0" "$@" </dev/null & p=$!; read _; kill $p 2>/dev/null; wait $p';
  const child = spawnTracked(
    '/bin/sh',
    ['-c', guard, REDIS_BIN, '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['pipe', 'ignore', 'inherit'] },
  );
  child.guarded = true;
  const until = Date.now() + 10_000;
  for (;;) {
    try {
      if ((await redisCommand(port, 'PING')) === '+PONG') break;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null || Date.now() > until) throw new Error('redis-server did not start');
    await sleep(50);
  }
  return { port, url: `redis://127.0.0.1:${port}`, child };
}

// ---- one measured run ----------------------------------------------------------

/** Busy CPU seconds of the whole machine so far (/proc/stat), to see load that is not ours. */
function machineBusyS() {
  try {
    const line = fs.readFileSync('/proc/stat', 'latin1').split('\n', 1)[0];
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = v[3] + (v[4] || 0);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return (total - idle) / 100; // USER_HZ
  } catch {
    return NaN;
  }
}

/**
 * Waits (bounded, from a shared budget) until the machine is quiet: other
 * people's processes using less than a quarter of a core. Returns the load seen.
 */
let quietBudgetMs = QUICK ? 10_000 : 90_000;
async function waitQuiet(maxMs) {
  const until = Date.now() + Math.min(maxMs, quietBudgetMs);
  const started = Date.now();
  let load = NaN;
  for (;;) {
    const b0 = machineBusyS();
    const o0 = ourCpuS();
    const t0 = Date.now();
    await sleep(500);
    load = (machineBusyS() - b0 - (ourCpuS() - o0)) / ((Date.now() - t0) / 1000);
    if (!(load >= 0.25) || Date.now() >= until) break;
  }
  quietBudgetMs = Math.max(0, quietBudgetMs - (Date.now() - started));
  return load;
}

/** CPU seconds used so far by this orchestrator and every child it started (redis-server included). */
function ourCpuS() {
  const self = process.cpuUsage();
  let s = (self.user + self.system) / 1e6;
  for (const child of children) {
    try {
      const stat = fs.readFileSync(`/proc/${child.pid}/stat`, 'latin1');
      const v = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      s += (Number(v[11]) + Number(v[12])) / 100; // utime, stime in USER_HZ
    } catch {
      // gone
    }
  }
  return s;
}

function sumCpu(r) {
  return r.cpuUser + r.cpuSystem;
}

/**
 * Streams `scn.clients` clients to a `kind` server, has `pubKind` (default:
 * the server itself) publish, and waits until every delivery arrived or
 * delivery stalled.
 */
async function runLoad(scn, kind, ctx, pubKind) {
  const label = `${scn.name}${pubKind ? '-xproc' : ''}`;
  if (kind.endsWith('redis')) await redisCommand(ctx.redis.port, 'FLUSHALL');
  const server = await startServer(kind, label, ctx.redis && ctx.redis.url);
  const procs = [server];
  try {
    const clients = await startClients(Math.min(CLIENT_PROCS, scn.clients));
    procs.push(...clients);
    const publisher = pubKind ? await startServer(pubKind, label, ctx.redis && ctx.redis.url) : server;
    if (publisher !== server) procs.push(publisher);
    await connectAll(clients, server.port, scn.clients);
    await waitSubscribers(server, scn.clients);
    await sleep(300);
    await Promise.all(clients.map((c) => c.call('reset')));
    await server.call('mark');
    const busy0 = machineBusyS();
    const ours0 = ourCpuS();
    const wall0 = Date.now();

    const expected = scn.events * scn.clients;
    const pubTimeout = scn.rate > 0 ? Math.ceil((scn.events / scn.rate) * 1000) + 30_000 : 180_000;
    let pub;
    let pubErr;
    publisher
      .call('publish', { n: scn.events, size: scn.size, rate: scn.rate, batch: scn.batch || 1, lag: Math.max(256, 4 * (scn.batch || 1)), timeoutMs: pubTimeout }, pubTimeout + 5000)
      .then((r) => (pub = r), (e) => (pubErr = e));

    let last = -1;
    let lastChange = Date.now();
    const hardStop = Date.now() + pubTimeout + 30_000;
    let total = 0;
    for (;;) {
      await sleep(100);
      if (pubErr) throw pubErr;
      const stats = await Promise.all(clients.map((c) => c.call('stats')));
      total = stats.reduce((a, s) => a + s.received, 0);
      if (total !== last) {
        last = total;
        lastChange = Date.now();
      }
      if (pub && total >= expected) break;
      if (pub && Date.now() - lastChange > 3000) break; // stalled: the rest is lost
      if (Date.now() > hardStop) throw new Error(`no completion: ${total}/${expected} delivered`);
    }
    const read = await server.call('read', { timeoutMs: 10_000 }, 15_000);
    const stats = await Promise.all(clients.map((c) => c.call('stats', { withHist: true })));
    const busyS = machineBusyS() - busy0;
    const oursS = ourCpuS() - ours0;
    const windowS = (Date.now() - wall0) / 1000;

    const hist = new Array(BUCKETS).fill(0);
    for (const s of stats) mergeHist(hist, s.hist);
    const received = stats.reduce((a, s) => a + s.received, 0);
    const t0 = Number(BigInt(pub.t0));
    const tEnd = Math.max(...stats.map((s) => s.lastRecv));
    const wallS = Math.max(1e-9, (tEnd - t0) / 1e9);
    const srvCpu = sumCpu(read);
    const cliUtil = stats.map((s) => sumCpu(s) / 1e6 / wallS);
    const row = {
      server: pubKind ? `${kind} (publish from another process)` : kind,
      clients: scn.clients,
      events: scn.events,
      expected,
      received,
      lost: expected - received,
      closedEarly: stats.reduce((a, s) => a + s.closedEarly, 0),
      dropped: read.dropped,
      wallS,
      deliveriesPerSec: received / wallS,
      serverCpuUs: srvCpu,
      serverUsPerDelivery: srvCpu / Math.max(1, received),
      p50Ms: quantile(hist, 0.5) / 1000,
      p99Ms: quantile(hist, 0.99) / 1000,
      maxMs: quantile(hist, 1) / 1000,
      serverUtil: srvCpu / 1e6 / wallS,
      clientUtilMax: Math.max(...cliUtil),
      clientUtilSum: cliUtil.reduce((a, b) => a + b, 0),
      // Cores kept busy by processes that are not this run's (other people's tests):
      // a row with a high value was measured on a shared, noisy machine.
      otherCores: Math.max(0, (busyS - oursS) / windowS),
      serverPeakRss: read.peakRss,
      serverPeakHeap: read.peakHeap,
      bytes: stats.reduce((a, s) => a + s.bytes, 0),
      publishS: (Number(BigInt(pub.t1)) - t0) / 1e9,
      waits: pub.waits,
      batchFanout: pub.batchFanout,
    };
    if (publisher !== server) {
      // The publisher's share, for the record (its own CPU is not the server's).
      row.publisher = 'separate process';
    }
    row.bound = boundBy(row, scn);
    return row;
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
  }
}

/**
 * Which side was pegged: the server (>= 85% of its one core), a client
 * process, and/or the machine (server + clients + other load >= 85% of all
 * cores, so no side could have gone faster).
 */
function boundBy(row, scn) {
  const out = [];
  if (row.serverUtil >= 0.85) out.push('server');
  if (row.clientUtilMax >= 0.85) out.push('CLIENT');
  if (row.serverUtil + row.clientUtilSum + row.otherCores >= 0.85 * NCPU) out.push('machine');
  if (out.length === 0) out.push(scn.rate > 0 ? 'paced' : 'neither');
  return out.join('+');
}

async function runIdle(scn, kind, ctx) {
  if (kind.endsWith('redis')) await redisCommand(ctx.redis.port, 'FLUSHALL');
  const server = await startServer(kind, scn.name, ctx.redis && ctx.redis.url);
  const procs = [server];
  try {
    const clients = await startClients(CLIENT_PROCS);
    procs.push(...clients);
    // Warm up (code paths, lazy modules, JIT) and come back to empty.
    await connectAll(clients, server.port, 50);
    await waitSubscribers(server, 50);
    await Promise.all(clients.map((c) => c.call('close')));
    await waitSubscribers(server, 0);
    const base = await server.call('mem', {}, 30_000);
    const t = Date.now();
    await connectAll(clients, server.port, scn.streams);
    await waitSubscribers(server, scn.streams, 60_000);
    const connectS = (Date.now() - t) / 1000;
    await sleep(1000);
    const loaded = await server.call('mem', {}, 60_000);
    return {
      server: kind,
      streams: scn.streams,
      connectS,
      heapPerStream: (loaded.heapUsed - base.heapUsed) / scn.streams,
      rssPerStream: (loaded.rss - base.rss) / scn.streams,
      externalPerStream: (loaded.external - base.external) / scn.streams,
      base,
      loaded,
    };
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
  }
}

// ---- output ---------------------------------------------------------------------

const f = {
  int: (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-'),
  x: (n) => (Number.isFinite(n) ? n.toFixed(2) + 'x' : '-'),
  ms: (n) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '-'),
  us: (n) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '-'),
  pct: (n) => (Number.isFinite(n) ? Math.round(n * 100) + '%' : '-'),
  cores: (n) => (Number.isFinite(n) ? n.toFixed(2) : '-'),
  mb: (n) => (Number.isFinite(n) ? (n / 1048576).toFixed(0) : '-'),
};

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  const out = [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  return out.join('\n');
}

function printLoad(scn, rows, skipped) {
  const raw = rows.find((r) => r.server === 'raw');
  const paced = scn.rate > 0;
  console.log(
    `\n## ${scn.title}: ${scn.clients} clients x ${scn.events} events of ${scn.size} B, ` +
      (paced ? `paced at ${scn.rate}/s` : `as fast as backpressure allows (batches of ${scn.batch})`),
  );
  const headers = ['server', 'deliv/s', 'vs raw', 'srv us/deliv', 'vs raw', 'p50 ms', 'p99 ms', 'lost', 'srv cpu', 'client cpu max', 'bound', 'other load', 'srv peak RSS MB'];
  const body = rows.map((r) => [
    r.server,
    f.int(r.deliveriesPerSec),
    raw ? f.x(r.deliveriesPerSec / raw.deliveriesPerSec) : '-',
    f.us(r.serverUsPerDelivery),
    raw ? f.x(r.serverUsPerDelivery / raw.serverUsPerDelivery) : '-',
    f.ms(r.p50Ms),
    f.ms(r.p99Ms),
    r.lost + (r.closedEarly ? ` (${r.closedEarly} cut)` : ''),
    f.pct(r.serverUtil),
    f.pct(r.clientUtilMax),
    r.bound,
    f.cores(r.otherCores),
    f.mb(r.serverPeakRss),
  ]);
  console.log(table(headers, body));
  if (rows.some((r) => r.otherCores >= 0.25)) {
    console.log('  other load: cores busy with processes outside this bench during the row (shared machine); >= 0.25 makes that row noisy.');
  }
  if (rows.some((r) => r.bound.includes('CLIENT'))) {
    console.log('  CLIENT: a load-generator process was pegged; that row measures the client, not the server.');
  }
  for (const s of skipped) console.log('  ' + s);
}

function printIdle(scn, rows, skipped, note) {
  const raw = rows.find((r) => r.server === 'raw');
  console.log(`\n## ${scn.title}: ${scn.streams} idle streams, per stream above an empty (warmed-up) server`);
  if (note) console.log('  ' + note);
  const headers = ['server', 'heap B/stream', 'vs raw', 'RSS B/stream', 'vs raw', 'connect s'];
  const body = rows.map((r) => [
    r.server,
    f.int(r.heapPerStream),
    raw ? (r.heapPerStream - raw.heapPerStream >= 0 ? '+' : '') + f.int(r.heapPerStream - raw.heapPerStream) : '-',
    f.int(r.rssPerStream),
    raw ? (r.rssPerStream - raw.rssPerStream >= 0 ? '+' : '') + f.int(r.rssPerStream - raw.rssPerStream) : '-',
    r.connectS.toFixed(1),
  ]);
  console.log(table(headers, body));
  for (const s of skipped) console.log('  ' + s);
}

function printRedis(scn, rows, skipped) {
  const base = rows.find((r) => r.server === 'sse-relay');
  console.log(`\n## ${scn.title}: ${scn.clients} clients, ${scn.events} events of ${scn.size} B paced at ${scn.rate}/s, publish -> receipt`);
  const headers = ['path', 'p50 ms', 'p99 ms', 'p99 vs in-process', 'lost', 'srv us/deliv', 'srv cpu'];
  const body = rows.map((r) => [
    r.server === 'sse-relay' ? 'sse-relay MemoryBroker, in-process publish' : r.server.startsWith('sse-relay-redis (')
      ? 'sse-relay RedisBroker, publish in another process'
      : 'sse-relay RedisBroker, publish in the server process',
    f.ms(r.p50Ms),
    f.ms(r.p99Ms),
    base ? f.x(r.p99Ms / base.p99Ms) : '-',
    r.lost + (r.closedEarly ? ` (${r.closedEarly} cut)` : ''),
    f.us(r.serverUsPerDelivery),
    f.pct(r.serverUtil),
  ]);
  console.log(table(headers, body));
  for (const s of skipped) console.log('  ' + s);
}

function targets(results) {
  const out = [];
  const get = (name, server) => {
    const s = results.scenarios[name];
    return s && s.rows.find((r) => r.server === server);
  };
  for (const name of ['fanout', 'throughput']) {
    const raw = get(name, 'raw');
    const bs = get(name, 'better-sse');
    const relay = get(name, 'sse-relay');
    if (!relay) continue;
    if (raw) {
      const r = relay.deliveriesPerSec / raw.deliveriesPerSec;
      out.push({ target: `${name}: deliveries/s >= 1.0x raw`, value: f.x(r), ok: r >= 1.0 });
      out.push({ target: `${name}: p99 <= raw p99 (${f.ms(raw.p99Ms)} ms)`, value: f.ms(relay.p99Ms) + ' ms', ok: relay.p99Ms <= raw.p99Ms });
      const same = get(name, 'sse-relay @ raw rate');
      if (same) {
        out.push({
          target: `${name}: p99 paced at raw's rate <= raw p99 (${f.ms(raw.p99Ms)} ms)`,
          value: f.ms(same.p99Ms) + ' ms',
          ok: same.p99Ms <= raw.p99Ms,
        });
      }
    }
    if (bs) {
      const r = relay.deliveriesPerSec / bs.deliveriesPerSec;
      out.push({ target: `${name}: deliveries/s >= 1.5x better-sse`, value: f.x(r), ok: r >= 1.5 });
    }
  }
  for (const name of Object.keys(results.scenarios)) {
    for (const r of results.scenarios[name].rows || []) {
      if (r.lost !== undefined && r.lost !== 0) out.push({ target: `${name}/${r.server}: lost deliveries = 0`, value: String(r.lost), ok: false });
    }
  }
  const rawIdle = get('idle', 'raw');
  const relayIdle = get('idle', 'sse-relay');
  if (rawIdle && relayIdle) {
    const d = relayIdle.heapPerStream - rawIdle.heapPerStream;
    out.push({ target: 'idle: heap per stream <= raw + 1.5 KB', value: `+${f.int(d)} B`, ok: d <= 1536 });
  }
  const mem = get('redis', 'sse-relay');
  const x = get('redis', 'sse-relay-redis (publish from another process)');
  if (mem && x) {
    const r = x.p99Ms / mem.p99Ms;
    out.push({ target: 'redis: p99 (publish in another process) <= 2x in-process p99', value: f.x(r), ok: r <= 2 });
  }
  return out;
}

// ---- main -----------------------------------------------------------------------

function limits() {
  const sh = (cmd) => Number(execFileSync('/bin/sh', ['-c', cmd]).toString().trim()) || Infinity;
  return { soft: sh('ulimit -n'), hard: sh('ulimit -Hn') };
}

async function main() {
  const wanted = (s) => ONLY.length === 0 || ONLY.includes(s.name);
  const servers = SERVERS.filter((s) => SERVERS_ONLY.length === 0 || SERVERS_ONLY.includes(s));
  const machine = {
    nproc: NCPU,
    cpu: os.cpus()[0] && os.cpus()[0].model,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    clientProcesses: CLIENT_PROCS,
  };
  console.log(
    `sse-relay bench${QUICK ? ' (BENCH_QUICK)' : ''}: ${machine.nproc} cores (${machine.cpu}), node ${machine.node}, ` +
      `${CLIENT_PROCS} client processes, all on 127.0.0.1`,
  );
  const results = { machine, quick: QUICK, startedAt: new Date().toISOString(), scenarios: {}, notes: [] };

  // File descriptors for the idle scenario: one per stream in the server, plus slack.
  const idle = SCENARIOS.find((s) => s.name === 'idle');
  let idleNote = '';
  const need = idle.streams + 256;
  const lim = limits();
  if (lim.soft < need) {
    if (lim.hard >= need) {
      nofileWrap = Math.min(lim.hard, need * 2);
    } else {
      const was = idle.streams;
      idle.streams = Math.max(100, Math.floor((lim.hard - 256) / 100) * 100);
      nofileWrap = lim.hard;
      idleNote = `note: ulimit -n hard limit is ${lim.hard}; idle streams lowered from ${was} to ${idle.streams}`;
      console.log(idleNote);
    }
  }

  const ctx = { redis: null };
  const needRedis = servers.includes('sse-relay-redis') && SCENARIOS.some(wanted);
  let redisSkip = '';
  if (needRedis) {
    const r = await startRedis();
    if (r.skip) {
      redisSkip = r.skip;
      console.log(redisSkip);
    } else ctx.redis = r;
  }

  const save = () => {
    fs.mkdirSync(RESULTS, { recursive: true });
    results.elapsedS = (Date.now() - STARTED) / 1000;
    fs.writeFileSync(path.join(RESULTS, 'latest.json'), JSON.stringify(results, null, 2) + '\n');
  };

  // One row: waits for a quiet machine; a row measured while other processes
  // took a quarter core or more runs once more if there is time, and the
  // quieter of the two is kept.
  const measure = async (name, run, rows, skipped) => {
    await waitQuiet(20_000);
    process.stdout.write(`  ${name} ... `);
    const t = Date.now();
    try {
      let row = await run();
      if (row.otherCores >= 0.25 && Date.now() - STARTED < BUDGET_MS * 0.5) {
        process.stdout.write(`noisy (other load ${row.otherCores.toFixed(2)} cores), again ... `);
        await waitQuiet(20_000);
        const again = await run();
        if (again.otherCores < row.otherCores) row = again;
      }
      rows.push(row);
      console.log(`${((Date.now() - t) / 1000).toFixed(1)} s`);
    } catch (err) {
      console.log('FAILED');
      skipped.push(`${name}: FAILED ${err.message.split('\n')[0]}`);
      results.notes.push(`${name}: ${err.stack}`);
    }
  };

  for (const scn of SCENARIOS.filter(wanted)) {
    const rows = [];
    const skipped = [];
    const rowServers = scn.name === 'redis' ? [] : servers;
    for (const kind of rowServers) {
      if (kind === 'sse-relay-redis' && !ctx.redis) {
        skipped.push(`sse-relay-redis: ${redisSkip || 'skipped'}`);
        continue;
      }
      const run = () => (scn.name === 'idle' ? runIdle(scn, kind, ctx) : runLoad(scn, kind, ctx));
      await measure(`${scn.name} / ${kind}`, run, rows, skipped);
    }
    // Latency at the same delivery rate: a faster server at full speed also
    // loads the clients (sharing the cores) harder, which shows in its tail.
    const raw = rows.find((r) => r.server === 'raw');
    if (scn.sameRate && raw && rows.some((r) => r.server === 'sse-relay')) {
      const paced = { ...scn, rate: Math.floor(raw.deliveriesPerSec / scn.clients) };
      const run = async () => ({ ...(await runLoad(paced, 'sse-relay', ctx)), server: 'sse-relay @ raw rate' });
      await measure(`${scn.name} / sse-relay paced at raw's rate`, run, rows, skipped);
    }
    if (scn.name === 'redis') {
      const runs = [['sse-relay'], ['sse-relay-redis'], ['sse-relay-redis', 'publisher-redis']];
      for (const [kind, pubKind] of runs) {
        if (!servers.includes(kind)) continue;
        if (kind === 'sse-relay-redis' && !ctx.redis) {
          skipped.push(`${redisSkip || 'Redis skipped'}`);
          break;
        }
        const name = `${scn.name} / ${kind}${pubKind ? ' + ' + pubKind : ''}`;
        await measure(name, () => runLoad(scn, kind, ctx, pubKind), rows, skipped);
      }
    }
    results.scenarios[scn.name] = { params: { ...scn }, rows, skipped };
    save();
  }

  // The tables, all together at the end.
  for (const scn of SCENARIOS.filter(wanted)) {
    const { rows, skipped } = results.scenarios[scn.name];
    if (scn.name === 'idle') printIdle(scn, rows, skipped, idleNote);
    else if (scn.name === 'redis') printRedis(scn, rows, skipped);
    else printLoad(scn, rows, skipped);
  }
  results.targets = targets(results);
  if (results.targets.length > 0) {
    console.log('\n## targets (sse-relay, MemoryBroker unless stated)');
    console.log(table(['target', 'measured', ''], results.targets.map((t) => [t.target, t.value, t.ok ? 'ok' : 'MISS'])));
  }
  console.log(
    '\ndeliv/s = received events / (last receipt - first publish); srv us/deliv = server CPU (user+sys) per delivered event; ' +
      'latency = publish hrtime in the event -> client read; cpu = busy share of one core over the run; ' +
      'bound = which side was pegged (>= 85% of a core; machine = all cores busy, clients included); ' +
      "'@ raw rate' = sse-relay paced at raw's measured deliveries/s, for latency at equal load.",
  );
  save();
  console.log(`\nwrote ${path.relative(process.cwd(), path.join(RESULTS, 'latest.json'))} in ${((Date.now() - STARTED) / 1000).toFixed(0)} s`);
}

// Everything started here dies with us, whatever happens.
const watchdog = setTimeout(() => {
  console.error(`\nbench: over the ${BUDGET_MS / 1000} s budget, stopping everything`);
  killAll();
  process.exit(2);
}, BUDGET_MS);
watchdog.unref();
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}
process.on('uncaughtException', (err) => {
  console.error(err);
  killAll();
  process.exit(1);
});

main().then(
  () => {
    killAll();
    process.exit(0);
  },
  (err) => {
    console.error('\nbench failed:', err);
    killAll();
    process.exit(1);
  },
);
