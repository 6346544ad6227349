/**
 * Backpressure on real sockets: what one turn produces for readers that keep
 * up is delivered (never a cut), a client that stops reading is cut with
 * bounded memory and then catches up over a big history, a resuming client
 * that stops reading is cut the same way for the live events that wait for
 * it while its replay is written, replays are written page by page as the
 * socket drains (30 concurrent resumes over 20 MiB do not multiply memory),
 * and an event too large to deliver is refused when it is published or sent,
 * with a RangeError that says why.
 *
 * 50 healthy readers beside one that stops reading: slow-clients.test.ts;
 * a socket that never drains: drain-timeout.test.ts.
 */
import express from 'express';
import diagnosticsChannel from 'node:diagnostics_channel';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DIAGNOSTICS_CHANNELS as CHANNELS, MemoryBroker, sse, type StreamDropMessage } from '../lib';
import { HARD_FACTOR } from '../lib/stream/write-queue';
import { closeServer, openStream } from '../lib/testing';
import { cleanup, defer } from './helpers/cleanup';
import { KiB, MiB } from './helpers/data';
import { HeldReplay } from './helpers/held-replay';
import { countingClient, seqOf, startHub, type HubServer } from './helpers/hub-server';
import { until } from './helpers/wait';

afterEach(cleanup);

async function hubServer(history: number): Promise<HubServer> {
  const fx = await startHub({ history, broker: new MemoryBroker({ maxHistoryBytes: 64 * MiB }) });
  defer(() => fx.close());
  return fx;
}

const kib = (i: number): string => String(i).padEnd(KiB, '.');

/** Publishes n events of 1 KiB, `batch` at a time; resolves with their ids. */
async function publishMany(fx: HubServer, channel: string, n: number, batch = 500): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i += batch) {
    const turn: Promise<string>[] = [];
    for (let j = i; j < Math.min(n, i + batch); j++) turn.push(fx.hub.publish(channel, kib(j)));
    ids.push(...(await Promise.all(turn)));
  }
  return ids;
}

function expectConsecutive(ids: readonly string[], firstSeq: number, count: number): void {
  expect(ids).toHaveLength(count);
  for (let i = 0; i < ids.length; i++) {
    if (seqOf(ids[i]!) !== firstSeq + i) throw new Error(`event ${i}: id ${ids[i]} is not seq ${firstSeq + i}`);
  }
}

test('3,000 publishes in one turn reach every reader that keeps up: none is cut', async () => {
  const fx = await hubServer(1000);
  const readers = await Promise.all(Array.from({ length: 5 }, () => countingClient(fx.port, '/events/feed')));
  defer(() => readers.forEach((r) => r.close()));
  await until(() => fx.hub.stats().connections === 5, '5 streams');
  const ids = await Promise.all(Array.from({ length: 3000 }, (_, i) => fx.hub.publish('feed', kib(i))));
  for (const r of readers) {
    await r.waitFor(3000);
    expect(r.ids).toEqual(ids);
  }
  expect(fx.hub.stats().dropped).toBe(0);
});

test('a client that stops reading is cut for its backlog, then resumes over a 20 MiB history and catches up', async () => {
  const fx = await hubServer(30_000);
  const slow = await countingClient(fx.port, '/events/feed');
  defer(() => slow.close());
  await until(() => fx.hub.stats().connections === 1, 'the stream');
  const [first] = await publishMany(fx, 'feed', 1);
  await slow.waitFor(1);
  slow.pause();
  const rest = await publishMany(fx, 'feed', 20_000);
  await until(() => fx.hub.stats().droppedBy.backlog === 1, 'the paused client to be cut', 20_000);
  expect(fx.hub.stats().connections).toBe(0);

  const back = await countingClient(fx.port, '/events/feed', { 'Last-Event-ID': first! });
  defer(() => back.close());
  await back.waitFor(20_000, 60_000);
  expect(back.events.every((e) => e === 'message')).toBe(true); // no reset
  expectConsecutive(back.ids, seqOf(rest[0]!), 20_000);
  expect(back.ids[back.ids.length - 1]).toBe(rest[rest.length - 1]);
  expect(fx.hub.stats()).toMatchObject({ droppedBy: { backlog: 1, drain: 0 }, replays: { complete: 1, reset: 0 } });
}, 120_000);

describe('a resuming client that stops reading: what waits for it while its replay is written counts toward maxBufferedBytes', () => {
  const BIG = 32 * KiB;
  const BATCH = 50;
  const big = (i: number): string => `big${i}`.padEnd(BIG, '.');

  /**
   * One event, then 500 of 32 KiB (then `small` of 1 KiB). A client resuming
   * from the first one gets those 500 as its first replay page: 16 MiB, more
   * than the kernel's socket buffers take for a client that stops reading (4
   * MiB measured here on loopback), so its stream stays in that page, and
   * every event published after its head arrived waits for it in the hub.
   */
  async function history(fx: HubServer, small: number): Promise<{ start: string; bigs: string[]; smalls: string[] }> {
    const [start] = await publishMany(fx, 'feed', 1);
    const bigs: string[] = [];
    for (let i = 0; i < 500; i += BATCH) {
      bigs.push(...(await Promise.all(Array.from({ length: BATCH }, (_, j) => fx.hub.publish('feed', big(i + j))))));
    }
    return { start: start!, bigs, smalls: await publishMany(fx, 'feed', small) };
  }

  /** Publishes 1 KiB events, BATCH per turn (yielding to socket I/O between), until `done()` or `max` events. */
  async function flood(fx: HubServer, max: number, done: () => boolean): Promise<string[]> {
    const ids: string[] = [];
    while (!done() && ids.length < max) {
      const n = Math.min(BATCH, max - ids.length);
      ids.push(...(await publishMany(fx, 'feed', n, n)));
      await new Promise((r) => setImmediate(r));
    }
    return ids;
  }

  test('under a flood it is cut for its backlog before 4x maxBufferedBytes waited for it, and resumes from its last id with every event once; a client that reads through a 20 MiB resume meanwhile gets every event once, in order, and is not cut', async () => {
    const fx = await hubServer(30_000);
    const { start, bigs, smalls } = await history(fx, 20_000);
    const stuck = await countingClient(fx.port, '/events/feed', { 'Last-Event-ID': start });
    stuck.pause();
    defer(() => stuck.close());
    const reader = await countingClient(fx.port, '/events/feed', { 'Last-Event-ID': bigs[bigs.length - 1]! });
    defer(() => reader.close());

    const drops: StreamDropMessage[] = [];
    const onDrop = (m: unknown): void => void drops.push(m as StreamDropMessage);
    diagnosticsChannel.subscribe(CHANNELS.streamDrop, onDrop);
    defer(() => diagnosticsChannel.unsubscribe(CHANNELS.streamDrop, onDrop));

    // Everything published from now on waits for the stuck stream (it is in its first replay page).
    const cut = (): boolean => fx.hub.stats().droppedBy.backlog > 0;
    const live = await flood(fx, (16 * MiB) / KiB, cut);
    expect(fx.hub.stats().droppedBy).toEqual({ backlog: 1, drain: 0, error: 0 });
    // Cut once what waited passed the bound (and not before it passed maxBufferedBytes): memory bounded.
    expect(live.length * KiB).toBeGreaterThan(MiB);
    expect(live.length * KiB).toBeLessThanOrEqual(HARD_FACTOR * MiB + BATCH * KiB);
    // What the hub held for it when it cut it: the socket's last piece (64 KiB and a frame) and what waited.
    expect(drops.map((d) => d.reason)).toEqual(['backlog']);
    expect(drops[0]!.bufferedBytes).toBeGreaterThan(MiB);
    expect(drops[0]!.bufferedBytes).toBeLessThanOrEqual(HARD_FACTOR * MiB + 128 * KiB);

    // It reads what reached it, sees the end, and resumes from the last event it got, as EventSource does.
    stuck.resume();
    await stuck.ended;
    expect(stuck.ids.length).toBeLessThan(bigs.length); // it was cut during its replay, not once live
    const back = await countingClient(fx.port, '/events/feed', { 'Last-Event-ID': stuck.ids.at(-1) ?? start });
    defer(() => back.close());
    const after = await flood(fx, 100, () => false);

    const total = bigs.length + smalls.length + live.length + after.length; // after `start`
    await back.waitFor(total - stuck.ids.length, 60_000);
    const got = [...stuck.ids, ...back.ids];
    expectConsecutive(got, seqOf(start) + 1, total);
    expect(got[got.length - 1]).toBe(after[after.length - 1]);
    expect([...stuck.events, ...back.events].every((e) => e === 'message')).toBe(true); // no reset

    await reader.waitFor(smalls.length + live.length + after.length, 60_000);
    expectConsecutive(reader.ids, seqOf(smalls[0]!), smalls.length + live.length + after.length);
    expect(reader.events.every((e) => e === 'message')).toBe(true);
    expect(fx.hub.stats()).toMatchObject({
      connections: 2,
      droppedBy: { backlog: 1, drain: 0, error: 0 },
      replays: { reset: 0 },
    });
  }, 120_000);

  test('before its head is written (its first replay page not read yet) it is cut once what waits passes HARD_FACTOR x maxBufferedBytes: memory bounded', async () => {
    const held = new HeldReplay(new MemoryBroker({ maxHistoryBytes: 64 * MiB }));
    const fx = await startHub({ history: 30_000, broker: held.broker });
    defer(() => fx.close());
    const [start] = await publishMany(fx, 'feed', 1);
    const req = http.get({
      host: '127.0.0.1',
      port: fx.port,
      path: '/events/feed',
      agent: false,
      headers: { Accept: 'text/event-stream', 'Last-Event-ID': start! },
    });
    defer(() => req.destroy());
    const answer = new Promise<string>((resolve) => {
      req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      req.on('response', (res) => resolve(`answered ${res.statusCode}`));
    });
    await held.asked; // subscribed; its first replay page is held: no head yet, live events wait for it
    const cut = (): boolean => fx.hub.stats().droppedBy.backlog > 0;
    const live = await flood(fx, (16 * MiB) / KiB, cut);
    // what waits is counted as its data plus 64 per event: cut in the batch that passed the bound
    const counted = (n: number): number => n * (KiB + 64);
    expect(counted(live.length)).toBeGreaterThan(HARD_FACTOR * MiB);
    expect(counted(live.length)).toBeLessThanOrEqual(HARD_FACTOR * MiB + counted(BATCH));
    expect(await answer).toBe('ECONNRESET'); // no head was written: the client reconnects as from a network error
    await held.snapshot();
    held.answer();
    expect(fx.hub.stats()).toMatchObject({
      connections: 0,
      droppedBy: { backlog: 1, drain: 0, error: 0 },
      replays: { complete: 0, reset: 0 },
    });
  });

  test('with nothing more arriving, a backlog over maxBufferedBytes with no byte leaving is cut within the stall grace, as a live one is', async () => {
    const fx = await hubServer(5000);
    const { start } = await history(fx, 0);
    const stuck = await countingClient(fx.port, '/events/feed', { 'Last-Event-ID': start });
    stuck.pause();
    defer(() => stuck.close());
    const live = await flood(fx, (3 * MiB) / (2 * KiB), () => false); // 1.5 MiB, under HARD_FACTOR x
    expect(live).toHaveLength(1536);
    await until(() => fx.hub.stats().droppedBy.backlog === 1, 'the stalled resume to be cut for its backlog');
    // Cut inside its first page: the resume never finished, so it is neither complete nor reset.
    expect(fx.hub.stats()).toMatchObject({
      connections: 0,
      droppedBy: { backlog: 1, drain: 0, error: 0 },
      replays: { complete: 0, reset: 0 },
    });
  });
});

test('30 concurrent resumes over a 20 MiB history are written as the sockets drain: bounded memory, every event once in order', async () => {
  const fx = await hubServer(30_000);
  const ids = await publishMany(fx, 'feed', 20_000);
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  defer(() => clearInterval(sampler));
  const clients = await Promise.all(
    Array.from({ length: 30 }, () => countingClient(fx.port, '/events/feed', { 'Last-Event-ID': ids[0]! })),
  );
  defer(() => clients.forEach((c) => c.close()));
  for (const c of clients) {
    await c.waitFor(19_999, 90_000);
    expectConsecutive(c.ids, seqOf(ids[1]!), 19_999);
  }
  clearInterval(sampler);
  const grewMiB = (peak - before) / MiB;
  if (process.env.SSE_RELAY_MEMORY_REPORT) console.log(`30 resumes over 20 MiB: RSS peak +${grewMiB.toFixed(1)} MiB`);
  // Written in one piece each, 30 replays would hold 30 x 20 MiB of frames (1.2 GB as JS strings).
  expect(grewMiB).toBeLessThan(200);
  expect(fx.hub.stats()).toMatchObject({ dropped: 0, replays: { complete: 30, reset: 0 } });
}, 180_000);

describe('an event too large to deliver is refused before anything is stored or written', () => {
  test('hub.publish of 2 MiB rejects with a RangeError naming maxEventBytes; nothing reaches the stream', async () => {
    const fx = await hubServer(100);
    const s = await openStream({ server: fx.server, path: '/events/feed' });
    defer(() => s.close());
    await until(() => fx.hub.stats().connections === 1, 'the stream');
    await expect(fx.hub.publish('feed', 'x'.repeat(2 * MiB))).rejects.toThrow(RangeError);
    await expect(fx.hub.publish('feed', 'x'.repeat(2 * MiB))).rejects.toThrow(/maxEventBytes/);
    const id = await fx.hub.publish('feed', 'small');
    await s.waitFor(1);
    expect(s.events.map((e) => [e.id, e.data])).toEqual([[id, 'small']]);
    expect(seqOf(id)).toBe(1); // the refused ones took no position
    expect(fx.hub.stats().dropped).toBe(0);
  });

  test('a bigger maxEventBytes (with maxBufferedBytes) delivers a 2 MiB event to a reader', async () => {
    const fx = await startHub({ sse: { maxBufferedBytes: 4 * MiB, maxEventBytes: 3 * MiB } });
    defer(() => fx.close());
    const s = await countingClient(fx.port, '/events/feed');
    defer(() => s.close());
    await until(() => fx.hub.stats().connections === 1, 'the stream');
    const id = await fx.hub.publish('feed', 'x'.repeat(2 * MiB));
    await s.waitFor(1);
    expect(s.ids).toEqual([id]);
  });

  test('res.sse.send of 1.5 MiB throws a RangeError and leaves the stream open', async () => {
    const mw = sse();
    let thrown: unknown;
    const app = express();
    app.get('/', mw, (_req, res) => {
      try {
        res.sse.send('x'.repeat(1.5 * MiB));
      } catch (err) {
        thrown = err;
      }
      res.sse.send('after');
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    defer(() => closeServer(server));
    const s = await openStream(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    defer(() => s.close());
    await s.waitFor(1);
    expect(thrown).toBeInstanceOf(RangeError);
    expect(String(thrown)).toMatch(/maxEventBytes/);
    expect(s.events.map((e) => e.data)).toEqual(['after']);
    expect(mw.dropped).toBe(0);
  });

  test('maxEventBytes above maxBufferedBytes is refused at factory time', () => {
    expect(() => sse({ maxBufferedBytes: KiB, maxEventBytes: 2 * KiB })).toThrow(RangeError);
  });
});
