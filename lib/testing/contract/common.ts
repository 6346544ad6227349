/**
 * What every section of the broker contract suite shares: the test runner's
 * globals (jest, or vitest with `globals: true`), the Recorder listener, and
 * helpers over partitions and replays.
 */
import {
  type Broker,
  type BrokerEvent,
  type BrokerListener,
  type PartitionPosition,
  type Position,
  type ReplayResult,
} from '../../brokers/broker';
import { SseRelayError } from '../../errors';

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
interface RunnerGlobals {
  describe(name: string, body: () => void): void;
  test(name: string, body: Body, timeout?: number): void;
  afterEach(body: Body): void;
  expect(actual: unknown): Matchers;
}
/** The runner's globals, read when called (importing them would not work: they are not modules). */
const runner = globalThis as unknown as RunnerGlobals;
export const describe = (name: string, body: () => void): void => runner.describe(name, body);
export const test = (name: string, body: Body, timeout?: number): void => runner.test(name, body, timeout);
export const afterEach = (body: Body): void => runner.afterEach(body);
export const expect = (actual: unknown): Matchers => runner.expect(actual);

export const WAIT_MS = 10_000;

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

export function partitionsOf(b: Broker): number {
  return b.partitions ?? 1;
}

export function partitionOf(b: Broker, channel: string): number {
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

export function expectSeqIncreasing(events: readonly BrokerEvent[]): void {
  for (let i = 1; i < events.length; i++) expect(events[i]!.seq).toBeGreaterThan(events[i - 1]!.seq);
}

export async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SseRelayError);
  expect((err as SseRelayError).code).toBe(code);
}

/** The fields every broker returns (`more` only comes with `limit`). */
export function result(r: ReplayResult): Pick<ReplayResult, 'complete' | 'events' | 'heads'> {
  return { complete: r.complete, events: r.events, heads: r.heads };
}

/** `{ epoch, seq }` of a head for one partition. */
export function headOf(heads: ReadonlyMap<number, Position>, p: number): Position {
  const h = heads.get(p);
  if (h === undefined) throw new Error(`replay gave no head for partition ${p}`);
  return { epoch: h.epoch, seq: h.seq };
}

/** What a section's tests get from the runner: a broker factory (closed after each test) and the same-partition fence. */
export interface ContractContext {
  broker(): Promise<Broker>;
  /** Publishes to `channel` (which `rec` listens to, same partition) and waits for it: everything before has arrived. */
  fence(b: Broker, rec: Recorder, channel: string): Promise<void>;
}
