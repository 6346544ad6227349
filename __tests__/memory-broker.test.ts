/**
 * MemoryBroker's own limits: history bounded in bytes per channel, idempotency keys, paged replay,
 * and maxChannels (the channel bound, seen through a hub: a forgotten channel resumes with a reset).
 */
import { MemoryBroker } from '../lib';
import { hubSuite } from './helpers/hub-suite';

const { start, stream } = hubSuite();

const KiB = 1024;

test('history is bounded in bytes: 1,000 x 100 KiB keeps at most maxHistoryBytes, and a resume from before it is incomplete', async () => {
  const broker = new MemoryBroker({ maxHistoryBytes: 8 * 1024 * KiB });
  const seqs: number[] = [];
  for (let i = 0; i < 1000; i++)
    seqs.push((await broker.publish('big', { data: String(i).padEnd(100 * KiB, '.') }, 1000)).seq);
  const all = await broker.replay(['big'], new Map([[0, 0]]));
  expect(all.complete).toBe(false);
  // The newest ~80 events fit in 8 MiB; a resume from inside that window is complete.
  const recent = await broker.replay(['big'], new Map([[0, seqs[990]!]]));
  expect(recent.complete).toBe(true);
  expect(recent.events.map((e) => e.seq)).toEqual(seqs.slice(991));
  let kept = 0;
  for (let from = seqs[999]!; from > 0; from--) {
    if (!(await broker.replay(['big'], new Map([[0, from - 1]]))).complete) break;
    kept++;
  }
  expect(kept * 100 * KiB).toBeLessThanOrEqual(8 * 1024 * KiB);
  expect(kept).toBeGreaterThan(70);
  await broker.close();
});

test('the default byte bound is 8 MiB per channel', async () => {
  const broker = new MemoryBroker();
  for (let i = 0; i < 200; i++) await broker.publish('big', { data: 'x'.repeat(100 * KiB) }, 1000);
  expect((await broker.replay(['big'], new Map([[0, 0]]))).complete).toBe(false);
  expect((await broker.replay(['big'], new Map([[0, 130]]))).complete).toBe(true);
  await broker.close();
});

test('history keeps exactly the newest events as the window wraps, grows and shrinks: complete from inside it, reset from before', async () => {
  const broker = new MemoryBroker({ maxHistoryBytes: 64 * KiB });
  const from = (seq: number) => broker.replay(['h'], new Map([[0, seq]]));
  const published: { seq: number; data: string; event?: string; coalesce?: string }[] = [];
  const publish = async (data: string, extra: { event?: string; coalesce?: string } = {}) => {
    const ev = await broker.publish('h', { data, ...extra }, 50);
    published.push({ seq: ev.seq, data, ...extra });
  };
  for (let i = 0; i < 130; i++) await publish(`small-${i}`, i % 3 === 0 ? { event: 'e', coalesce: `k${i % 5}` } : {});
  const last50 = published.slice(-50);
  expect((await from(published.at(-51)!.seq - 1)).complete).toBe(false);
  const kept = await from(published.at(-51)!.seq);
  expect(kept.complete).toBe(true);
  expect(kept.events.map((e) => ({ seq: e.seq, data: e.data, event: e.event, coalesce: e.coalesce }))).toEqual(
    last50.map((e) => ({ event: undefined, coalesce: undefined, ...e })),
  );
  expect(kept.events.every((e) => e.channel === 'h' && e.id === `${e.epoch}.${e.seq}`)).toBe(true);
  // Events of 20 KiB: the byte bound keeps 3 of them (the window shrinks), still the newest, in order.
  for (let i = 0; i < 5; i++) await publish(`big-${i}-`.padEnd(20 * KiB, '.'));
  const big = await from(published.at(-4)!.seq);
  expect(big.complete).toBe(true);
  expect(big.events.map((e) => e.data)).toEqual(published.slice(-3).map((e) => e.data));
  expect((await from(published.at(-5)!.seq)).complete).toBe(false);
  // And it grows again.
  for (let i = 0; i < 60; i++) await publish(`again-${i}`);
  const again = await from(published.at(-51)!.seq);
  expect(again.events.map((e) => e.data)).toEqual(published.slice(-50).map((e) => e.data));
  await broker.close();
});

test('a publish with an idempotency key already used returns the first event and stores nothing', async () => {
  const broker = new MemoryBroker();
  const a = await broker.publish('c', { data: 'x', idempotencyKey: 'k1' }, 10);
  const b = await broker.publish('c', { data: 'x', idempotencyKey: 'k1' }, 10);
  const c = await broker.publish('c', { data: 'y', idempotencyKey: 'k2' }, 10);
  expect(b).toBe(a);
  expect(c.seq).toBe(a.seq + 1);
  const { events } = await broker.replay(['c'], new Map([[0, 0]]));
  expect(events.map((e) => e.data)).toEqual(['x', 'y']);
  await broker.close();
});

test('replay pages with limit: every event once, in order, and more says when to ask again', async () => {
  const broker = new MemoryBroker();
  for (let i = 0; i < 25; i++) await broker.publish(i % 2 === 0 ? 'a' : 'b', { data: String(i) }, 100);
  const got: string[] = [];
  let after = 0;
  for (let pages = 0; pages < 10; pages++) {
    const page = await broker.replay(['a', 'b'], new Map([[0, after]]), 10);
    expect(page.complete).toBe(true);
    got.push(...page.events.map((e) => e.data));
    if (page.events.length > 0) after = page.events[page.events.length - 1]!.seq;
    if (page.more !== true) break;
  }
  expect(got).toEqual(Array.from({ length: 25 }, (_, i) => String(i)));
  await broker.close();
});

describe('MemoryBroker channel bound', () => {
  test('past maxChannels the least recently published idle channel is forgotten: reset, never a gap', async () => {
    const fx = await start({ broker: new MemoryBroker({ maxChannels: 2 }) });
    const a1 = await fx.hub.publish('a', 'a1');
    await fx.hub.publish('a', 'a2');
    const b1 = await fx.hub.publish('b', 'b1');
    const c1 = await fx.hub.publish('c', 'c1'); // forgets a
    const c2 = await fx.hub.publish('c', 'c2');
    const onA = await stream('/events/a', { 'Last-Event-ID': a1 });
    await onA.waitFor(1);
    expect(onA.events[0]!.event).toBe('reset');
    const onC = await stream('/events/c', { 'Last-Event-ID': c1 });
    await onC.waitFor(1);
    expect(onC.events.map((e) => e.id)).toEqual([c2]);
    const onB = await stream('/events/b', { 'Last-Event-ID': b1 });
    const b2 = await fx.hub.publish('b', 'b2');
    await onB.waitFor(1);
    expect(onB.events.map((e) => e.id)).toEqual([b2]);
  });

  test('a publish makes its channel the most recent; a channel with a listener is never the one forgotten', async () => {
    const broker = new MemoryBroker({ maxChannels: 3 });
    const listener = { onEvent: () => undefined, onReset: () => undefined };
    await broker.subscribe('held', listener); // oldest, but it has a listener
    await broker.publish('a', { data: 'a1' }, 10);
    await broker.publish('b', { data: 'b1' }, 10);
    await broker.publish('a', { data: 'a2' }, 10); // a is now newer than b
    await broker.publish('c', { data: 'c1' }, 10); // over the bound: forgets b, not held, not a
    const from0 = new Map([[0, 0]]);
    expect((await broker.replay(['b'], from0)).complete).toBe(false);
    const a = await broker.replay(['a'], from0);
    expect(a.complete).toBe(true);
    expect(a.events.map((e) => e.data)).toEqual(['a1', 'a2']);
    expect((await broker.replay(['c'], new Map([[0, 3]]))).events.map((e) => e.data)).toEqual(['c1']);
    await broker.publish('d', { data: 'd1' }, 10); // forgets a (held still has its listener)
    expect((await broker.replay(['a'], from0)).complete).toBe(false);
    await broker.unsubscribe('held', listener);
    await broker.close();
  });

  test('maxChannels is validated', () => {
    expect(() => new MemoryBroker({ maxChannels: 0 })).toThrow(RangeError);
  });
});
