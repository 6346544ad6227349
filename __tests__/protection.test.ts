/**
 * Protection limits on real sockets (127.0.0.1): slow clients, drain timeout,
 * maxConnections, maxConnectionsPerKey, allowedOrigins, maxDuration, graceful
 * shutdown and option validation. Exact status codes and bytes; every wait is
 * bounded; no assertion on wall-clock speed (only "not before" bounds).
 */
import express from 'express';
import { type Server, type ServerResponse, request } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { StringDecoder } from 'node:string_decoder';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createHub, sse, type Broker, type Hub, type SseMiddleware, type SseOptions } from '../lib';
import { MemoryBroker } from '../lib/brokers/memory';
import { runningClocks } from '../lib/testing';
import { closeServer, createParser, expectEvents, openStream, type TestStream } from '../lib/testing';
import { sleep, until } from './helpers/wait';

const KiB = 1024;
const MiB = 1024 * KiB;
const SSE_HEAD = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
};

// ---------------------------------------------------------------------------
// Fixture: everything opened by a test is closed after it, in reverse order.

const cleanups: Array<() => unknown> = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function defer(fn: () => unknown): void {
  cleanups.push(fn);
}

async function serve(app: express.Express): Promise<{ server: Server; port: number }> {
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  defer(() => closeServer(server));
  return { server, port: (server.address() as AddressInfo).port };
}

function useHub(hub: Hub): Hub {
  defer(() => hub.close());
  return hub;
}

function useSse(options?: SseOptions): SseMiddleware {
  const mw = sse(options);
  defer(() => mw.close());
  return mw;
}

async function open(server: Server, path: string, headers: Record<string, string> = {}): Promise<TestStream> {
  const s = await openStream({ server, path }, { headers });
  defer(() => s.close());
  return s;
}


/**
 * A raw client that sends the GET and then never reads: `pause()` before the
 * connection is even up, so not one byte of the response leaves the kernel.
 */
async function pausedClient(port: number, path: string): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.pause();
  socket.on('error', () => undefined); // a reset from the server is expected
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  defer(() => {
    socket.destroy();
    return closed;
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n`);
  return socket;
}

/**
 * A healthy client that reads everything and keeps almost nothing: the data
 * of each event is checked as it arrives (it must start with `${index}:`),
 * its id is kept only until the test verifies it against what publish
 * returned. Holding 10,000 KiB-events x 50 clients would measure the test,
 * not the server.
 */
interface Reader {
  count: number;
  error: string | undefined;
  ended: boolean;
  /** Ids received since the last verify(), in order. */
  unverified: string[];
  verified: number;
}

function reader(port: number, path: string): Promise<Reader> {
  return new Promise((resolve, reject) => {
    const state: Reader = { count: 0, error: undefined, ended: false, unverified: [], verified: 0 };
    const parser = createParser((ev) => {
      const i = state.count++;
      if (state.error === undefined && (ev.data.length !== KiB || !ev.data.startsWith(`${i}:`))) {
        state.error = `event #${i}: data ${JSON.stringify(ev.data.slice(0, 12))}…`;
      }
      state.unverified.push(ev.id);
    });
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { Accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) {
        res.destroy();
        reject(new Error(`reader: ${path} answered ${res.statusCode}`));
        return;
      }
      const decoder = new StringDecoder('utf8');
      res.on('data', (chunk: Buffer) => parser.feed(decoder.write(chunk)));
      res.on('close', () => (state.ended = true));
      res.on('error', () => (state.ended = true));
      resolve(state);
    });
    req.on('error', (err) => {
      state.ended = true;
      reject(err);
    });
    const closed = new Promise<void>((r) => req.once('close', () => r()));
    defer(() => {
      req.destroy();
      return closed;
    });
    req.end();
  });
}

/** Compares the ids a reader received since the last call with the published ones. */
function verify(r: Reader, ids: readonly string[]): void {
  for (const id of r.unverified) {
    const i = r.verified++;
    if (r.error === undefined && id !== ids[i]) r.error = `event #${i}: id ${id}, want ${ids[i]}`;
  }
  r.unverified = [];
}

/** A payload of exactly `size` characters that starts with `${i}:`. */
function payload(i: number, size = KiB): string {
  const head = `${i}:`;
  return head + 'x'.repeat(size - head.length);
}

interface Mem {
  rss: number;
  heapUsed: number;
}

// Live memory, not garbage V8 has not collected yet: a full GC before each measure.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function mem(collect = false): Mem {
  if (collect) gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed };
}

function mib(n: number): string {
  return (n / MiB).toFixed(1) + ' MiB';
}

function report(label: string, before: Mem, peak: Mem, after: Mem): void {
  const line =
    `[memory] ${label}: rss ${mib(before.rss)} -> peak ${mib(peak.rss)} (+${mib(peak.rss - before.rss)}) -> after ${mib(after.rss)}; ` +
    `heapUsed ${mib(before.heapUsed)} -> peak ${mib(peak.heapUsed)} (+${mib(peak.heapUsed - before.heapUsed)}) -> after ${mib(after.heapUsed)}`;
  if (process.env.SSE_RELAY_MEMORY_REPORT) process.stderr.write(line + '\n');
}

/** An app with one sse() route that opens, says hello, and keeps each response by its `x-name` header. */
function helloApp(mw: SseMiddleware): { app: express.Express; held: Map<string, ServerResponse> } {
  const held = new Map<string, ServerResponse>();
  const app = express();
  app.get('/s', mw, (req, res) => {
    if (!res.sse.send('hello')) return;
    const name = req.headers['x-name'];
    if (typeof name === 'string') held.set(name, res);
  });
  return { app, held };
}

/** Asserts an admitted stream: 200, the stream head, `hello` first. */
async function expectAdmitted(s: TestStream): Promise<void> {
  expect(s.status).toBe(200);
  expect(s.headers).toMatchObject(SSE_HEAD);
  expectEvents(await s.waitFor(1), [{ data: 'hello', event: 'message' }]);
  expect(s.ended).toBe(false);
}

/** Asserts the maxConnections refusal: 200 with the stream head, exactly `retry: <n>\n\n`, ended. */
async function expectRetryOnly(s: TestStream): Promise<number> {
  expect(s.status).toBe(200);
  expect(s.headers).toMatchObject(SSE_HEAD);
  await s.waitForEnd();
  const m = /^retry: (\d+)\n\n$/.exec(s.raw());
  expect(m).not.toBeNull();
  const n = Number(m![1]);
  expect(n).toBeGreaterThanOrEqual(1000); // a few seconds
  expect(n).toBeLessThanOrEqual(10000);
  expect(s.events).toEqual([]);
  return n;
}

// ---------------------------------------------------------------------------


/** Every healthy reader got every event, in order, and is still connected; memory stayed bounded. */
function expectEveryEventAndBoundedMemory(
  readers: readonly Reader[],
  ids: readonly string[],
  events: number,
  before: ReturnType<typeof mem>,
  peak: ReturnType<typeof mem>,
  after: ReturnType<typeof mem>,
): void {
  for (const r of readers) {
    verify(r, ids);
    expect(r.error).toBeUndefined();
    expect(r.count).toBe(events);
    expect(r.verified).toBe(events);
    expect(r.ended).toBe(false);
  }
  expect(peak.rss - before.rss).toBeLessThan(200 * MiB);
  expect(peak.heapUsed - before.heapUsed).toBeLessThan(200 * MiB);
  expect(after.heapUsed - before.heapUsed).toBeLessThan(100 * MiB); // nothing of the run stays live
}

describe('slow client', () => {
  const HEALTHY = 50;
  const EVENTS = 10_000;
  const BATCH = 50;

  test('hub: a client that stops reading is dropped; 50 healthy clients get all 10,000 events in order; memory stays bounded', async () => {
    const hub = useHub(createHub({ authorize: () => true }));
    const app = express();
    app.use('/events', hub.router());
    const { port } = await serve(app);

    const readers = await Promise.all(Array.from({ length: HEALTHY }, () => reader(port, '/events/load')));
    await pausedClient(port, '/events/load');
    await until(() => hub.stats().connections === HEALTHY + 1, 'all streams to be live');

    const ids: string[] = [];
    const before = mem(true);
    const peak = { ...before };
    for (let i = 0; i < EVENTS; i += BATCH) {
      // One batch of awaited publishes per turn. (Started together and awaited together: they are
      // numbered in call order, and `await hub.publish` one at a time costs an event-loop turn per
      // event, which jest's --detectOpenHandles hooks make ~50x slower than the server itself.)
      const batch: Array<Promise<string>> = [];
      for (let j = i; j < i + BATCH; j++) batch.push(hub.publish('load', payload(j)));
      ids.push(...(await Promise.all(batch)));
      await new Promise((r) => setImmediate(r));
      // The healthy readers live in this process too: let them keep up, as a healthy client does.
      const published = ids.length;
      await until(() => readers.every((r) => r.count >= published || r.ended), `readers to reach ${published}`, 20000);
      for (const r of readers) verify(r, ids);
      const m = mem(ids.length % (20 * BATCH) === 0);
      peak.rss = Math.max(peak.rss, m.rss);
      peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
    }
    const after = mem(true);
    report('hub 50 healthy + 1 paused, 10,000 x 1 KiB', before, peak, after);

    const stats = hub.stats();
    expect(stats.dropped).toBeGreaterThanOrEqual(1);
    expect(stats.connections).toBe(HEALTHY); // the slow one is gone, every healthy one is still here
    expect(stats.published).toBe(EVENTS);
    expectEveryEventAndBoundedMemory(readers, ids, EVENTS, before, peak, after);
  }, 180_000);

  test('sse(): res.sse.send to a client that stops reading drops it at maxBufferedBytes (64 KiB); healthy clients get everything', async () => {
    const mw = useSse({ maxBufferedBytes: 64 * KiB });
    const clients = new Set<ServerResponse>();
    const app = express();
    app.get('/plain', mw, (_req, res) => {
      if (!res.sse.open()) return;
      clients.add(res);
      res.sse.signal.addEventListener('abort', () => clients.delete(res));
    });
    const { port } = await serve(app);

    const readers = await Promise.all(Array.from({ length: HEALTHY }, () => reader(port, '/plain')));
    await pausedClient(port, '/plain');
    await until(() => mw.connections === HEALTHY + 1, 'all streams to be open');

    const ids = Array.from({ length: EVENTS }, (_, i) => String(i));
    const before = mem(true);
    const peak = { ...before };
    for (let i = 0; i < EVENTS; i++) {
      const data = payload(i);
      for (const res of clients) res.sse.send(data, { id: i });
      if ((i + 1) % BATCH === 0) {
        await new Promise((r) => setImmediate(r));
        const published = i + 1;
        await until(() => readers.every((r) => r.count >= published || r.ended), `readers to reach ${published}`, 20000);
        for (const r of readers) verify(r, ids);
        const m = mem(published % (20 * BATCH) === 0);
        peak.rss = Math.max(peak.rss, m.rss);
        peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
      }
    }
    const after = mem(true);
    report('sse() 50 healthy + 1 paused, 10,000 x 1 KiB, maxBufferedBytes 64 KiB', before, peak, after);

    expect(mw.dropped).toBe(1);
    expect(mw.connections).toBe(HEALTHY);
    expect(clients.size).toBe(HEALTHY);
    expectEveryEventAndBoundedMemory(readers, ids, EVENTS, before, peak, after);
  }, 180_000);
});

describe('drainTimeout', () => {
  test('a client that does not drain for drainTimeout is dropped although its backlog stays under maxBufferedBytes', async () => {
    const mw = useSse({ drainTimeout: 200, maxBufferedBytes: 16 * MiB });
    let res: ServerResponse | undefined;
    const app = express();
    app.get('/p', mw, (_req, r) => {
      if (r.sse.open()) res = r;
    });
    const { port } = await serve(app);
    await pausedClient(port, '/p');
    await until(() => res !== undefined, 'the paused stream to open');

    // Fill the kernel buffers until the socket stays backed up (no 'drain') across turns. A write
    // handed to the kernel still counts in writableLength until the next turn, so a synchronous
    // loop alone would stop at the high-water mark while the kernel still has room.
    const r = res!;
    const chunk = 'x'.repeat(16 * KiB - 20);
    let drainedSinceStall = true;
    let stalled = 0;
    r.on('drain', () =>
      // After the stream's own 'drain' listener: did writing its held-back frames stall it again?
      queueMicrotask(() => {
        if (r.writableNeedDrain) stalled = performance.now();
        else drainedSinceStall = true;
      }),
    );
    const burst = (): void => {
      for (let i = 0; i < 16; i++) {
        if (!r.sse.send(chunk) && drainedSinceStall) {
          drainedSinceStall = false;
          stalled = performance.now(); // the stream starts waiting for 'drain' here
        }
      }
    };
    let bursts = 0;
    for (; bursts < 32 && !r.sse.closed; bursts++) {
      burst(); // 256 KiB
      await sleep(30);
      if (!drainedSinceStall) break;
    }
    expect(drainedSinceStall).toBe(false);
    expect(r.sse.closed).toBe(false);

    // A trickle that keeps the backlog tiny: only the drain timeout can cut it. (Should the kernel
    // still take the backlog after all, the stall restarts and so does the clock.)
    let trickled = 0;
    while (!r.sse.closed && trickled < 500) {
      if (drainedSinceStall) burst();
      else r.sse.comment('tick');
      trickled++;
      await sleep(10);
    }
    const elapsed = performance.now() - stalled;
    expect(r.sse.closed).toBe(true);
    expect(r.sse.signal.aborted).toBe(true);
    expect(mw.dropped).toBe(1);
    expect(mw.connections).toBe(0);
    // Not before drainTimeout (timer rounding aside); the upper bound is only the loop's bound.
    expect(elapsed).toBeGreaterThanOrEqual(195);
    expect(trickled).toBeGreaterThan(1);
  });
});

describe('maxConnections', () => {
  test('over the limit: 200, the stream head, exactly `retry: <n>\\n\\n` (jittered), and the response ends', async () => {
    const mw = useSse({ maxConnections: 2 });
    const { app } = helloApp(mw);
    const { server } = await serve(app);
    await expectAdmitted(await open(server, '/s'));
    await expectAdmitted(await open(server, '/s'));
    const retries = new Set<number>();
    for (let i = 0; i < 6; i++) retries.add(await expectRetryOnly(await open(server, '/s')));
    expect(retries.size).toBeGreaterThan(1); // jittered
    expect(mw.connections).toBe(2);
  });

  test('the count is released on client abort, res.sse.close() and a server drop, so a new stream is admitted again', async () => {
    const mw = useSse({ maxConnections: 2, maxBufferedBytes: 64 * KiB });
    const { app, held } = helloApp(mw);
    let raw: ServerResponse | undefined;
    app.get('/raw', mw, (_req, res) => {
      if (res.sse.open()) raw = res;
    });
    const { server, port } = await serve(app);

    const a = await open(server, '/s', { 'x-name': 'a' });
    await expectAdmitted(a);
    const b = await open(server, '/s', { 'x-name': 'b' });
    await expectAdmitted(b);
    await expectRetryOnly(await open(server, '/s'));

    // 1. the client aborts
    await a.close();
    await until(() => mw.connections === 1, 'the abort to release its place');
    const c = await open(server, '/s', { 'x-name': 'c' });
    await expectAdmitted(c);
    await expectRetryOnly(await open(server, '/s'));

    // 2. the server closes with res.sse.close()
    held.get('b')!.sse.close();
    expect(mw.connections).toBe(1);
    await b.waitForEnd();
    expect(b.raw()).toBe('data: hello\n\n');
    await expectAdmitted(await open(server, '/s', { 'x-name': 'd' }));
    await expectRetryOnly(await open(server, '/s'));

    // 3. the server drops a client that stopped reading
    held.get('c')!.sse.close();
    await c.waitForEnd();
    await pausedClient(port, '/raw');
    await until(() => raw !== undefined && mw.connections === 2, 'the paused stream to open');
    const kb = payload(0);
    for (let i = 0; i < 64 * 1024 && !raw!.sse.closed; i++) raw!.sse.send(kb);
    expect(raw!.sse.closed).toBe(true);
    expect(mw.dropped).toBe(1);
    expect(mw.connections).toBe(1);
    await expectAdmitted(await open(server, '/s', { 'x-name': 'e' }));
    expect(mw.connections).toBe(2);
    await expectRetryOnly(await open(server, '/s'));
  });

  test('the count is released when maxDuration ends a stream', async () => {
    const mw = useSse({ maxConnections: 1, maxDuration: 150 });
    const { app } = helloApp(mw);
    const { server } = await serve(app);
    const a = await open(server, '/s');
    await expectAdmitted(a);
    await expectRetryOnly(await open(server, '/s'));
    await a.waitForEnd();
    expect(mw.connections).toBe(0);
    await expectAdmitted(await open(server, '/s'));
  });

  test('a hub counts its streams too: over the limit the stream gets only `retry:`', async () => {
    const hub = useHub(createHub({ authorize: () => true, sse: { maxConnections: 1 } }));
    const app = express();
    app.use('/events', hub.router());
    const { server } = await serve(app);
    const a = await open(server, '/events/ch');
    expect(a.status).toBe(200);
    await until(() => hub.stats().connections === 1, 'the stream to be live');
    const refused = await open(server, '/events/ch');
    expect(refused.status).toBe(200);
    expect(refused.headers).toMatchObject(SSE_HEAD);
    await refused.waitForEnd();
    expect(refused.raw()).toMatch(/^retry: \d+\n\n$/);
    await a.close();
    await until(() => hub.stats().connections === 0, 'the abort to release its place');
    const b = await open(server, '/events/ch');
    await until(() => hub.stats().connections === 1, 'the new stream to be live');
    const id = await hub.publish('ch', 'x');
    expectEvents(await b.waitFor(1), [{ data: 'x', id }]);
  });
});

describe('maxConnectionsPerKey', () => {
  const options: SseOptions = {
    maxConnectionsPerKey: 2,
    connectionKey: (req) => String(req.headers['x-user'] ?? 'anonymous'),
  };

  test('over the limit for one key: 429 with Retry-After; other keys are still admitted; released on close', async () => {
    const mw = useSse(options);
    const { app, held } = helloApp(mw);
    const { server } = await serve(app);
    const a1 = await open(server, '/s', { 'x-user': 'alice', 'x-name': 'a1' });
    await expectAdmitted(a1);
    await expectAdmitted(await open(server, '/s', { 'x-user': 'alice', 'x-name': 'a2' }));

    const over = await open(server, '/s', { 'x-user': 'alice' });
    expect(over.status).toBe(429);
    expect(over.headers['retry-after']).toMatch(/^[1-9]\d*$/);
    expect(over.headers['content-type']).not.toMatch(/event-stream/);
    await over.waitForEnd();
    expect(over.events).toEqual([]);
    expect(over.retries).toEqual([]);

    await expectAdmitted(await open(server, '/s', { 'x-user': 'bob' }));
    await expectAdmitted(await open(server, '/s', { 'x-user': 'bob' }));
    expect((await open(server, '/s', { 'x-user': 'bob' })).status).toBe(429);
    expect(mw.connections).toBe(4);

    // released on client abort
    await a1.close();
    await until(() => mw.connections === 3, 'the abort to release its place');
    await expectAdmitted(await open(server, '/s', { 'x-user': 'alice', 'x-name': 'a3' }));
    expect((await open(server, '/s', { 'x-user': 'alice' })).status).toBe(429);

    // released on res.sse.close()
    held.get('a2')!.sse.close();
    await expectAdmitted(await open(server, '/s', { 'x-user': 'alice' }));
    expect((await open(server, '/s', { 'x-user': 'alice' })).status).toBe(429);
  });

  test('hub: 429 over the limit for one key, other keys admitted', async () => {
    const hub = useHub(createHub({ authorize: () => true, sse: { ...options, maxConnectionsPerKey: 1 } }));
    const app = express();
    app.use('/events', hub.router());
    const { server } = await serve(app);
    const a = await open(server, '/events/ch', { 'x-user': 'alice' });
    expect(a.status).toBe(200);
    const over = await open(server, '/events/ch', { 'x-user': 'alice' });
    expect(over.status).toBe(429);
    expect(over.headers['retry-after']).toMatch(/^[1-9]\d*$/);
    const b = await open(server, '/events/ch', { 'x-user': 'bob' });
    expect(b.status).toBe(200);
    await until(() => hub.stats().connections === 2, 'two live streams');
    await a.close();
    await until(() => hub.stats().connections === 1, 'the abort to release its place');
    expect((await open(server, '/events/ch', { 'x-user': 'alice' })).status).toBe(200);
  });
});

describe('allowedOrigins', () => {
  const forms: Array<[string, SseOptions['allowedOrigins']]> = [
    ['array', ['https://app.example', 'https://admin.example']],
    ['function', (origin: string) => origin === 'https://app.example' || origin === 'https://admin.example'],
  ];

  test.each(forms)('%s form: allowed origin gets its own ACAO + credentials + Vary; foreign gets 403 and nothing else; no Origin is allowed', async (_name, allowedOrigins) => {
    const mw = useSse({ allowedOrigins });
    const { app } = helloApp(mw);
    const { server } = await serve(app);

    for (const origin of ['https://app.example', 'https://admin.example']) {
      const s = await open(server, '/s', { Origin: origin });
      await expectAdmitted(s);
      expect(s.headers['access-control-allow-origin']).toBe(origin);
      expect(s.headers['access-control-allow-credentials']).toBe('true');
      expect(String(s.headers.vary)).toMatch(/(^|,\s*)Origin(\s*,|$)/);
    }

    for (const origin of ['https://evil.example', 'https://app.example.evil.example', 'http://app.example', 'null']) {
      const s = await open(server, '/s', { Origin: origin });
      expect(s.status).toBe(403);
      expect(s.headers['content-type']).not.toMatch(/event-stream/);
      expect(s.headers['access-control-allow-origin']).toBeUndefined();
      expect(s.headers['access-control-allow-credentials']).toBeUndefined();
      await s.waitForEnd();
      expect(s.raw()).toBe('Forbidden');
    }
    expect(mw.connections).toBe(2);

    const same = await open(server, '/s');
    await expectAdmitted(same);
    expect(same.headers['access-control-allow-origin']).toBeUndefined();
    expect(same.headers['access-control-allow-credentials']).toBeUndefined();
  });

  test('a check function that throws refuses (403)', async () => {
    const mw = useSse({
      allowedOrigins: () => {
        throw new Error('boom');
      },
    });
    const { app } = helloApp(mw);
    const { server } = await serve(app);
    const s = await open(server, '/s', { Origin: 'https://app.example' });
    expect(s.status).toBe(403);
    await s.waitForEnd();
    expect(mw.connections).toBe(0);
  });

  test('hub: a foreign origin is refused before authorize runs; an allowed one gets CORS headers', async () => {
    const asked: string[] = [];
    const hub = useHub(
      createHub({
        authorize: (_req, channel) => {
          asked.push(channel);
          return true;
        },
        sse: { allowedOrigins: ['https://app.example'] },
      }),
    );
    const app = express();
    app.use('/events', hub.router());
    const { server } = await serve(app);

    const foreign = await open(server, '/events/ch', { Origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    expect(foreign.headers['content-type']).not.toMatch(/event-stream/);
    expect(foreign.headers['access-control-allow-origin']).toBeUndefined();
    await foreign.waitForEnd();
    expect(foreign.raw()).toBe('Forbidden');
    expect(asked).toEqual([]);
    expect(hub.stats().connections).toBe(0);

    const allowed = await open(server, '/events/ch', { Origin: 'https://app.example' });
    expect(allowed.status).toBe(200);
    expect(allowed.headers).toMatchObject(SSE_HEAD);
    expect(allowed.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(allowed.headers['access-control-allow-credentials']).toBe('true');
    expect(String(allowed.headers.vary)).toMatch(/(^|,\s*)Origin(\s*,|$)/);
    expect(asked).toEqual(['ch']);
  });
});

describe('maxDuration', () => {
  test('sse(): the stream ends by itself, not immediately, and releases its place', async () => {
    const mw = useSse({ maxDuration: 150 });
    const { app } = helloApp(mw);
    const { server } = await serve(app);
    const started = performance.now();
    const s = await open(server, '/s');
    await expectAdmitted(s);
    await s.waitForEnd(5000);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(130); // 150 ms minus at most 10 % jitter (and timer rounding)
    expect(s.raw()).toBe('data: hello\n\n');
    expect(mw.connections).toBe(0);
    expect(runningClocks()).toBe(0);
  });

  test('hub: the stream ends by itself and the client resumes with Last-Event-ID, no gap, no reset', async () => {
    const hub = useHub(createHub({ authorize: () => true, sse: { maxDuration: 150 } }));
    const app = express();
    app.use('/events', hub.router());
    const { server } = await serve(app);

    const started = performance.now();
    const first = await open(server, '/events/ch');
    expect(first.status).toBe(200);
    await until(() => hub.stats().connections === 1, 'the stream to be live');
    const a = await hub.publish('ch', 'a');
    const b = await hub.publish('ch', 'b');
    expectEvents(await first.waitFor(2), [{ data: 'a', id: a }, { data: 'b', id: b }]);
    await first.waitForEnd(5000);
    expect(performance.now() - started).toBeGreaterThanOrEqual(130);
    await until(() => hub.stats().connections === 0, 'the stream to be released');

    const c = await hub.publish('ch', 'c');
    const d = await hub.publish('ch', 'd');
    const second = await open(server, '/events/ch', { 'Last-Event-ID': first.events.at(-1)!.id });
    expect(second.status).toBe(200);
    expectEvents(await second.waitFor(2), [
      { data: 'c', id: c, event: 'message' },
      { data: 'd', id: d, event: 'message' },
    ]);
    await second.waitForEnd(5000);
    expect(second.events.some((e) => e.event === 'reset')).toBe(false);
  });
});

describe('graceful shutdown', () => {
  const N = 100;

  function expectEndsWithRetry(s: TestStream, before: string): void {
    const raw = s.raw();
    expect(raw.startsWith(before)).toBe(true);
    const m = /^retry: (\d+)\n\n$/.exec(raw.slice(before.length));
    expect(m).not.toBeNull();
    const n = Number(m![1]);
    expect(n).toBeGreaterThanOrEqual(1000);
    expect(n).toBeLessThanOrEqual(10000);
  }

  function closeWithin(server: Server, ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server.close() did not complete within ${ms} ms`)), ms);
      server.close((err) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      });
    });
  }

  test('sse(): middleware.close() sends `retry:` last and ends all 100 streams; server.close() completes', async () => {
    const mw = sse();
    const { app } = helloApp(mw);
    const { server } = await serve(app);
    const streams = await Promise.all(Array.from({ length: N }, () => open(server, '/s')));
    await Promise.all(streams.map((s) => s.waitFor(1)));
    expect(mw.connections).toBe(N);
    expect(runningClocks()).toBeGreaterThan(0);

    mw.close();
    expect(mw.connections).toBe(0);
    await Promise.all(streams.map((s) => s.waitForEnd()));
    for (const s of streams) expectEndsWithRetry(s, 'data: hello\n\n');
    await closeWithin(server, 5000);
    expect(mw.connections).toBe(0);
    expect(runningClocks()).toBe(0);
  });

  test('hub: hub.close() sends `retry:` last and ends all 100 streams; server.close() completes', async () => {
    const hub = createHub({ authorize: () => true });
    const app = express();
    app.use('/events', hub.router());
    const { server } = await serve(app);
    const streams = await Promise.all(Array.from({ length: N }, (_, i) => open(server, `/events/ch${i % 7}`)));
    await until(() => hub.stats().connections === N, `${N} live streams`);
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await hub.publish(`ch${i}`, 'hello'));
    await Promise.all(streams.map((s) => s.waitFor(1)));

    await hub.close();
    expect(hub.stats().connections).toBe(0);
    await Promise.all(streams.map((s) => s.waitForEnd()));
    streams.forEach((s, i) => expectEndsWithRetry(s, `id: ${ids[i % 7]}\ndata: hello\n\n`));
    await closeWithin(server, 5000);
    expect(hub.stats().connections).toBe(0);
    expect(runningClocks()).toBe(0);
  });

  test('hub: a stream still being set up when hub.close() runs is ended with `retry:` too', async () => {
    // A broker whose subscribe() waits, so a stream sits admitted but not yet open.
    const inner = new MemoryBroker();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let subscribing = 0;
    const broker: Broker = {
      publish: (c, i, h) => inner.publish(c, i, h),
      subscribe: async (c, l) => {
        subscribing++;
        await gate;
        return inner.subscribe(c, l);
      },
      unsubscribe: (c, l) => inner.unsubscribe(c, l),
      replay: (c, a) => inner.replay(c, a),
      close: () => inner.close(),
    };
    const hub = createHub({ authorize: () => true, broker });
    const app = express();
    app.use('/events', hub.router());
    const { server } = await serve(app);
    // The head is written only once the stream opens, so do not wait for it yet.
    const opening = open(server, '/events/ch');
    await until(() => subscribing === 1, 'the subscription to start');
    expect(hub.stats().connections).toBe(1);

    const closing = hub.close();
    release();
    await closing;
    const s = await opening;
    expect(s.status).toBe(200);
    await s.waitForEnd();
    expect(s.raw()).toMatch(/^retry: \d+\n\n$/);
    expect(hub.stats().connections).toBe(0);
    await closeWithin(server, 5000);
    expect(runningClocks()).toBe(0);
  });
});

describe('bad options throw at factory time, naming the option', () => {
  const LIMITS = ['maxBufferedBytes', 'drainTimeout', 'maxDuration', 'maxConnections', 'maxConnectionsPerKey'] as const;
  const BAD: Array<[string, unknown, ErrorConstructor]> = [
    ['a string', '100', TypeError],
    ['a boolean', true, TypeError],
    ['null', null, TypeError],
    ['an object', {}, TypeError],
    ['zero', 0, RangeError],
    ['negative', -1, RangeError],
    ['a fraction', 1.5, RangeError],
    ['NaN', NaN, RangeError],
    ['-Infinity', -Infinity, RangeError],
  ];

  for (const name of LIMITS) {
    test.each(BAD)(`${name}: %s`, (_what, value, type) => {
      const factories = [
        () => sse({ [name]: value } as SseOptions),
        () => createHub({ authorize: () => true, sse: { [name]: value } as SseOptions }),
      ];
      for (const make of factories) {
        let error: unknown;
        try {
          make();
        } catch (err) {
          error = err;
        }
        expect(error).toBeInstanceOf(type);
        expect((error as Error).message).toContain(name);
      }
    });
  }

  test('Infinity is "unlimited" for the counts and the backlog, but not a duration', () => {
    for (const name of ['maxBufferedBytes', 'maxConnections', 'maxConnectionsPerKey']) {
      expect(() => sse({ [name]: Infinity })).not.toThrow();
    }
    for (const name of ['maxDuration', 'drainTimeout']) {
      expect(() => sse({ [name]: Infinity })).toThrow(RangeError);
      expect(() => sse({ [name]: Infinity })).toThrow(name);
    }
  });

  test.each<[string, unknown]>([
    ['a string', 'https://app.example'],
    ['an object', {}],
    ['a number', 1],
    ['"*"', ['*']],
    ['a trailing slash', ['https://app.example/']],
    ['an empty origin', ['']],
    ['a non-string entry', [42]],
  ])('allowedOrigins: %s', (_what, value) => {
    expect(() => sse({ allowedOrigins: value as SseOptions['allowedOrigins'] })).toThrow(TypeError);
    expect(() => sse({ allowedOrigins: value as SseOptions['allowedOrigins'] })).toThrow('allowedOrigins');
  });

  test.each<[string, unknown]>([
    ['a string', 'ip'],
    ['an object', {}],
    ['null', null],
  ])('connectionKey: %s', (_what, value) => {
    expect(() => sse({ connectionKey: value as SseOptions['connectionKey'] })).toThrow(TypeError);
    expect(() => sse({ connectionKey: value as SseOptions['connectionKey'] })).toThrow('connectionKey');
  });

  test('an unknown option name (a typo) throws, naming it', () => {
    expect(() => sse({ maxConnection: 10 } as unknown as SseOptions)).toThrow(TypeError);
    expect(() => sse({ maxConnection: 10 } as unknown as SseOptions)).toThrow('maxConnection');
    expect(() => createHub({ authorize: () => true, sse: { maxBuffer: 1 } as unknown as SseOptions })).toThrow('maxBuffer');
  });

  test('valid limits are accepted', () => {
    expect(() =>
      sse({
        maxBufferedBytes: 1,
        drainTimeout: 1,
        maxDuration: 1,
        maxConnections: 1,
        maxConnectionsPerKey: 1,
        connectionKey: () => 'k',
        allowedOrigins: ['https://app.example'],
      }),
    ).not.toThrow();
  });
});
