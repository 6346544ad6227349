/**
 * The contract every broker implements: what the hub needs to fan events out
 * across processes and to replay history to a reconnecting client.
 *
 * Positions: a broker numbers every event it accepts with one `seq` that
 * increases strictly across ALL channels (a global order), inside an `epoch`
 * that changes whenever the broker's history is lost (a new MemoryBroker, a
 * Redis that restarted without persistence). An event id is
 * `<epoch>.<seq>`, so one id tells where a client stands on every channel,
 * however many channels its stream has.
 *
 * Guarantees a broker must give (the contract suite in __tests__ checks them):
 * - `publish` resolves once the event is stored in history and will reach
 *   every listener subscribed to its channel, in any process.
 * - Listeners receive the events of the channels they subscribed to in
 *   increasing `seq` order, each at most once, from the moment `subscribe`
 *   resolved; after a lost connection the broker catches up from history
 *   before delivering live events again, or reports `onReset`.
 * - `replay` is one atomic snapshot across the channels it is given.
 */

import { randomBytes } from 'node:crypto';

export interface Position {
  /** Changes whenever the broker's history was lost. `[A-Za-z0-9_-]{1,32}`. */
  readonly epoch: string;
  /** Global sequence number within the epoch; 0 = before the first event. */
  readonly seq: number;
}

export interface BrokerEvent extends Position {
  readonly channel: string;
  /** `<epoch>.<seq>`: the `id:` the hub sends. */
  readonly id: string;
  /** The payload, already serialised to text. */
  readonly data: string;
  /** The event name, if any. */
  readonly event: string | undefined;
  /** Latest-wins coalescing key, if any. */
  readonly coalesce: string | undefined;
}

export interface PublishInput {
  readonly data: string;
  readonly event?: string;
  readonly coalesce?: string;
}

export interface BrokerListener {
  /** One event of a subscribed channel. Must not throw. */
  onEvent(event: BrokerEvent): void;
  /**
   * The broker lost history for this channel (a new epoch began): events may
   * have been lost; `head` is the position from which delivery continues.
   */
  onReset(channel: string, head: Position): void;
}

export interface ReplayResult {
  /** True when `events` holds every event of those channels after the given position. */
  readonly complete: boolean;
  /** The events after the given position, in `seq` order (empty when not complete). */
  readonly events: readonly BrokerEvent[];
  /** The newest position at the moment of the snapshot: where a `reset` resumes. */
  readonly head: Position;
}

export interface Broker {
  /** Stores the event (keeping at most `history` per channel) and delivers it to every subscriber. */
  publish(channel: string, input: PublishInput, history: number): Promise<BrokerEvent>;
  /** Resolves when live delivery to `listener` is active for `channel`. */
  subscribe(channel: string, listener: BrokerListener): Promise<void>;
  unsubscribe(channel: string, listener: BrokerListener): Promise<void>;
  /**
   * One atomic snapshot of `channels`: every event after `after` (or none, with
   * `after` undefined) and the newest position. Not complete when `after` is
   * from another epoch, newer than the head, or older than what history keeps.
   */
  replay(channels: readonly string[], after: Position | undefined): Promise<ReplayResult>;
  /** Releases connections and timers. Further publishes reject. */
  close(): Promise<void>;
}

const ID = /^([A-Za-z0-9_-]{1,32})\.([0-9]{1,15})$/;

export function formatId(epoch: string, seq: number): string {
  return epoch + '.' + seq;
}

/** Parses one of our ids; anything else (garbage, too long, another server's) is undefined. */
export function parseId(id: string | undefined): Position | undefined {
  if (id === undefined || id.length > 64) return undefined;
  const m = ID.exec(id);
  if (m === null) return undefined;
  const seq = Number(m[2]);
  if (!Number.isSafeInteger(seq)) return undefined;
  return { epoch: m[1]!, seq };
}

/** A fresh random epoch: 12 url-safe characters. */
export function newEpoch(): string {
  return randomBytes(9).toString('base64url');
}
