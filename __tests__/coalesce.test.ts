/**
 * Coalescing: `hub.publish(channel, data, { coalesce: key })` on
 * real sockets. A client that stops reading for a while keeps one queued
 * frame per key (latest wins) instead of a growing backlog, so it is not
 * dropped and ends with the latest state of every key, each key in increasing
 * id order; a client that keeps up receives every event.
 */
import express from 'express';
import type { ServerResponse, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHub, type Hub } from '../lib';
import { closeServer, expectEvents, openStream, type TestStream } from '../lib/testing';
import { cleanup, defer } from './helpers/cleanup';
import { pausableClient, type PausableClient } from './helpers/clients';
import { KiB, MiB } from './helpers/data';
import { until } from './helpers/wait';

const KEYS = 20;
const UPDATES = 500; // per key: 10,000 events of ~1 KiB
const BATCH = 50;

afterEach(cleanup);

const keyName = (k: number): string => `order:${k}:status`;

/** `${k}:${v}:` padded to 1 KiB. */
function update(k: number, v: number): string {
  const head = `${k}:${v}:`;
  return head + '.'.repeat(KiB - head.length);
}

interface Received {
  id: string;
  k: number;
  v: number;
}

/** The slow client: a pausable client that keeps each event's id and the key and version in its data. */
type SlowClient = PausableClient<Received>;

function slowClient(port: number, path: string): Promise<SlowClient> {
  return pausableClient(port, path, { 'x-name': 'slow' }, (ev) => {
    const [k, v] = ev.data.split(':', 2).map(Number);
    return { id: ev.id, k: k!, v: v! };
  });
}

interface Fixture {
  hub: Hub;
  server: Server;
  fast: TestStream;
  slow: SlowClient;
  /** The server side of the slow client's stream. */
  slowRes: () => ServerResponse;
}

async function start(): Promise<Fixture> {
  // maxBufferedBytes stays at its default (1 MiB). drainTimeout is raised only so that a slow
  // test machine cannot turn the planned pause into a drain-timeout drop; it is not under test.
  const hub = createHub({ authorize: () => true, sse: { drainTimeout: 120_000 } });
  defer(() => hub.close());
  let slowRes: ServerResponse | undefined;
  const app = express();
  app.get(
    '/orders',
    (req, res, next) => {
      if (req.headers['x-name'] === 'slow') slowRes = res;
      next();
    },
    hub.subscribe(() => 'orders'),
  );
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  defer(() => closeServer(server));
  const port = (server.address() as AddressInfo).port;

  const fast = await openStream({ server, path: '/orders' });
  defer(() => fast.close());
  expect(fast.status).toBe(200);
  const slow = await slowClient(port, '/orders');
  await until(() => hub.stats().connections === 2, 'both streams to be live');
  return { hub, server, fast, slow, slowRes: () => slowRes! };
}

/**
 * Publishes UPDATES rounds of one update per key, BATCH publishes per turn
 * (awaited together; the broker numbers them in call order), and lets the
 * fast client keep up after each batch, as a client that keeps up does.
 * `onBatch` runs after each batch with the number published so far.
 */
async function publishAll(fx: Fixture, onBatch: (published: number) => void | Promise<void>): Promise<string[]> {
  const ids: string[] = [];
  const total = KEYS * UPDATES;
  for (let i = 0; i < total; i += BATCH) {
    const batch: Array<Promise<string>> = [];
    for (let j = i; j < i + BATCH; j++) {
      const k = j % KEYS;
      const v = Math.floor(j / KEYS);
      batch.push(fx.hub.publish('orders', update(k, v), { event: 'status', coalesce: keyName(k) }));
    }
    ids.push(...(await Promise.all(batch)));
    await new Promise((r) => setImmediate(r));
    await fx.fast.waitFor(ids.length, 20000);
    await onBatch(ids.length);
  }
  return ids;
}

/** Checks what the slow client got: per key increasing versions, all ids in publish order, latest state of every key. */
function checkSlow(events: readonly Received[], ids: readonly string[]): void {
  const index = new Map(ids.map((id, i) => [id, i]));
  let previous = -1;
  const lastV = new Array<number>(KEYS).fill(-1);
  for (const ev of events) {
    const at = index.get(ev.id);
    expect(at).toBeDefined();
    // The id is the one published for exactly this key and version.
    expect([at! % KEYS, Math.floor(at! / KEYS)]).toEqual([ev.k, ev.v]);
    // Coalescing keeps publish order: ids only increase (so Last-Event-ID stays a valid resume point).
    expect(at!).toBeGreaterThan(previous);
    previous = at!;
    expect(ev.v).toBeGreaterThan(lastV[ev.k]!);
    lastV[ev.k] = ev.v;
  }
  // The latest state of every key, with the id that was published for it.
  expect(lastV).toEqual(new Array(KEYS).fill(UPDATES - 1));
  for (let k = 0; k < KEYS; k++) {
    const last = events.filter((e) => e.k === k).at(-1)!;
    expect(last.id).toBe(ids[(UPDATES - 1) * KEYS + k]);
  }
}

function checkFast(fast: TestStream, ids: readonly string[]): void {
  expect(fast.events).toHaveLength(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const ev = fast.events[i]!;
    if (ev.id !== ids[i] || ev.event !== 'status' || ev.data !== update(i % KEYS, Math.floor(i / KEYS))) {
      expectEvents([ev], [{ id: ids[i], event: 'status', data: update(i % KEYS, Math.floor(i / KEYS)) }]);
    }
  }
}

test('a client that stops reading during 20 keys x 500 updates is not dropped and ends with the latest state of every key; the fast client gets every event', async () => {
  const fx = await start();
  fx.slow.pause();
  let maxWritable = 0;
  let droppedDuring = 0;
  const ids = await publishAll(fx, () => {
    maxWritable = Math.max(maxWritable, fx.slowRes().writableLength);
    droppedDuring = Math.max(droppedDuring, fx.hub.stats().dropped);
  });
  expect(droppedDuring).toBe(0);
  expect(fx.hub.stats()).toMatchObject({ connections: 2, dropped: 0, published: KEYS * UPDATES });
  const beforeResume = fx.slow.events.length;
  expect(fx.slowRes().writableNeedDrain).toBe(true); // it is behind, with frames held back at the server

  fx.slow.resume();
  await until(
    () => {
      const seen = new Set(fx.slow.events.filter((e) => e.v === UPDATES - 1).map((e) => e.k));
      return seen.size === KEYS;
    },
    'the slow client to see the latest update of every key',
    20000,
  );
  checkFast(fx.fast, ids);
  // Nothing else may follow: the queue held one frame per key. The fence, an event without a key
  // published now, comes after everything still queued; what came before it is all there will be.
  const fence = await fx.hub.publish('orders', 'fence', { event: 'fence' });
  await until(() => fx.slow.events.at(-1)?.id === fence, 'the slow client to get the fence event', 20000);
  const got = fx.slow.events.slice(0, -1);
  checkSlow(got, ids);
  // It did fall behind, and coalescing is what kept it: far fewer events than published.
  expect(got.length).toBeLessThan(KEYS * UPDATES);
  expect(got.length - beforeResume).toBeGreaterThan(0);
  expect(maxWritable).toBeLessThan(MiB);
  expect(fx.hub.stats()).toMatchObject({ connections: 2, dropped: 0 });
  if (process.env.SSE_RELAY_MEMORY_REPORT) {
    process.stderr.write(
      `[coalesce] paused throughout: slow got ${got.length} of ${ids.length} (${beforeResume} before resume), max writableLength ${maxWritable}\n`,
    );
  }

  // Still a live, healthy stream afterwards.
  const live = await fx.hub.publish('orders', update(0, UPDATES), { event: 'status', coalesce: keyName(0) });
  await until(() => fx.slow.events.at(-1)?.id === live, 'the slow client to get a live event');
  await fx.fast.waitFor(ids.length + 2); // the fence, then the live event
  expect(fx.fast.events.at(-2)!.id).toBe(fence);
  expect(fx.fast.events.at(-1)!.id).toBe(live);
}, 120_000);

test('a client that stops reading and resumes halfway through catches up in order, coalesced, without a drop', async () => {
  const fx = await start();
  fx.slow.pause();
  let resumedAt = 0;
  const ids = await publishAll(fx, (published) => {
    if (resumedAt === 0 && published >= (KEYS * UPDATES) / 2) {
      resumedAt = published;
      fx.slow.resume();
    }
    expect(fx.hub.stats().dropped).toBe(0);
  });
  await until(() => fx.slow.events.at(-1)?.id === ids.at(-1), 'the slow client to receive the last event', 20000);
  checkSlow(fx.slow.events, ids);
  checkFast(fx.fast, ids);
  expect(fx.slow.events.length).toBeLessThanOrEqual(KEYS * UPDATES);
  expect(fx.hub.stats()).toMatchObject({ connections: 2, dropped: 0 });
  if (process.env.SSE_RELAY_MEMORY_REPORT) {
    process.stderr.write(`[coalesce] resumed at ${resumedAt}: slow got ${fx.slow.events.length} of ${ids.length}\n`);
  }
}, 120_000);

test('events without a coalesce key are never replaced, and keys only replace their own frames', async () => {
  const fx = await start();
  fx.slow.pause();
  const ids: string[] = [];
  const plain: string[] = [];
  let rounds = 0;
  const round = async (withPlain: boolean): Promise<void> => {
    const batch: Array<Promise<string>> = [];
    for (let k = 0; k < KEYS; k++)
      batch.push(fx.hub.publish('orders', update(k, rounds), { event: 'status', coalesce: keyName(k) }));
    if (withPlain) batch.push(fx.hub.publish('orders', update(KEYS, rounds), { event: 'status' })); // no key
    const got = await Promise.all(batch);
    ids.push(...got);
    if (withPlain) plain.push(got.at(-1)!);
    rounds++;
    await new Promise((r) => setImmediate(r));
    await fx.fast.waitFor(ids.length, 20000);
  };
  // Keyed updates until the server holds frames back for the slow client (bounded: 1,000 rounds = 20 MiB)...
  while (!fx.slowRes().writableNeedDrain && rounds < 1000) await round(false);
  expect(fx.slowRes().writableNeedDrain).toBe(true);
  // ...then 50 rounds with an unkeyed event in each, all while it stays behind.
  for (let i = 0; i < 50; i++) await round(true);
  expect(fx.slowRes().writableNeedDrain).toBe(true);
  fx.slow.resume();
  await until(() => fx.slow.events.at(-1)?.id === ids.at(-1), 'the slow client to catch up', 20000);
  const got = new Set(fx.slow.events.map((e) => e.id));
  for (const id of plain) expect(got.has(id)).toBe(true);
  for (let k = 0; k < KEYS; k++) {
    const last = fx.slow.events.filter((e) => e.k === k).at(-1);
    expect(last?.v).toBe(rounds - 1);
  }
  expect(fx.slow.events.length).toBeLessThan(ids.length); // keyed frames were replaced
  expect(fx.slow.events.map((e) => e.id)).toEqual(ids.filter((id) => got.has(id))); // in publish order
  expect(fx.fast.events.map((e) => e.id)).toEqual(ids);
  expect(fx.hub.stats().dropped).toBe(0);
}, 60_000);
