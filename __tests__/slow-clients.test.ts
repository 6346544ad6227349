/**
 * Slow clients: a client that stops reading is dropped (the hub's backlog
 * bound, sse()'s maxBufferedBytes) while 50 healthy clients on the same
 * channel get all 10,000 events in order, and memory stays bounded. Exact
 * ids and payloads; no assertion on wall-clock speed.
 *
 * The drain timeout is in drain-timeout.test.ts; cutting, resuming and paced
 * replays of big histories in backpressure.test.ts.
 */
import express from 'express';
import { request, type ServerResponse } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createHub } from '../lib';
import { createParser } from '../lib/testing';
import { cleanup, defer } from './helpers/cleanup';
import { pausedClient } from './helpers/clients';
import { KiB, MiB, payload } from './helpers/data';
import { serve, useHub, useSse } from './helpers/sse-server';
import { until } from './helpers/wait';

afterEach(cleanup);

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
    const req = request(
      { host: '127.0.0.1', port, path, agent: false, headers: { Accept: 'text/event-stream' } },
      (res) => {
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
      },
    );
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
        await until(
          () => readers.every((r) => r.count >= published || r.ended),
          `readers to reach ${published}`,
          20000,
        );
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
