/**
 * ONE behavioural suite every Broker must pass (MemoryBroker, RedisBroker, ...).
 * Delivery may be synchronous (memory) or arrive later (Redis): every assertion
 * on delivery waits for the events it expects, and "nothing arrived" is proved
 * with a fence: an event on another subscribed channel published afterwards
 * (a broker delivers in global seq order, so once the fence arrived, anything
 * published before it would have too).
 */
import {
  formatId,
  type Broker,
  type BrokerEvent,
  type BrokerListener,
  type Position,
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
  readonly resets: { channel: string; head: Position }[] = [];
  private waiters: { check: () => boolean; resolve: () => void }[] = [];

  onEvent(event: BrokerEvent): void {
    this.events.push(event);
    this.wake();
  }

  onReset(channel: string, head: Position): void {
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
        reject(new Error(`timed out waiting for ${what} (have ${this.events.length} events, ${this.resets.length} resets)`));
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

/**
 * Registers the broker contract suite in the current test file: every
 * behaviour the hub relies on (global seq order, delivery only to subscribed
 * channels, unsubscribe, replay snapshots and their `complete` rules,
 * history 0, close). Run it against your own Broker:
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

    /** Publishes to `fence` (which `rec` listens to) and waits for it: everything before has arrived. */
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

    test('publish resolves with the stored event and its id', async () => {
      const b = await broker();
      const [a] = channelNames('a');
      const ev = await b.publish(a!, { data: 'hello', event: 'greet', coalesce: 'k' }, 10);
      expect(ev.channel).toBe(a);
      expect(ev.data).toBe('hello');
      expect(ev.event).toBe('greet');
      expect(ev.coalesce).toBe('k');
      expect(ev.epoch).toMatch(/^[A-Za-z0-9_-]{1,32}$/);
      expect(Number.isSafeInteger(ev.seq) && ev.seq > 0).toBe(true);
      expect(ev.id).toBe(formatId(ev.epoch, ev.seq));
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
        const input = i % 3 === 0 ? { data } : i % 3 === 1 ? { data, event: i % 2 ? 'e' : '' } : { data, coalesce: 'c' + i };
        published.push(await b.publish(a!, input, 100));
      }
      await rec.count(30);
      expect(rec.events).toEqual(published);
    });

    test('seq increases strictly across all channels, in one epoch', async () => {
      const b = await broker();
      const names = channelNames('a', 'b', 'c');
      const out: BrokerEvent[] = [];
      for (let i = 0; i < 15; i++) out.push(await b.publish(names[i % 3]!, { data: String(i) }, 100));
      expectSeqIncreasing(out);
      expect(new Set(out.map((e) => e.epoch)).size).toBe(1);
      // concurrent publishes get distinct seqs too
      const many = await Promise.all(names.map((n, i) => b.publish(n, { data: 'p' + i }, 100)));
      expect(new Set(many.map((e) => e.seq)).size).toBe(3);
      expect(Math.min(...many.map((e) => e.seq))).toBeGreaterThan(out[out.length - 1]!.seq);
    });

    test('only subscribed channels are delivered; events of several channels arrive in seq order', async () => {
      const b = await broker();
      const [a, other, c] = channelNames('a', 'other', 'c');
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
      const [a, f] = channelNames('a', 'fence');
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
      // unsubscribing what was never subscribed is harmless too
      await b.unsubscribe(channelNames('never')[0]!, r1);
    });

    test('concurrent subscribe/unsubscribe of one channel end in the state the calls left', async () => {
      const b = await broker();
      const [a, f] = channelNames('a', 'fence');
      const rec = new Recorder();
      const other = new Recorder();
      await b.subscribe(f!, rec);
      // sub, unsub, sub without waiting: ends subscribed
      await Promise.all([b.subscribe(a!, rec), b.unsubscribe(a!, rec), b.subscribe(a!, rec)]);
      const one = await b.publish(a!, { data: '1' }, 10);
      await rec.has(one.id);
      // unsub, sub, unsub: ends unsubscribed (for rec); another listener comes and goes meanwhile
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

    test('replay without a position gives the head only', async () => {
      const b = await broker();
      const [a, c] = channelNames('a', 'c');
      const first = await b.replay([a!], undefined);
      expect(first.complete).toBe(true);
      expect(first.events).toEqual([]);
      expect(first.head.epoch).toMatch(/^[A-Za-z0-9_-]{1,32}$/);
      const e1 = await b.publish(a!, { data: '1' }, 10);
      const e2 = await b.publish(c!, { data: '2' }, 10);
      const r = await b.replay([a!], undefined);
      expect(r).toEqual({ complete: true, events: [], head: { epoch: e2.epoch, seq: e2.seq } });
      expect(e1.epoch).toBe(first.head.epoch);
    });

    test('replay across several channels: every event after the position, merged in seq order', async () => {
      const b = await broker();
      const [a, bb, c] = channelNames('a', 'b', 'c');
      const start = (await b.replay([a!, bb!, c!], undefined)).head;
      const all: BrokerEvent[] = [];
      for (let i = 0; i < 18; i++) all.push(await b.publish([a, bb, c][(i * 7) % 3]!, { data: 'd' + i, event: 'ev' }, 100));
      const r = await b.replay([a!, bb!, c!], start);
      expect(r.complete).toBe(true);
      expect(r.events).toEqual(all);
      expect(r.head).toEqual({ epoch: start.epoch, seq: all[all.length - 1]!.seq });
      const sub = await b.replay([c!, a!], start);
      expect(sub.events).toEqual(all.filter((e) => e.channel !== bb));
      // a channel that never had an event is complete and empty
      const none = await b.replay(channelNames('empty'), start);
      expect(none).toEqual({ complete: true, events: [], head: r.head });
      // no channels at all
      expect((await b.replay([], start)).complete).toBe(true);
    });

    test('replay from every position returns exactly the events after it', async () => {
      const b = await broker();
      const names = channelNames('a', 'b', 'c');
      const start = (await b.replay(names, undefined)).head;
      const all: BrokerEvent[] = [];
      for (let i = 0; i < 12; i++) all.push(await b.publish(names[i % 3]!, { data: String(i) }, 100));
      const last = all[all.length - 1]!.seq;
      for (let seq = start.seq; seq <= last; seq++) {
        const r = await b.replay(names, { epoch: start.epoch, seq });
        expect(r.complete).toBe(true);
        expect(r.events).toEqual(all.filter((e) => e.seq > seq));
        expect(r.head).toEqual({ epoch: start.epoch, seq: last });
        const one = await b.replay([names[1]!], { epoch: start.epoch, seq });
        expect(one.events).toEqual(all.filter((e) => e.seq > seq && e.channel === names[1]));
      }
    });

    test('history trimming: complete only when nothing after the position was trimmed', async () => {
      const b = await broker();
      const [a, other] = channelNames('a', 'other');
      const start = (await b.replay([a!], undefined)).head;
      const evs: BrokerEvent[] = [];
      for (let i = 0; i < 6; i++) {
        evs.push(await b.publish(a!, { data: String(i) }, 3));
        await b.publish(other!, { data: 'x' + i }, 100); // interleaved seqs of another channel
      }
      const head = (await b.replay([a!], undefined)).head;
      // kept: evs[3..5]; dropped mark: evs[2].seq
      expect((await b.replay([a!], start)).complete).toBe(false);
      expect((await b.replay([a!], { epoch: start.epoch, seq: evs[1]!.seq })).complete).toBe(false);
      const miss = await b.replay([a!], { epoch: start.epoch, seq: evs[2]!.seq - 1 });
      expect(miss).toEqual({ complete: false, events: [], head });
      const ok = await b.replay([a!], { epoch: start.epoch, seq: evs[2]!.seq });
      expect(ok).toEqual({ complete: true, events: evs.slice(3), head });
      expect((await b.replay([a!], { epoch: start.epoch, seq: evs[3]!.seq })).events).toEqual(evs.slice(4));
      // one incomplete channel makes the whole replay incomplete
      const both = await b.replay([other!, a!], { epoch: start.epoch, seq: evs[0]!.seq });
      expect(both.complete).toBe(false);
      expect(both.events).toEqual([]);
      // a longer history later keeps more again
      const more: BrokerEvent[] = [];
      for (let i = 0; i < 4; i++) more.push(await b.publish(a!, { data: 'm' + i }, 100));
      const r = await b.replay([a!], { epoch: start.epoch, seq: evs[2]!.seq });
      expect(r.complete).toBe(true);
      expect(r.events).toEqual([...evs.slice(3), ...more]);
    });

    test('history 0 keeps nothing: live delivery only, replay from before it is incomplete', async () => {
      const b = await broker();
      const [a] = channelNames('a');
      const rec = new Recorder();
      await b.subscribe(a!, rec);
      const start = (await b.replay([a!], undefined)).head;
      const ev = await b.publish(a!, { data: 'live' }, 0);
      await rec.has(ev.id);
      expect((await b.replay([a!], start)).complete).toBe(false);
      expect(await b.replay([a!], { epoch: ev.epoch, seq: ev.seq })).toEqual({
        complete: true,
        events: [],
        head: { epoch: ev.epoch, seq: ev.seq },
      });
      // history 0 after history > 0: what was kept is gone
      const [c] = channelNames('c');
      const kept = await b.publish(c!, { data: '1' }, 10);
      const zero = await b.publish(c!, { data: '2' }, 0);
      expect((await b.replay([c!], { epoch: kept.epoch, seq: kept.seq - 1 })).complete).toBe(false);
      expect((await b.replay([c!], { epoch: kept.epoch, seq: kept.seq })).complete).toBe(false);
      expect((await b.replay([c!], { epoch: zero.epoch, seq: zero.seq })).complete).toBe(true);
    });

    test('a position from another epoch or from the future is not complete', async () => {
      const b = await broker();
      const [a] = channelNames('a');
      const ev = await b.publish(a!, { data: '1' }, 10);
      const head = { epoch: ev.epoch, seq: ev.seq };
      expect(await b.replay([a!], { epoch: 'another-epoch', seq: 0 })).toEqual({ complete: false, events: [], head });
      expect(await b.replay([a!], { epoch: 'another-epoch', seq: ev.seq - 1 })).toEqual({ complete: false, events: [], head });
      expect(await b.replay([a!], { epoch: ev.epoch, seq: ev.seq + 1 })).toEqual({ complete: false, events: [], head });
      expect(await b.replay([a!], { epoch: ev.epoch, seq: Number.MAX_SAFE_INTEGER })).toEqual({ complete: false, events: [], head });
      expect(await b.replay([a!], head)).toEqual({ complete: true, events: [], head });
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
