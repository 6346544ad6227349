/**
 * The contract every broker implements: what the hub needs to fan events out
 * across processes and to replay history to a reconnecting client.
 *
 * Positions: a broker keeps its events in `partitions` partitions (1 unless it
 * says otherwise). Every channel lives in exactly one partition
 * (`partitionOf(channel)`), and each partition numbers the events it accepts
 * with one `seq` that increases strictly across all of its channels, inside an
 * `epoch` that changes whenever that partition's history was lost or rewound
 * (a new MemoryBroker, a Redis that restarted without persistence or from an
 * older snapshot, a replica promoted behind its master). The hub turns the
 * positions a stream has reached on each of its partitions into ONE event id
 * (see `lib/positions.ts`), so one `Last-Event-ID` resumes a stream however
 * many channels and partitions it has.
 *
 * Guarantees a broker must give (the contract suite in `sse-relay/testing`
 * checks them):
 * - `publish` resolves once the event is stored in history and will reach
 *   every listener subscribed to its channel, in any process. A publish that
 *   rejects did not store the event, unless the error says the outcome is
 *   unknown (`SseRelayError.outcome === 'unknown'`); one `publish` call stores
 *   its event at most once, and a publish with the same `idempotencyKey` as an
 *   earlier one (within the broker's window) returns that earlier event.
 * - Listeners receive the events of the channels they subscribed to in
 *   increasing `seq` order per partition, each at most once, from the moment
 *   `subscribe` resolved; after a lost connection the broker catches up from
 *   history before delivering live events again, or reports `onReset`.
 * - `replay` is one atomic snapshot per partition across the channels it is
 *   given.
 *
 * What a broker hands the hub is checked before it reaches a socket: `epoch`
 * must match `[A-Za-z0-9_-]{1,32}`, `seq` a positive safe integer, `partition`
 * an integer below `partitions`, `event` (when set) a string without CR, LF or
 * NUL, `data` a string. An event that breaks a rule is counted invalid and
 * dropped; it can never inject a field or an event.
 */

export interface Position {
  /** Changes whenever the partition's history was lost or rewound. `[A-Za-z0-9_-]{1,32}`. */
  readonly epoch: string;
  /** Sequence number within the partition's epoch; 0 = before the first event. */
  readonly seq: number;
}

/** A position together with the partition it belongs to. */
export interface PartitionPosition extends Position {
  readonly partition: number;
}

export interface BrokerEvent extends PartitionPosition {
  readonly channel: string;
  /**
   * The event's own id (`formatEventId`): what `hub.publish` resolves with.
   * The hub does not send it as it is: it builds each stream's `id:` from
   * `partition`, `epoch` and `seq`.
   */
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
  /**
   * Deduplication key: a publish whose key was already used (within the
   * broker's window, 10 minutes for the built-in brokers) stores nothing and
   * resolves with the earlier event. Brokers also use a random key of their own
   * per call, so a command their client resends is stored once.
   */
  readonly idempotencyKey?: string;
}

export interface BrokerListener {
  /** One event of a subscribed channel. Must not throw. */
  onEvent(event: BrokerEvent): void;
  /**
   * The broker could not deliver everything of `channel` (history lost,
   * rewound or trimmed while its connection was down): events may have been
   * lost; `head` (in the channel's partition) is where delivery continues.
   */
  onReset(channel: string, head: PartitionPosition): void;
}

export interface ReplayResult {
  /**
   * True when `events` holds every event of those channels whose seq is above
   * the one `after` gives for its partition, and no such seq is above that
   * partition's head. Epochs are not compared here: the hub compares the
   * client's epochs with `heads` itself.
   */
  readonly complete: boolean;
  /** Those events, in `seq` order within each partition (empty when not complete). */
  readonly events: readonly BrokerEvent[];
  /**
   * True when `limit` cut the result short: ask again after the last event
   * returned (per partition) for the rest. Brokers that ignore `limit` omit it.
   */
  readonly more?: boolean;
  /** Every partition of `channels` -> its newest position at the moment of the snapshot. */
  readonly heads: ReadonlyMap<number, Position>;
  /**
   * Optional: every partition of `channels` -> the seq its current epoch began after (its
   * events all have greater seqs; 0 for an epoch that began with the partition). A stream
   * moved to a new epoch by one partition's reset starts the others there too, so their
   * resets of the same fault say nothing new (one `reset`, not one per partition).
   */
  readonly bases?: ReadonlyMap<number, number>;
  /**
   * Optional: every partition of `channels` that `after` gives a position for -> the seq after
   * which those channels still hold every event of the partition's current epoch (where their
   * kept history begins: at least the epoch's base; later where one was trimmed). A replay
   * after it is complete. A broker that resets a trimmed channel resets it there (followed by
   * what is kept), so a stream moved there by one partition's reset gets nothing new from the
   * other partitions' resets of the same outage (one `reset`, not one per partition).
   */
  readonly floors?: ReadonlyMap<number, number>;
}

export interface Broker {
  /** How many partitions positions are kept in. Default 1. At most `MAX_PARTITIONS`. */
  readonly partitions?: number;
  /** The partition of a channel (0 when `partitions` is 1). Required when `partitions` > 1. */
  partitionOf?(channel: string): number;
  /** Stores the event (keeping at most `history` per channel) and delivers it to every subscriber. */
  publish(channel: string, input: PublishInput, history: number): Promise<BrokerEvent>;
  /** Resolves when live delivery to `listener` is active for `channel`. */
  subscribe(channel: string, listener: BrokerListener): Promise<void>;
  unsubscribe(channel: string, listener: BrokerListener): Promise<void>;
  /**
   * One atomic snapshot (per partition) of `channels`: every event after the
   * seq `after` gives for its partition (`after` undefined: no events, heads
   * only). A partition of `channels` missing from `after` makes it incomplete.
   * With `limit`, at most that many events come back, the oldest first within
   * each partition and with no gap (every event of a partition up to the last
   * one returned for it), and `more` says whether there are others: the hub
   * replays big histories page by page, as the client's socket drains.
   */
  replay(
    channels: readonly string[],
    after: ReadonlyMap<number, number> | undefined,
    limit?: number,
  ): Promise<ReplayResult>;
  /**
   * A client presented `seen` (a position this broker issued) while the
   * partition's head is behind it in the same epoch: history rewound. The
   * broker starts a new epoch for that partition, so nothing before it is
   * vouched for. Anyone can make such a position up, so a broker may limit how
   * often it honours one (RedisBroker: within 10 minutes of (re)connecting, once
   * per partition per connection). Optional (a broker whose history cannot
   * rewind omits it).
   */
  fence?(seen: PartitionPosition): Promise<void>;
  /** Releases connections and timers. Further publishes reject. */
  close(): Promise<void>;
}

/** Most partitions a broker may have: keeps every id within 128 characters. */
export const MAX_PARTITIONS = 8;

/** The most events of history a channel may keep, on every broker. */
export const MAX_HISTORY = 1_000_000;

/** The longest `idempotencyKey`, on every broker (what RedisBroker keys take). */
export const MAX_IDEMPOTENCY_KEY = 200;

/** The id of one event (`BrokerEvent.id`, what `hub.publish` resolves with). */
export { formatEventId } from '../positions';

/** A fresh random epoch: 12 url-safe characters. */
export { newEpoch } from '../positions';
