/**
 * Positions per partition (the layout a Redis Cluster uses), through the hub
 * on real streams: one Last-Event-ID resumes a stream whose channels live in
 * several partitions, exactly (every later event once, in order per channel),
 * also over many replay pages, and an id whose epochs no longer match gets one
 * `reset`. MemoryBroker with `partitions` gives the same layout in one
 * process; the paging test runs on RedisBroker with `partitions` too.
 */
import { MemoryBroker, RedisBroker, type Broker } from '../lib';
import { formatCursor, formatEventId } from '../lib/positions';
import { openStream, type TestStream } from '../lib/testing';
import { startHub, type HubServer } from './helpers/hub-server';
import { until } from './helpers/wait';

const ID = /^[A-Za-z0-9._-]{1,128}$/;
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** Channels that land in distinct partitions of `broker`. */
function spread(broker: Pick<Broker, 'partitionOf'>, n: number): string[] {
  const out: string[] = [];
  const used = new Set<number>();
  for (let i = 0; out.length < n && i < 1000; i++) {
    const ch = `ch${i}`;
    const p = broker.partitionOf!(ch);
    if (!used.has(p)) {
      used.add(p);
      out.push(ch);
    }
  }
  if (out.length < n) throw new Error('could not spread channels over partitions');
  return out;
}

async function setup(history = 1000): Promise<{ fx: HubServer; broker: MemoryBroker; channels: string[] }> {
  const broker = new MemoryBroker({ partitions: 4 });
  const fx = await startHub({ broker, history });
  cleanups.push(() => fx.close());
  return { fx, broker, channels: spread(broker, 3) };
}

async function open(fx: HubServer, channels: readonly string[], lastEventId?: string): Promise<TestStream> {
  const q = channels.map((c) => `channel=${c}`).join('&');
  const s = await openStream(
    { server: fx.server, path: `/events?${q}` },
    lastEventId === undefined ? {} : { headers: { 'Last-Event-ID': lastEventId } },
  );
  cleanups.push(() => s.close());
  return s;
}

test('a stream over three partitions gets every event once in order, with ids that stay within the contract', async () => {
  const { fx, channels } = await setup();
  const s = await open(fx, channels);
  await until(() => fx.hub.stats().connections === 1, 'the stream');
  const sent: string[] = [];
  for (let i = 0; i < 30; i++) {
    const ch = channels[i % 3]!;
    sent.push(`${ch}:${i}`);
    await fx.hub.publish(ch, `${ch}:${i}`);
  }
  await s.waitFor(30);
  expect(s.events.map((e) => e.data)).toEqual(sent);
  for (const e of s.events) expect(e.id).toMatch(ID);
  expect(new Set(s.events.map((e) => e.id)).size).toBe(30);
});

/** channel -> its events' data, in the order they arrived: order is promised per channel (partitions replay one after another). */
function perChannel(events: readonly { data: string }[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const e of events) (out[e.data.split(':')[0]!] ??= []).push(e.data);
  return out;
}

test('resume from every id the stream was sent: exactly the rest, in order per channel, then live, never a reset', async () => {
  const { fx, channels } = await setup();
  const first = await open(fx, channels);
  await until(() => fx.hub.stats().connections === 1, 'the stream');
  for (let i = 0; i < 12; i++) {
    const ch = channels[(i * 7) % 3]!;
    await fx.hub.publish(ch, `${ch}:${i}`);
  }
  await first.waitFor(12);
  await first.close();
  const history = first.events.map((e) => ({ data: e.data }));
  for (let k = 0; k < 12; k++) {
    const s = await open(fx, channels, first.events[k]!.id);
    await until(() => fx.hub.stats().connections === 1, 'the resumed stream');
    const ch = channels[k % 3]!;
    const live = `${ch}:live-${k}`;
    await fx.hub.publish(ch, live);
    const expected = [...history.slice(k + 1), { data: live }];
    await s.waitFor(expected.length);
    expect(s.events).toHaveLength(expected.length);
    expect(perChannel(s.events)).toEqual(perChannel(expected));
    expect(s.raw()).not.toContain('reset');
    await s.close();
    await until(() => fx.hub.stats().connections === 0, 'the stream to close');
    history.push({ data: live });
  }
});

test.each([
  ['MemoryBroker', () => new MemoryBroker({ partitions: 4 })],
  [
    'RedisBroker',
    () => new RedisBroker({ url: process.env.REDIS_URL!, prefix: `pages:${Date.now()}:`, partitions: 4 }),
  ],
])(
  '%s: a resume over many pages of three partitions, one channel far busier: exactly the rest, once, in order per channel',
  async (_name, make) => {
    const broker = make();
    const fx = await startHub({ broker, history: 5000 });
    cleanups.push(() => fx.close());
    const channels = spread(broker, 3);
    const first = await open(fx, channels);
    await until(() => fx.hub.stats().connections === 1, 'the stream');
    // 70 % / 25 % / 5 %: pages (500 events) cut one channel's entries while the others have few.
    const n = 1800;
    const turn: Promise<string>[] = [];
    for (let i = 0; i < n; i++) {
      const ch = channels[i % 20 < 14 ? 0 : i % 20 < 19 ? 1 : 2]!;
      turn.push(fx.hub.publish(ch, `${ch}:${i}`));
    }
    await Promise.all(turn);
    await first.waitFor(n);
    await first.close();
    const history = first.events.map((e) => ({ data: e.data }));
    for (const k of [0, 3, 777, 1500]) {
      const s = await open(fx, channels, first.events[k]!.id);
      const expected = history.slice(k + 1);
      await s.waitFor(expected.length, 20_000);
      const live = `${channels[2]}:live-${k}`;
      await fx.hub.publish(channels[2]!, live);
      await s.waitFor((e) => e.data === live);
      expect(s.events).toHaveLength(expected.length + 1);
      expect(perChannel(s.events)).toEqual(perChannel([...expected, { data: live }]));
      expect(s.raw()).not.toContain('reset');
      await s.close();
      await until(() => fx.hub.stats().connections === 0, 'the stream to close');
      history.push({ data: live });
    }
  },
);

test('a render-time cursor over three partitions loses nothing published between render and connect', async () => {
  const { fx, channels } = await setup();
  await fx.hub.publish(channels[0]!, 'before');
  const cursor = await fx.hub.cursor(channels);
  expect(cursor).toMatch(ID);
  await fx.hub.publish(channels[2]!, 'between');
  const s = await open(fx, channels, cursor);
  await s.waitFor(1);
  expect(s.events.map((e) => e.data)).toEqual(['between']);
  expect(s.raw()).not.toContain('reset');
});

test.each([
  [
    'another broker instance (other epochs)',
    async () => {
      const other = await setup();
      await other.fx.hub.publish(other.channels[0]!, 'x');
      return other.fx.hub.cursor(other.channels);
    },
  ],
  ['a check that does not match', async () => 'zzzzzzzz.0-1.1-1.2-1'],
  [
    'a partition missing from the id',
    async (fx: HubServer, channels: string[]) => await fx.hub.cursor(channels.slice(0, 1)),
  ],
])('an id from %s gives one reset carrying a resumable id', async (_what, makeId) => {
  const { fx, channels } = await setup();
  await fx.hub.publish(channels[1]!, 'old');
  const id = await makeId(fx, channels);
  const s = await open(fx, channels, id);
  await s.waitFor(1);
  expect(s.events[0]).toMatchObject({ event: 'reset', data: '' });
  await fx.hub.publish(channels[2]!, 'live');
  await s.waitFor(2);
  expect(s.events[1]!.data).toBe('live');
  await s.close();
  const again = await open(fx, channels, s.events[0]!.id);
  await fx.hub.publish(channels[0]!, 'after');
  await again.waitFor(2);
  expect(again.events.map((e) => [e.event, e.data])).toEqual([
    ['message', 'live'],
    ['message', 'after'],
  ]);
});

test('a single-channel stream is sent the ids publish resolved with', async () => {
  const { fx, channels } = await setup();
  const s = await open(fx, channels.slice(1, 2));
  await until(() => fx.hub.stats().connections === 1, 'the stream');
  const ids = [await fx.hub.publish(channels[1]!, 'a'), await fx.hub.publish(channels[1]!, 'b')];
  await s.waitFor(2);
  expect(s.events.map((e) => e.id)).toEqual(ids);
});

test("an event's id is the one-partition cursor, with the check of its epoch, also after the epoch changed", () => {
  const cases: [number, string, number, number][] = [
    [3, 'epochA', 42, 8],
    [3, 'epochA', 43, 8],
    [3, 'epochB', 43, 8], // a new epoch on the same partition: a new check
    [0, 'epochA', 1, 2],
    [7, 'epochB', 123_456_789, 8],
    [3, 'epochA', 44, 8], // back to an older epoch
  ];
  const ids = cases.map(([p, epoch, seq, n]) => formatEventId(p, epoch, seq, n));
  expect(ids).toEqual(cases.map(([p, epoch, seq, n]) => formatCursor(n, [[p, { epoch, seq }]])));
  expect(ids[0]!.slice(0, 8)).toBe(ids[1]!.slice(0, 8));
  expect(ids[2]!.slice(0, 8)).not.toBe(ids[1]!.slice(0, 8));
  expect(ids[5]!.slice(0, 8)).toBe(ids[0]!.slice(0, 8));
  for (const id of ids) expect(id).toMatch(ID);
});
