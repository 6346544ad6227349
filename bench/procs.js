'use strict';
// The bench's child processes: servers under test (server.js), load
// generators (client.js), other workers, and redis-server. Everything started
// here is tracked, so killAll() ends it whatever happens to the run.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const REDIS_BIN = '/usr/bin/redis-server';
const PROF_DIR = path.join(__dirname, 'results', 'prof');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const children = new Set();
// > 0: start node children under `ulimit -n <this>` (the idle scenario needs many descriptors).
const settings = { nofileWrap: 0, prof: [] };

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

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} (${ms} ms)`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A node child speaking the request/reply protocol of common.js serveRpc. */
class Proc {
  constructor(name, script, args, execArgv = []) {
    this.name = name;
    this.nextId = 1;
    this.pending = new Map();
    this.exited = false;
    const nodeArgs = [...execArgv, path.join(__dirname, script), ...args];
    const stdio = ['ignore', 'inherit', 'inherit', 'ipc'];
    this.child =
      settings.nofileWrap > 0
        ? spawnTracked(
            '/bin/sh',
            ['-c', `ulimit -n ${settings.nofileWrap} && exec "$0" "$@"`, process.execPath, ...nodeArgs],
            { stdio },
          )
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

/**
 * One server under test (bench/server.js) of `kind`; `opts` reaches the server
 * as its options ({ redisUrl, channels, ... }). Resolves once it listens.
 */
async function startServer(kind, label, opts = {}) {
  const execArgv = ['--expose-gc', ...(process.env.BENCH_SERVER_FLAGS || '').split(' ').filter(Boolean)];
  if (settings.prof.includes(kind)) {
    fs.mkdirSync(PROF_DIR, { recursive: true });
    execArgv.push('--cpu-prof', '--cpu-prof-dir', PROF_DIR, '--cpu-prof-name', `${label}-${kind}.cpuprofile`);
  }
  // BENCH_HUB_OPTIONS (experiments) under the row's own hubOptions (a feature turned off for an A/B row).
  const fromEnv = JSON.parse(process.env.BENCH_HUB_OPTIONS || '{}');
  const own = opts.hubOptions || {};
  const hubOptions = { ...fromEnv, ...own, sse: { ...fromEnv.sse, ...own.sse } };
  const proc = new Proc(`server ${kind}`, 'server.js', [kind, JSON.stringify({ ...opts, hubOptions })], execArgv);
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

/** utime + stime of one process, in seconds (0 once it is gone). */
function procCpuS(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const v = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(v[11]) + Number(v[12])) / 100; // utime, stime in USER_HZ
  } catch {
    return 0;
  }
}

/**
 * CPU seconds used so far by this orchestrator and every child it started,
 * redis-server included: that one runs under a guard shell, whose own counters
 * do not include a child it has not reaped yet, so the shell's children count too.
 */
function ourCpuS() {
  const self = process.cpuUsage();
  let s = (self.user + self.system) / 1e6;
  for (const child of children) {
    s += procCpuS(child.pid);
    if (!child.guarded) continue;
    try {
      for (const pid of fs
        .readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'latin1')
        .split(' ')
        .filter(Boolean)) {
        s += procCpuS(pid);
      }
    } catch {
      // gone
    }
  }
  return s;
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

/**
 * Sends one Redis command to 127.0.0.1:port; resolves with the reply: the
 * first line for a simple reply, the whole payload for a bulk string.
 */
function redisCommand(port, ...args) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let reply = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('redis did not answer'));
    }, 5000);
    const done = (value) => {
      clearTimeout(timer);
      socket.end();
      resolve(value);
    };
    socket.on('connect', () => {
      socket.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''));
    });
    socket.on('data', (d) => {
      reply = Buffer.concat([reply, d]);
      const i = reply.indexOf('\r\n');
      if (i === -1) return;
      const first = reply.subarray(0, i).toString();
      if (first[0] !== '$') return done(first);
      const len = Number(first.slice(1));
      if (len < 0) return done(null);
      if (reply.length >= i + 2 + len) done(reply.subarray(i + 2, i + 2 + len).toString());
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** `INFO <section>` of the redis-server on port, as { field: value }. */
async function redisInfo(port, section) {
  const text = await redisCommand(port, 'INFO', section);
  const out = {};
  for (const line of String(text).split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/** redis-server CPU seconds so far (INFO cpu: used_cpu_sys + used_cpu_user). */
async function redisCpuS(port) {
  const info = await redisInfo(port, 'cpu');
  return Number(info.used_cpu_sys) + Number(info.used_cpu_user);
}

/** Why the Redis rows cannot run, or '' when they can. */
function redisUnavailable() {
  if (!fs.existsSync(REDIS_BIN)) return `redis-server not found (${REDIS_BIN}): Redis rows skipped`;
  let lib;
  try {
    lib = require('../dist');
  } catch (err) {
    return `dist/ failed to load: ${err.message}`;
  }
  if (typeof lib.RedisBroker !== 'function') {
    return 'RedisBroker is not exported by dist/ yet (lib/brokers/redis.ts in progress): Redis rows skipped';
  }
  return '';
}

/**
 * Starts one redis-server on a free loopback port (extra: more redis-server
 * arguments). redis-server has no IPC channel to notice that we died, so it
 * runs under a shell that holds a pipe from us: EOF on that pipe (our exit,
 * even SIGKILL) or SIGTERM ends redis-server too.
 */
async function startRedis(extra = [], cwd = undefined) {
  const skip = redisUnavailable();
  if (skip) return { skip };
  const port = await freePort();
  const guard =
    'trap \'kill $p 2>/dev/null; wait $p; exit 0\' TERM INT HUP; "$0" "$@" </dev/null & p=$!; read _; kill $p 2>/dev/null; wait $p';
  const child = spawnTracked(
    '/bin/sh',
    [
      '-c',
      guard,
      REDIS_BIN,
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      ...extra,
    ],
    { stdio: ['pipe', 'ignore', 'inherit'], cwd },
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
  const stop = async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(5000)]);
  };
  return { port, url: `redis://127.0.0.1:${port}`, child, stop };
}

module.exports = {
  settings,
  sleep,
  withTimeout,
  spawnTracked,
  killAll,
  Proc,
  startServer,
  startClients,
  machineBusyS,
  ourCpuS,
  freePort,
  redisCommand,
  redisInfo,
  redisCpuS,
  startRedis,
};
