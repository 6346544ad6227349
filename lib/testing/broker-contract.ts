/**
 * ONE behavioural suite every Broker must pass (MemoryBroker, RedisBroker, ...).
 * Delivery may be synchronous (memory) or arrive later (Redis): every assertion
 * on delivery waits for the events it expects, and "nothing arrived" is proved
 * with a fence: an event on another subscribed channel OF THE SAME PARTITION
 * published afterwards (a broker delivers in seq order per partition, so once
 * the fence arrived, anything published before it would have too).
 */
import {
  formatEventId,
  type Broker,
  type BrokerEvent,
  type BrokerListener,
  type PartitionPosition,
  type Position,
  type ReplayResult,
} from '../brokers/broker';
import { SseRelayError } from '../errors';

// The suite runs inside the caller's test runner and uses its globals: jest, or
// vitest with `globals: true` (describe, test, afterEach, expect with toBe,
// toEqual, toBeGreaterThan, toBeInstanceOf, toBeUndefined, toHaveLength, toMatch).
type Body = () => unknown;
interface Matchers {
  toBe(expected: unknown): void;
  toEqual(expected: unknown): void;
  toBeGreaterThan(expected: number): void;
  toBeInstanceOf(expected: unknown): void;
  toBeUndefined(): void;
  toHaveLength(expected: number): void;
  toMatch(expected: RegExp): void;
}
declare const describe: (name: string, body: () => void) => void;
declare const test: (name: string, body: Body, timeout?: number) => void;
declare const afterEach: (body: Body) => void;
declare const expect: (actual: unknown) => Matchers;

const WAIT_MS = 10_000;

/** A listener that records everything and lets a test wait for a count. */
export class Recorder implements BrokerListener {
  readonly events: BrokerEvent[] = [];
  readonly resets: { channel: string; head: PartitionPosition }[] = [];
  private waiters: { check: () => boolean; resolve: () => void }[] = [];

  onEvent(event: BrokerEvent): void {
    this.events.push(event);
    this.wake();
  }

  onReset(channel: string, head: PartitionPosition): void {
    this.resets.push({ channel, head });
    this.wake();
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => {
      if (!w.check()) return true;
      w.resolve();
      return false;
    });
  }

  /** Resolves once `check()` holds; rejects after `ms` with `what` in the message. */
  until(check: () => boolean, what: string, ms = WAIT_MS): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(
          new Error(`timed out waiting for ${what} (have ${this.events.length} events, ${this.resets.length} resets)`),
        );
      }, ms);
      const waiter = {
        check,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(waiter);
    });
  }

  count(n: number, ms?: number): Promise<void> {
    return this.until(() => this.events.length >= n, `${n} events`, ms);
  }

  has(id: string, ms?: number): Promise<void> {
    return this.until(() => this.events.some((e) => e.id === id), `event ${id}`, ms);
  }

  ids(channel?: string): string[] {
    return this.events.filter((e) => channel === undefined || e.channel === channel).map((e) => e.id);
  }
}

/** Unique channel names per test, so brokers sharing a store never see each other's data. */
let counter = 0;
export function channelNames(...names: string[]): string[] {
  counter++;
  return names.map((n) => `t${counter}:${n}`);
}

function partitionsOf(b: Broker): number {
  return b.partitions ?? 1;
}

function partitionOf(b: Broker, channel: string): number {
  return partitionsOf(b) === 1 || b.partitionOf === undefined ? 0 : b.partitionOf(channel);
}

/** Unique channel names that all live in one partition of `b` (the first name's). */
export function samePartition(b: Broker, ...names: string[]): string[] {
  counter++;
  const out: string[] = [];
  let want: number | undefined;
  for (const n of names) {
    for (let i = 0; i < 10_000; i++) {
      const name = `t${counter}:${n}${i === 0 ? '' : '-' + i}`;
      const p = partitionOf(b, name);
      want ??= p;
      if (p === want) {
        out.push(name);
        break;
      }
    }
  }
  if (out.length !== names.length) throw new Error('no channel names found in one partition');
  return out;
}

/** The `after` map of a replay: every partition of `channels` at the given seq. */
export function afterMap(
  b: Broker,
  channels: readonly string[],
  seq: number | ReadonlyMap<number, Position>,
): Map<number, number> {
  const m = new Map<number, number>();
  for (const c of channels) {
    const p = partitionOf(b, c);
    m.set(p, typeof seq === 'number' ? seq : seq.get(p)!.seq);
  }
  return m;
}

function expectSeqIncreasing(events: readonly BrokerEvent[]): void {
  for (let i = 1; i < events.length; i++) expect(events[i]!.seq).toBeGreaterThan(events[i - 1]!.seq);
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SseRelayError);
  expect((err as SseRelayError).code).toBe(code);
}

/** The fields every broker returns (`more` only comes with `limit`). */
function result(r: ReplayResult): Pick<ReplayResult, 'complete' | 'events' | 'heads'> {
  return { complete: r.complete, events: r.events, heads: r.heads };
}

/** `{ epoch, seq }` of a head for one partition. */
function headOf(heads: ReadonlyMap<number, Position>, p: number): Position {
  const h = heads.get(p);
  if (h === undefined) throw new Error(`replay gave no head for partition ${p}`);
  return { epoch: h.epoch, seq: h.seq };
}

/**
 * Registers the broker contract suite in the current test file: every
 * behaviour the hub relies on (seq order per partition, delivery only to
 * subscribed channels, unsubscribe, replay snapshots and their `complete`
 * rules across partitions, history 0, idempotency keys, fence, close). Run it
 * against your own Broker:
 *
 * ```ts
 * runBrokerContract('MyBroker', async () => new MyBroker(), async () => wipeMyStorage());
 * ```
 *
 * `makeBroker` is called for every broker a test needs (some need two sharing
 * one storage, as two processes would); `cleanup` runs after each test.
 */
export function runBrokerContract(
  name: string,
  makeBroker: () => Promise<Broker>,
  cleanup: () => Promise<void> = async () => undefined,
): void {
  describe(`Broker contract: ${name}`, () => {
    let brokers: Broker[] = [];

    async function broker(): Promise<Broker> {
      const b = await makeBroker();
      brokers.push(b);
      return b;
    }

    /** Publishes to `fence` (which `rec` listens to, same partition) and waits for it: everything before has arrived. */
    async function fence(b: Broker, rec: Recorder, channel: string): Promise<void> {
      const ev = await b.publish(channel, { data: 'fence' }, 10);
      await rec.has(ev.id);
    }

    afterEach(async () => {
      const list = brokers;
      brokers = [];
      for (const b of list) await b.close();
      await cleanup();
    });

    test('partitions: 1..8, partitionOf stable and in range', async () => {
      const b = await broker();
      const n = partitionsOf(b);
      expect(Number.isSafeInteger(n) && n >= 1 && n <= 8).toBe(true);
      if (n > 1) expect(typeof b.partitionOf).toBe('function');
      const seen = new Set<number>();
      for (let i = 0; i < 200; i++) {
        const p = partitionOf(b, `chan:${i}`);
        expect(Number.isSafeInteger(p) && p >= 0 && p < n).toBe(true);
        expect(partitionOf(b, `chan:${i}`)).toBe(p);
        seen.add(p);
      }
      expect(seen.size).toBe(n); // 200 names reach every partition
    });

    test('publish resolves with the stored event and its id', async () => {
      const b = await broker();
      const [a] = channelNames('a');
      const ev = await b.publish(a!, { data: 'hello', event: 'greet', coalesce: 'k' }, 10);
      expect(ev.channel).toBe(a);
      expect(ev.data).toBe('hello');
      expect(ev.event).toBe('greet');
      expect(ev.coalesce).toBe('k');
      expect(ev.partition).toBe(partitionOf(b, a!));
      expect(ev.epoch).toMatch(/^[A-Za-z0-9_-]{1,32}$/);
      expect(Number.isSafeInteger(ev.seq) && ev.seq > 0).toBe(true);
      expect(ev.id).toBe(formatEventId(ev.partition, ev.epoch, ev.seq, partitionsOf(b)));
      expect(ev.id).toMatch(/^[A-Za-z0-9._-]{1,128}$/);
      const plain = await b.publish(a!, { data: '' }, 10);
      expect(plain.event).toBeUndefined();
      expect(plain.coalesce).toBeUndefined();
      expect(plain.data).toBe('');
    });

    test('a listener gets every event of its channel in publish order, with the published fields', async () => {
      const b = await broker();
      const [a] = channelNames('a');
      const rec = new Recorder();
      await b.subscribe(a!, rec);
      const published: BrokerEvent[] = [];
      const payloads = ['x', '', 'multi\nline\r\ndata', '{"json":true}', 'ünïcødé ✓ 𝄞', ' spaced '];
      for (let i = 0; i < 30; i++) {
        const data = payloads[i % payloads.length]! + i;
        const input =
          i % 3 === 0 ? { data } : i % 3 === 1 ? { data, event: i % 2 ? 'e' : '' } : { data, coalesce: 'c' + i };
        published.push(await b.publish(a!, input, 100));
      }
      await rec.count(30);
      expect(rec.events).toEqual(published);
    });

    test('concurrent publishes to one channel are delivered in the order of their seqs, each once', async () => {
      const b = await broker();
      const [a] = channelNames('a');
      const rec = new Recorder();
      await b.subscribe(a!, rec);
      const all = await Promise.all(Array.from({ length: 200 }, (_, i) => b.publish(a!, { data: String(i) }, 500)));
      await rec.count(200);
      expect(new Set(all.map((e) => e.seq)).size).toBe(200);
      expect(rec.events).toEqual([...all].sort((x, y) => x.seq - y.seq));
    });

    test('seq increases strictly across the channels of a partition, in one epoch', async () => {
      const b = await broker();
      const names = samePartition(b, 'a', 'b', 'c');
      const out: BrokerEvent[] = [];
      for (let i = 0; i < 15; i++) out.push(await b.publish(names[i % 3]!, { data: String(i) }, 100));
      expectSeqIncreasing(out);
      expect(new Set(out.map((e) => e.epoch)).size).toBe(1);
      const many = await Promise.all(names.map((n, i) => b.publish(n, { data: 'p' + i }, 100)));
      expect(new Set(many.map((e) => e.seq)).size).toBe(3);
      expect(Math.min(...many.map((e) => e.seq))).toBeGreaterThan(out[out.length - 1]!.seq);
    });

    test('only subscribed channels are delivered; events of a partition arrive in seq order', async () => {
      const b = await broker();
      const [a, other, c] = samePartition(b, 'a', 'other', 'c');
      const rec = new Recorder();
      await b.subscribe(a!, rec);
      await b.subscribe(c!, rec);
      const expected: string[] = [];
      for (let i = 0; i < 12; i++) {
        const ch = [a, other, c][i % 3]!;
        const ev = await b.publish(ch, { data: String(i) }, 100);
        if (ch !== other) expected.push(ev.id);
      }
      await fence(b, rec, c!);
      expect(rec.ids().slice(0, -1)).toEqual(expected);
      expect(rec.events.some((e) => e.channel === other)).toBe(false);
      expectSeqIncreasing(rec.events);
    });

    test('every listener of a channel gets each event once; subscribing twice is once', async () => {
      const b = await broker();
      const [a] = channelNames('a');
      const r1 = new Recorder();
      const r2 = new Recorder();
      await b.subscribe(a!, r1);
      await b.subscribe(a!, r1);
      await b.subscribe(a!, r2);
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await b.publish(a!, { data: String(i) }, 10)).id);
      await r1.count(5);
      await r2.count(5);
      await fence(b, r1, a!);
      expect(r1.ids().slice(0, 5)).toEqual(ids);
      expect(r1.events).toHaveLength(6);
      expect(r2.ids().slice(0, 5)).toEqual(ids);
    });

    test('unsubscribe stops delivery to that listener only, then to the channel', async () => {
      const b = await broker();
      const [a, f] = samePartition(b, 'a', 'fence');
      const r1 = new Recorder();
      const r2 = new Recorder();
      const watch = new Recorder();
      await b.subscribe(a!, r1);
      await b.subscribe(a!, r2);
      await b.subscribe(f!, watch);
      await b.subscribe(f!, r1);
      const first = await b.publish(a!, { data: '1' }, 10);
      await r1.has(first.id);
      await r2.has(first.id);
      await b.unsubscribe(a!, r1);
      const second = await b.publish(a!, { data: '2' }, 10);
      await r2.has(second.id);
      await fence(b, r1, f!);
      expect(r1.events.filter((e) => e.channel === a).map((e) => e.id)).toEqual([first.id]);
      await b.unsubscribe(a!, r2);
      await b.unsubscribe(a!, r2); // twice: harmless
      await b.publish(a!, { data: '3' }, 10);
      await fence(b, watch, f!);
      await fence(b, watch, f!);
      expect(r2.ids()).toEqual([first.id, second.id]);
      await b.unsubscribe(channelNames('never')[0]!, r1);
    });

    test('concurrent subscribe/unsubscribe of one channel end in the state the calls left', async () => {
      const b = await broker();
      const [a, f] = samePartition(b, 'a', 'fence');
      const rec = new Recorder();
      const other = new Recorder();
      await b.subscribe(f!, rec);
      await Promise.all([b.subscribe(a!, rec), b.unsubscribe(a!, rec), b.subscribe(a!, rec)]);
      const one = await b.publish(a!, { data: '1' }, 10);
      await rec.has(one.id);
      await Promise.all([
        b.unsubscribe(a!, rec),
        b.subscribe(a!, other),
        b.subscribe(a!, rec),
        b.unsubscribe(a!, other),
        b.unsubscribe(a!, rec),
      ]);
      await b.publish(a!, { data: '2' }, 10);
      await fence(b, rec, f!);
      expect(rec.events.filter((e) => e.channel === a).map((e) => e.id)).toEqual([one.id]);
      expect(other.events.filter((e) => e.data === '2')).toHaveLength(0);
    });

    test('replay without positions gives the heads of the partitions of the channels only', async () => {
      const b = await broker();
      const [a, c] = samePartition(b, 'a', 'c');
      const p = partitionOf(b, a!);
      const first = await b.replay([a!], undefined);
      expect(first.complete).toBe(true);
      expect(first.events).toEqual([]);
      expect([...first.heads.keys()]).toEqual([p]);
      expect(headOf(first.heads, p).epoch).toMatch(/^[A-Za-z0-9_-]{1,32}$/);
      const e1 = await b.publish(a!, { data: '1' }, 10);
      const e2 = await b.publish(c!, { data: '2' }, 10);
      const r = await b.replay([a!], undefined);
      expect(r.complete).toBe(true);
      expect(r.events).toEqual([]);
      expect(headOf(r.heads, p)).toEqual({ epoch: e2.epoch, seq: e2.seq });
      expect(e1.epoch).toBe(headOf(first.heads, p).epoch);
      const none = await b.replay([], undefined);
      expect(none.complete).toBe(true);
      expect(none.heads.size).toBe(0);
    });

    test('replay across several channels of a partition: every event after the position, merged in seq order', async () => {
      const b = await broker();
      const [a, bb, c, empty] = samePartition(b, 'a', 'b', 'c', 'empty');
      const p = partitionOf(b, a!);
      const start = headOf((await b.replay([a!, bb!, c!], undefined)).heads, p);
      const all: BrokerEvent[] = [];
      for (let i = 0; i < 18; i++)
        all.push(await b.publish([a, bb, c][(i * 7) % 3]!, { data: 'd' + i, event: 'ev' }, 100));
      const at = new Map([[p, start.seq]]);
      const r = await b.replay([a!, bb!, c!], at);
      expect(r.complete).toBe(true);
      expect(r.events).toEqual(all);
      expect(headOf(r.heads, p)).toEqual({ epoch: start.epoch, seq: all[all.length - 1]!.seq });
      const sub = await b.replay([c!, a!], at);
      expect(sub.events).toEqual(all.filter((e) => e.channel !== bb));
      const none = await b.replay([empty!], afterMap(b, [empty!], r.heads));
      expect(none.complete).toBe(true);
      expect(none.events).toEqual([]);
      expect((await b.replay([], at)).complete).toBe(true);
    });

    test('replay from every position returns exactly the events after it', async () => {
      const b = await broker();
      const names = samePartition(b, 'a', 'b', 'c');
      const p = partitionOf(b, names[0]!);
      const start = headOf((await b.replay(names, undefined)).heads, p);
      const all: BrokerEvent[] = [];
      for (let i = 0; i < 12; i++) all.push(await b.publish(names[i % 3]!, { data: String(i) }, 100));
      const last = all[all.length - 1]!.seq;
      for (let seq = start.seq; seq <= last; seq++) {
        const r = await b.replay(names, new Map([[p, seq]]));
        expect(r.complete).toBe(true);
        expect(r.events).toEqual(all.filter((e) => e.seq > seq));
        expect(headOf(r.heads, p)).toEqual({ epoch: start.epoch, seq: last });
        const one = await b.replay([names[1]!], new Map([[p, seq]]));
        expect(one.events).toEqual(all.filter((e) => e.seq > seq && e.channel === names[1]));
      }
    });

    test('replay across partitions: one position per partition, each partition complete or the whole replay not', async () => {
      const b = await broker();
      const n = partitionsOf(b);
      // one channel in each of (up to) three partitions
      const chans: string[] = [];
      const parts = new Set<number>();
      for (let i = 0; chans.length < Math.min(3, n) && i < 10_000; i++) {
        const [c] = channelNames('x' + i);
        const p = partitionOf(b, c!);
        if (!parts.has(p)) {
          parts.add(p);
          chans.push(c!);
        }
      }
      const start = (await b.replay(chans, undefined)).heads;
      expect(start.size).toBe(chans.length);
      const all: BrokerEvent[] = [];
      for (let i = 0; i < 12; i++) all.push(await b.publish(chans[i % chans.length]!, { data: String(i) }, 100));
      const r = await b.replay(chans, afterMap(b, chans, start));
      expect(r.complete).toBe(true);
      const sorted = [...r.events].sort((x, y) => x.partition - y.partition || x.seq - y.seq);
      expect(r.events.map((e) => e.id).sort()).toEqual(all.map((e) => e.id).sort());
      for (const p of parts) {
        const mine = r.events.filter((e) => e.partition === p);
        expect(mine).toEqual(all.filter((e) => e.partition === p));
      }
      expect(sorted).toHaveLength(all.length);
      for (const p of parts) {
        const newest = all.filter((e) => e.partition === p).pop()!;
        expect(headOf(r.heads, p)).toEqual({ epoch: newest.epoch, seq: newest.seq });
      }
      if (n > 1 && chans.length > 1) {
        // a partition missing from the positions: not complete
        const partial = afterMap(b, chans, start);
        partial.delete(partitionOf(b, chans[1]!));
        const miss = await b.replay(chans, partial);
        expect(miss.complete).toBe(false);
        expect(miss.events).toEqual([]);
        expect(miss.heads.size).toBe(chans.length);
      }
    });

    test('history trimming: complete only when nothing after the position was trimmed', async () => {
      const b = await broker();
      const [a, other] = samePartition(b, 'a', 'other');
      const p = partitionOf(b, a!);
      const at = (seq: number): Map<number, number> => new Map([[p, seq]]);
      const start = headOf((await b.replay([a!], undefined)).heads, p);
      const evs: BrokerEvent[] = [];
      for (let i = 0; i < 6; i++) {
        evs.push(await b.publish(a!, { data: String(i) }, 3));
        await b.publish(other!, { data: 'x' + i }, 100);
      }
      const heads = (await b.replay([a!], undefined)).heads;
      expect((await b.replay([a!], at(start.seq))).complete).toBe(false);
      expect((await b.replay([a!], at(evs[1]!.seq))).complete).toBe(false);
      const miss = await b.replay([a!], at(evs[2]!.seq - 1));
      expect(result(miss)).toEqual({ complete: false, events: [], heads });
      const ok = await b.replay([a!], at(evs[2]!.seq));
      expect(result(ok)).toEqual({ complete: true, events: evs.slice(3), heads });
      expect((await b.replay([a!], at(evs[3]!.seq))).events).toEqual(evs.slice(4));
      const both = await b.replay([other!, a!], at(evs[0]!.seq));
      expect(both.complete).toBe(false);
      expect(both.events).toEqual([]);
      const more: BrokerEvent[] = [];
      for (let i = 0; i < 4; i++) more.push(await b.publish(a!, { data: 'm' + i }, 100));
      const r = await b.replay([a!], at(evs[2]!.seq));
      expect(r.complete).toBe(true);
      expect(r.events).toEqual([...evs.slice(3), ...more]);
    });

    test('history 0 keeps nothing: live delivery only, replay from before it is incomplete', async () => {
      const b = await broker();
      const [a] = channelNames('a');
      const p = partitionOf(b, a!);
      const rec = new Recorder();
      await b.subscribe(a!, rec);
      const start = headOf((await b.replay([a!], undefined)).heads, p);
      const ev = await b.publish(a!, { data: 'live' }, 0);
      await rec.has(ev.id);
      expect((await b.replay([a!], new Map([[p, start.seq]]))).complete).toBe(false);
      const at = await b.replay([a!], new Map([[p, ev.seq]]));
      expect(at.complete).toBe(true);
      expect(at.events).toEqual([]);
      expect(headOf(at.heads, p).seq).toBe(ev.seq);
      const [c] = channelNames('c');
      const q = partitionOf(b, c!);
      const kept = await b.publish(c!, { data: '1' }, 10);
      const zero = await b.publish(c!, { data: '2' }, 0);
      expect((await b.replay([c!], new Map([[q, kept.seq - 1]]))).complete).toBe(false);
      expect((await b.replay([c!], new Map([[q, kept.seq]]))).complete).toBe(false);
      expect((await b.replay([c!], new Map([[q, zero.seq]]))).complete).toBe(true);
    });

    test("a position from the future is not complete (epochs are the hub's to compare)", async () => {
      const b = await broker();
      const [a] = channelNames('a');
      const p = partitionOf(b, a!);
      const ev = await b.publish(a!, { data: '1' }, 10);
      const head = { epoch: ev.epoch, seq: ev.seq };
      for (const seq of [ev.seq + 1, Number.MAX_SAFE_INTEGER]) {
        const r = await b.replay([a!], new Map([[p, seq]]));
        expect(r.complete).toBe(false);
        expect(r.events).toEqual([]);
        expect(headOf(r.heads, p)).toEqual(head);
      }
      const now = await b.replay([a!], new Map([[p, ev.seq]]));
      expect(result(now)).toEqual({ complete: true, events: [], heads: new Map([[p, head]]) });
    });

    test('a listener subscribed after some events gets only later ones, live', async () => {
      const b = await broker();
      const [a] = channelNames('a');
      await b.publish(a!, { data: 'before' }, 10);
      const rec = new Recorder();
      await b.subscribe(a!, rec);
      const after = await b.publish(a!, { data: 'after' }, 10);
      await rec.has(after.id);
      expect(rec.ids()).toEqual([after.id]);
    });

    test('idempotencyKey: a second publish with the same key stores nothing and returns the first event', async () => {
      const b = await broker();
      const [a, f] = samePartition(b, 'a', 'fence');
      const p = partitionOf(b, a!);
      const rec = new Recorder();
      await b.subscribe(a!, rec);
      await b.subscribe(f!, rec);
      const start = headOf((await b.replay([a!], undefined)).heads, p);
      const key = 'order-42-shipped-' + a;
      const first = await b.publish(a!, { data: 'once', idempotencyKey: key }, 10);
      const again = await b.publish(a!, { data: 'once', idempotencyKey: key }, 10);
      const [x, y] = await Promise.all([
        b.publish(a!, { data: 'twin', idempotencyKey: key + 'b' }, 10),
        b.publish(a!, { data: 'twin', idempotencyKey: key + 'b' }, 10),
      ]);
      expect(again.id).toBe(first.id);
      expect(again.seq).toBe(first.seq);
      expect(y!.id).toBe(x!.id);
      const other = await b.publish(a!, { data: 'other key', idempotencyKey: key + 'c' }, 10);
      expect(other.seq).toBeGreaterThan(x!.seq);
      await fence(b, rec, f!);
      expect(rec.events.filter((e) => e.channel === a).map((e) => e.data)).toEqual(['once', 'twin', 'other key']);
      const r = await b.replay([a!], new Map([[p, start.seq]]));
      expect(r.events.map((e) => e.data)).toEqual(['once', 'twin', 'other key']);
    });

    test('fence: a position ahead of the head in the same epoch starts a new epoch; listeners get one reset, then every later event', async () => {
      const b = await broker();
      const [a] = channelNames('a');
      const p = partitionOf(b, a!);
      if (b.fence === undefined) {
        expect(b.fence).toBeUndefined(); // optional: a broker whose history cannot rewind omits it
        return;
      }
      const rec = new Recorder();
      await b.subscribe(a!, rec);
      const ev = await b.publish(a!, { data: 'before' }, 10);
      await rec.has(ev.id);
      // a fence at or behind the head changes nothing
      await b.fence({ partition: p, epoch: ev.epoch, seq: ev.seq });
      expect(headOf((await b.replay([a!], undefined)).heads, p).epoch).toBe(ev.epoch);
      await b.fence({ partition: p, epoch: ev.epoch, seq: ev.seq + 1000 });
      const after = headOf((await b.replay([a!], undefined)).heads, p);
      expect(after.epoch === ev.epoch).toBe(false);
      // nothing of the old epoch is vouched for: a replay from its positions is the hub's reset
      const next = await b.publish(a!, { data: 'after' }, 10);
      expect(next.epoch).toBe(after.epoch);
      await rec.has(next.id);
      await rec.until(() => rec.resets.length >= 1, 'a reset');
      expect(rec.resets).toHaveLength(1);
      expect(rec.resets[0]!.channel).toBe(a);
      expect(rec.resets[0]!.head.epoch).toBe(after.epoch);
      expect(rec.events.map((e) => e.data)).toEqual(['before', 'after']);
      const r = await b.replay([a!], new Map([[p, rec.resets[0]!.head.seq]]));
      expect(r.complete).toBe(true);
      expect(r.events.map((e) => e.data)).toEqual(['after']);
    });

    test('replay with a limit: pages of at most that many, oldest first, no gap per partition, `more` until the end', async () => {
      const b = await broker();
      const chans: string[] = [];
      const parts = new Set<number>();
      for (let i = 0; chans.length < Math.min(2, partitionsOf(b)) && i < 10_000; i++) {
        const [c] = channelNames('L' + i);
        if (!parts.has(partitionOf(b, c!))) {
          parts.add(partitionOf(b, c!));
          chans.push(c!);
        }
      }
      const [same] = samePartition(b, 'L-same');
      if (!parts.has(partitionOf(b, same!))) chans.push(same!);
      else chans.push(samePartition(b, 'L-x', 'L-y')[1]!);
      const start = (await b.replay(chans, undefined)).heads;
      const all: BrokerEvent[] = [];
      for (let i = 0; i < 23; i++) all.push(await b.publish(chans[i % chans.length]!, { data: String(i) }, 100));
      const whole = await b.replay(chans, afterMap(b, chans, start));
      expect(whole.complete).toBe(true);
      expect(whole.more === undefined || whole.more === false).toBe(true);
      // page through with limit 5: every event exactly once, each page at most 5, in seq order per partition
      const at = afterMap(b, chans, start);
      const got: BrokerEvent[] = [];
      for (let page = 0; page < 50; page++) {
        const r = await b.replay(chans, at, 5);
        expect(r.complete).toBe(true);
        if (r.more === undefined) {
          // a broker that ignores limit: everything at once
          got.push(...r.events);
          break;
        }
        expect(r.events.length).toBeGreaterThan(r.more ? 0 : -1);
        expect(r.events.length <= 5).toBe(true);
        for (const e of r.events) at.set(e.partition, Math.max(at.get(e.partition)!, e.seq));
        got.push(...r.events);
        if (!r.more) break;
      }
      expect(got.map((e) => e.id).sort()).toEqual(all.map((e) => e.id).sort());
      for (const p of parts) {
        const mine = got.filter((e) => e.partition === p);
        expect(mine).toEqual(all.filter((e) => e.partition === p));
      }
    });

    test('close: idempotent; publish and subscribe reject afterwards', async () => {
      const b = await broker();
      const [a] = channelNames('a');
      const rec = new Recorder();
      await b.subscribe(a!, rec);
      await b.close();
      await b.close();
      await expectCode(b.publish(a!, { data: 'x' }, 10), 'ERR_BROKER_CLOSED');
      await expectCode(b.subscribe(a!, new Recorder()), 'ERR_BROKER_CLOSED');
      await b.unsubscribe(a!, rec); // harmless after close
      expect(rec.events).toEqual([]);
    });
  });
}
