/**
 * Two separate Node server processes (__tests__/fixtures/redis-hub-server.js,
 * on the built dist/) publishing and streaming over one Redis: every stream in
 * both processes gets each event of its channels in order; a client that
 * reconnects to the OTHER process with Last-Event-ID resumes without gap or
 * duplicate; each process holds one subscriber connection.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import Redis from 'ioredis';
import { openStream, type TestStream } from '../lib/testing';
import type { ParsedEvent } from '../lib/testing';
import { startRedis, type RedisServer } from './helpers/redis-server';

jest.setTimeout(60_000);

const ROOT = join(__dirname, '..');
const FIXTURE = join(__dirname, 'fixtures', 'redis-hub-server.js');

interface Proc {
  child: ChildProcess;
  port: number;
  stderr: () => string;
}

function spawnServer(env: Record<string, string>): Promise<Proc> {
  const child = spawn(process.execPath, [FIXTURE], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise<Proc>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error('no port within 15 s')), 15_000);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`server process did not start: ${err.message}\n${stderr}`));
    };
    child.once('exit', (code) => fail(new Error(`exited with ${code}`)));
    child.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl === -1) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolve({ child, port: (JSON.parse(out.slice(0, nl)) as { port: number }).port, stderr: () => stderr });
    });
  });
}

/** Ends the process through its stdin (it closes its hub and server), SIGKILL if it takes too long. */
async function stopServer(proc: Proc): Promise<number | null> {
  const { child } = proc;
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.stdin!.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const code = await exited;
  clearTimeout(timer);
  child.stdout!.destroy();
  child.stderr!.destroy();
  return code;
}

/** POST /publish/<channel> to one process; resolves with the event id. */
function publish(port: number, channel: string, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/publish/' + encodeURIComponent(channel),
        headers: { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(data) },
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          if (res.statusCode === 200) resolve((JSON.parse(body) as { id: string }).id);
          else reject(new Error(`publish: ${res.statusCode} ${body}`));
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

let redis: RedisServer;
let admin: Redis;
let a: Proc;
let b: Proc;
const streams: TestStream[] = [];

async function stream(port: number, path: string, headers: Record<string, string> = {}): Promise<TestStream> {
  const s = await openStream(`http://127.0.0.1:${port}${path}`, { headers });
  streams.push(s);
  expect(s.status).toBe(200);
  return s;
}

function pairs(events: readonly ParsedEvent[]): [string, string][] {
  return events.map((e) => [e.id, e.data]);
}

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist', 'brokers', 'redis', 'index.js'))) {
    throw new Error('dist/ has no RedisBroker: run `npm run build` first (npm test does)');
  }
  redis = await startRedis();
  admin = new Redis(redis.url);
  const env = { REDIS_URL: redis.url, PREFIX: `mp${process.pid}:` };
  [a, b] = await Promise.all([spawnServer(env), spawnServer(env)]);
});

afterEach(async () => {
  for (const s of streams.splice(0)) await s.close();
});

afterAll(async () => {
  const codes = await Promise.all([a, b].filter(Boolean).map(stopServer));
  await admin?.quit();
  await redis?.stop();
  expect(codes).toEqual([0, 0]); // both shut down cleanly (hub and broker closed)
});

test('an event published in either process reaches every matching stream in both, in publish order', async () => {
  const aBoth = await stream(a.port, '/events?channel=mp.x&channel=mp.y');
  const bX = await stream(b.port, '/events/mp.x');
  const bBoth = await stream(b.port, '/events?channel=mp.y&channel=mp.x');
  const aY = await stream(a.port, '/events/mp.y');

  // one subscriber connection per process, however many streams and channels
  const pubsub = ((await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string).split('\n').filter((l) => l.trim());
  expect(pubsub).toHaveLength(2);

  const published: { channel: string; id: string; data: string }[] = [];
  for (let i = 0; i < 20; i++) {
    const port = i % 3 === 0 ? b.port : a.port;
    const channel = i % 2 === 0 ? 'mp.x' : 'mp.y';
    const data = `${channel} #${i} from ${port === a.port ? 'A' : 'B'}`;
    published.push({ channel, data, id: await publish(port, channel, data) });
  }
  const all = published.map((p): [string, string] => [p.id, p.data]);
  const onlyX = published.filter((p) => p.channel === 'mp.x').map((p): [string, string] => [p.id, p.data]);
  const onlyY = published.filter((p) => p.channel === 'mp.y').map((p): [string, string] => [p.id, p.data]);

  expect(pairs(await aBoth.waitFor(20, 10_000))).toEqual(all);
  expect(pairs(await bBoth.waitFor(20, 10_000))).toEqual(all);
  expect(pairs(await bX.waitFor(onlyX.length, 10_000))).toEqual(onlyX);
  expect(pairs(await aY.waitFor(onlyY.length, 10_000))).toEqual(onlyY);

  // nothing more (no duplicate): a last event on x arrives right after
  const last = await publish(a.port, 'mp.x', 'last');
  await bX.waitFor((e) => e.id === last, 10_000);
  expect(bX.events).toHaveLength(onlyX.length + 1);
  expect(bX.events.every((e) => e.event === 'message')).toBe(true);
});

test('a client that reconnects to the OTHER process with Last-Event-ID resumes without gap or duplicate', async () => {
  const first = await stream(a.port, '/events?channel=mp.z&channel=mp.w');
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push(await publish(i % 2 ? b.port : a.port, i % 3 ? 'mp.z' : 'mp.w', 'before ' + i));
  const seen = await first.waitFor(6, 10_000);
  expect(seen.map((e) => e.id)).toEqual(ids);
  await first.close();

  // the client saw up to the 4th event; more happen while it is away
  const resumeFrom = ids[3]!;
  for (let i = 0; i < 4; i++) ids.push(await publish(i % 2 ? a.port : b.port, i % 2 ? 'mp.z' : 'mp.w', 'away ' + i));

  const resumed = await stream(b.port, '/events?channel=mp.z&channel=mp.w', { 'Last-Event-ID': resumeFrom });
  const expected = ids.slice(4);
  const got = await resumed.waitFor(expected.length, 10_000);
  expect(got.map((e) => e.id)).toEqual(expected);
  expect(got.some((e) => e.event === 'reset')).toBe(false);

  // then live, from either process
  const live = [await publish(a.port, 'mp.z', 'live A'), await publish(b.port, 'mp.w', 'live B')];
  const after = await resumed.waitFor(expected.length + 2, 10_000);
  expect(after.slice(expected.length).map((e) => [e.id, e.data])).toEqual([
    [live[0], 'live A'],
    [live[1], 'live B'],
  ]);
  expect(new Set(resumed.events.map((e) => e.id)).size).toBe(resumed.events.length);
});

test('subscriber connections killed while publishing: streams in both processes catch up, exactly once, in order', async () => {
  const onA = await stream(a.port, '/events/mp.k');
  const onB = await stream(b.port, '/events?channel=mp.k&channel=mp.other');
  const ids: string[] = [];
  for (let i = 0; i < 60; i++) {
    if (i === 15 || i === 40) await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    ids.push(await publish(i % 2 ? a.port : b.port, 'mp.k', 'k' + i));
  }
  for (const s of [onA, onB]) {
    const got = await s.waitFor(ids.length, 15_000);
    expect(got.map((e) => e.id)).toEqual(ids);
  }
  const last = await publish(a.port, 'mp.k', 'last');
  for (const s of [onA, onB]) {
    await s.waitFor((e) => e.id === last, 10_000);
    expect(s.events.map((e) => e.id)).toEqual([...ids, last]);
  }
});

describe('ioredis is an optional peer dependency', () => {
  function node(script: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(out.trim());
        else reject(new Error(`node -e exited with ${code}: ${err}`));
      });
    });
  }

  test('MemoryBroker users never load it', async () => {
    const out = await node(`
      const { MemoryBroker, createHub } = require('./dist');
      createHub({ authorize: () => true, broker: new MemoryBroker() });
      console.log(Object.keys(require.cache).some((k) => k.includes('/node_modules/ioredis/')));
    `);
    expect(out).toBe('false');
  });

  test('without it, new RedisBroker({ url }) throws ERR_REDIS_MISSING with an install hint', async () => {
    const out = await node(`
      const Module = require('module');
      const load = Module._load;
      Module._load = function (request, ...rest) {
        if (request === 'ioredis') {
          const err = new Error("Cannot find module 'ioredis'");
          err.code = 'MODULE_NOT_FOUND';
          throw err;
        }
        return load.call(this, request, ...rest);
      };
      const { RedisBroker } = require('./dist');
      try {
        new RedisBroker({ url: 'redis://127.0.0.1:1' });
        console.log('no error');
      } catch (err) {
        console.log(JSON.stringify({ name: err.name, code: err.code, message: err.message }));
      }
    `);
    const err = JSON.parse(out) as { name: string; code: string; message: string };
    expect(err.name).toBe('SseRelayError');
    expect(err.code).toBe('ERR_REDIS_MISSING');
    expect(err.message).toMatch(/npm install ioredis/);
  });
});

describe("on a Redis Cluster (the run's shared cluster)", () => {
  let ca: Proc;
  let cb: Proc;

  beforeAll(async () => {
    const env = { CLUSTER_NODES: process.env.REDIS_CLUSTER_NODES ?? '', PREFIX: `mpc${process.pid}:` };
    if (!env.CLUSTER_NODES) throw new Error('REDIS_CLUSTER_NODES is not set: the global setup starts a Redis Cluster');
    [ca, cb] = await Promise.all([spawnServer(env), spawnServer(env)]);
  });

  afterAll(async () => {
    const codes = await Promise.all([ca, cb].filter(Boolean).map(stopServer));
    expect(codes).toEqual([0, 0]);
  });

  test('two processes publishing on channels over all masters: every stream gets its channels in order, and resumes on the other process', async () => {
    const channels = Array.from({ length: 12 }, (_, i) => `mpc.${i}`);
    const query = '/events?' + channels.map((c) => 'channel=' + c).join('&');
    const onA = await stream(ca.port, query);
    const onB = await stream(cb.port, query);
    const sent: string[] = [];
    for (let i = 0; i < 48; i++) {
      const data = `${channels[i % 12]} #${i}`;
      await publish(i % 2 ? ca.port : cb.port, channels[i % 12]!, data);
      sent.push(data);
    }
    for (const s of [onA, onB]) {
      const got = await s.waitFor(48, 10_000);
      for (const c of channels) {
        expect(got.filter((e) => e.data.startsWith(c + ' ')).map((e) => e.data)).toEqual(
          sent.filter((d) => d.startsWith(c + ' ')),
        );
      }
      expect(new Set(got.map((e) => e.data)).size).toBe(48);
    }
    // ONE Last-Event-ID resumes a stream over channels on every master, on the other process
    const resumeFrom = onA.events[23]!.id;
    await onA.close();
    for (let i = 48; i < 60; i++) {
      const data = `${channels[i % 12]} #${i}`;
      await publish(cb.port, channels[i % 12]!, data);
      sent.push(data);
    }
    const resumed = await stream(cb.port, query, { 'Last-Event-ID': resumeFrom });
    const seenBefore = new Set(onA.events.slice(0, 24).map((e) => e.data));
    const expected = sent.filter((d) => !seenBefore.has(d));
    const got = await resumed.waitFor(expected.length, 10_000);
    expect(got.some((e) => e.event === 'reset')).toBe(false);
    expect(got.map((e) => e.data).sort()).toEqual([...expected].sort());
  });
});
