/**
 * Slow clients resuming over a big backlog through Redis, while events keep
 * being published: the replay comes from the Redis streams page by page as the
 * socket drains, and the events published meanwhile follow it. What a user
 * relies on: every event after the client's id exactly once, in order, no
 * reset, and the process's memory bounded by pages, not by the backlog; and
 * when Redis loses everything between two pages, one reset, never a gap.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { RedisBroker } from '../lib';
import { cleanup, defer } from './helpers/cleanup';
import { KiB, MiB } from './helpers/data';
import { HeldReplay } from './helpers/held-replay';
import { countingClient, seqOf, startHub, type HubServer } from './helpers/hub-server';
import { startRedis } from './helpers/redis-server';
import { until } from './helpers/wait';

jest.setTimeout(180_000);
afterEach(cleanup);

const kib = (i: number): string => String(i).padEnd(KiB, '.');

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
/** The heap still reachable (after a full collection): what the process holds, garbage aside. */
function liveHeap(): number {
  gc();
  return process.memoryUsage().heapUsed;
}

async function publishMany(fx: HubServer, channel: string, from: number, n: number, batch = 500): Promise<string[]> {
  const ids: string[] = [];
  for (let i = from; i < from + n; i += batch) {
    const turn: Promise<string>[] = [];
    for (let j = i; j < Math.min(from + n, i + batch); j++) turn.push(fx.hub.publish(channel, kib(j)));
    ids.push(...(await Promise.all(turn)));
  }
  return ids;
}

test('10 readers resume over 20,000 events (20 MiB) in Redis while 500 more are published mid-replay: all once, in order, no reset, bounded memory', async () => {
  const redis = await startRedis();
  defer(() => redis.stop());
  const fx = await startHub({ history: 30_000, broker: new RedisBroker({ url: redis.url, prefix: 'rr:' }) });
  defer(() => fx.close());
  const backlog = await publishMany(fx, 'feed', 0, 20_000);
  const before = liveHeap();
  // Ten readers resume from the first event at once: held as whole replays, that would be
  // 10 x 20 MiB of frames (twice that as JS strings); page by page it is a few pages each.
  const clients = await Promise.all(
    Array.from({ length: 10 }, () => countingClient(fx.port, '/events/feed', { 'Last-Event-ID': backlog[0]! })),
  );
  defer(() => clients.forEach((c) => c.close()));
  // Fence: every replay is under way (1,000 of 19,999 arrived); hold the readers while 500 live
  // events are published, so they reach the streams while their replays have most pages to go
  // (500 KiB held each: under maxBufferedBytes, so however long publishing takes, no stall).
  for (const c of clients) await c.waitFor(1_000, 60_000);
  for (const c of clients) c.pause();
  // Ten replays of 20 MiB half-way: held whole, that is at least 10 x 19 MiB still reachable.
  const held = (liveHeap() - before) / MiB;
  if (process.env.SSE_RELAY_MEMORY_REPORT)
    console.log(`10 replays from Redis in flight: live heap +${held.toFixed(1)} MiB`);
  expect(held).toBeLessThan(60);
  const live = await publishMany(fx, 'feed', 20_000, 500, 100);
  expect(clients.every((c) => c.ids.length < 19_999)).toBe(true); // the live events came mid-replay
  for (const c of clients) c.resume();
  const first = seqOf(backlog[1]!);
  for (const c of clients) {
    await c.waitFor(19_999 + 500, 120_000);
    expect(c.events.every((e) => e === 'message')).toBe(true); // no reset
    for (let i = 0; i < c.ids.length; i++) {
      if (seqOf(c.ids[i]!) !== first + i) throw new Error(`event ${i}: id ${c.ids[i]} is not seq ${first + i}`);
    }
    expect(c.ids).toHaveLength(20_499);
    expect(c.ids[c.ids.length - 1]).toBe(live[live.length - 1]);
  }
  await until(() => fx.hub.stats().replays.complete === 10, 'the replays counted complete');
  expect(fx.hub.stats()).toMatchObject({ dropped: 0, replays: { complete: 10, reset: 0 } });
});

test('Redis restarted without persistence between two pages of a replay: the events up to there, one reset at the new head, then live', async () => {
  let redis = await startRedis();
  const { port } = redis;
  defer(() => redis.stop());
  const held = new HeldReplay(new RedisBroker({ url: redis.url, prefix: 'rw:', commandTimeout: 2000 }), { page: 2 });
  const fx = await startHub({ history: 5000, broker: held.broker });
  defer(() => fx.close());
  const backlog = await publishMany(fx, 'feed', 0, 1200);
  const client = await countingClient(fx.port, '/events/feed', { 'Last-Event-ID': backlog[0]! });
  defer(() => client.close());
  await held.asked; // the first page is written; the hub asks for the second
  await redis.stop();
  redis = await startRedis({ port }); // empty: a new epoch, no history
  await held.snapshot();
  held.answer();
  await until(() => client.events.includes('reset'), 'the reset', 20_000);
  const at = client.events.indexOf('reset');
  const live = await fx.hub.publish('feed', kib(9999));
  await client.waitFor(at + 2, 20_000);
  expect(at).toBeGreaterThan(0);
  expect(at).toBeLessThan(backlog.length - 1);
  expect(client.ids.slice(0, at)).toEqual(backlog.slice(1, at + 1)); // no gap before it
  expect(client.events.slice(at)).toEqual(['reset', 'message']); // one reset, then live only
  expect(client.ids.at(-1)).toBe(live);
  expect(client.ids[at]!.split('.')[0] === backlog[0]!.split('.')[0]).toBe(false); // the new epoch's position
});
