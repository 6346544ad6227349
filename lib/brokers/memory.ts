/**
 * The embedded default broker: history and fan-out inside ONE process. Two
 * processes with their own MemoryBroker do not see each other's events; use
 * RedisBroker for that. Its epoch is new for every instance, so a client that
 * resumes after a restart gets a `reset` rather than a silent gap.
 */
import { SseRelayError } from '../errors';
import { checkOptions, positiveInt } from '../options';
import { formatEventId, newEpoch } from '../positions';
import { Log } from './memory-log';
import {
  MAX_PARTITIONS,
  type Broker,
  type BrokerEvent,
  type BrokerListener,
  type Position,
  type PublishInput,
  type ReplayResult,
} from './broker';

export interface MemoryBrokerOptions {
  /**
   * Channels whose history is kept at most (default 10,000). Past it, the
   * history of the channel published to least recently that has no stream
   * is forgotten; a later resume on it gets `reset` instead of a silent gap.
   * Channels with an open stream are never forgotten.
   */
  maxChannels?: number;
  /**
   * Bytes of history kept per channel at most (default 8 MiB, counted as the
   * UTF-16 length of data, event and key): the oldest events fall out first,
   * and a resume from before them gets `reset`.
   */
  maxHistoryBytes?: number;
  /**
   * Partitions positions are kept in (1 to 8, default 1). More than one gives
   * ids of the multi-partition layout a Redis Cluster uses, in one process:
   * for trying that layout out and for tests; it adds nothing else.
   */
  partitions?: number;
}

/** How long an idempotency key is remembered. */
const IDEMPOTENCY_MS = 10 * 60 * 1000;
/** Idempotency keys remembered at most (the oldest go first). */
const IDEMPOTENCY_KEYS = 100_000;

/** FNV-1a, 32 bits: spreads channel names over partitions. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export class MemoryBroker implements Broker {
  readonly partitions: number;
  /** partition -> its epoch (new for every instance). */
  private readonly epochs: string[];
  /** partition -> its newest seq. */
  private readonly seqs: number[];
  private readonly maxChannels: number;
  private readonly maxHistoryBytes: number;
  /** channel -> its log. */
  private readonly logs = new Map<string, Log>();
  /** The recency list's ends: the least and the most recently published (or subscribed) log. */
  private oldest: Log | undefined = undefined;
  private newest: Log | undefined = undefined;
  /** Newest `dropped` mark of the channels forgotten: a resume from before it cannot be complete. */
  private readonly floors: number[];
  /** idempotency key -> the event it published, oldest first. */
  private readonly keys = new Map<string, { event: BrokerEvent; at: number }>();
  private closed = false;

  constructor(options?: MemoryBrokerOptions) {
    const o = checkOptions('MemoryBroker', options, ['maxChannels', 'maxHistoryBytes', 'partitions']);
    const partitions = o.partitions === undefined ? 1 : positiveInt('partitions', o.partitions);
    if (partitions > MAX_PARTITIONS)
      throw new RangeError(`sse-relay: option partitions must be at most ${MAX_PARTITIONS}, got ${partitions}`);
    this.partitions = partitions;
    this.epochs = Array.from({ length: partitions }, () => newEpoch());
    this.seqs = new Array<number>(partitions).fill(0);
    this.floors = new Array<number>(partitions).fill(0);
    this.maxChannels = o.maxChannels === undefined ? 10000 : positiveInt('maxChannels', o.maxChannels);
    this.maxHistoryBytes =
      o.maxHistoryBytes === undefined ? 8 * 1024 * 1024 : positiveInt('maxHistoryBytes', o.maxHistoryBytes, true);
  }

  /** The epoch of partition 0 (of the only partition, by default). */
  get epoch(): string {
    return this.epochs[0]!;
  }

  partitionOf(channel: string): number {
    return this.partitions === 1 ? 0 : hash(channel) % this.partitions;
  }

  /** A new log, the newest; `evict`: first forget an idle channel when at maxChannels (not this one). */
  private newLog(channel: string, evict = false): Log {
    const p = this.partitionOf(channel);
    const log = new Log(channel, p, this.epochs[p]!, this.floors[p]!);
    if (evict && this.logs.size >= this.maxChannels) this.evictIdle();
    this.logs.set(channel, log);
    this.link(log);
    return log;
  }

  private log(channel: string): Log {
    return this.logs.get(channel) ?? this.newLog(channel);
  }

  /** Appends `log` to the recency list as the newest. */
  private link(log: Log): void {
    log.older = this.newest;
    log.newer = undefined;
    if (this.newest === undefined) this.oldest = log;
    else this.newest.newer = log;
    this.newest = log;
  }

  private unlink(log: Log): void {
    if (log.older === undefined) this.oldest = log.newer;
    else log.older.newer = log.newer;
    if (log.newer === undefined) this.newest = log.older;
    else log.newer.older = log.older;
    log.older = log.newer = undefined;
  }

  /** Not an async function (one fewer object per event); everything it throws becomes the promise's rejection. */
  publish(channel: string, input: PublishInput, history: number): Promise<BrokerEvent> {
    try {
      return Promise.resolve(this.store(channel, input, history));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private store(channel: string, input: PublishInput, history: number): BrokerEvent {
    if (this.closed) throw new SseRelayError('ERR_BROKER_CLOSED', 'sse-relay: the broker is closed');
    // Per channel, as on Redis: the same key on two channels is two publishes.
    const key = input.idempotencyKey === undefined ? undefined : channel + '\n' + input.idempotencyKey;
    if (key !== undefined) {
      const seen = this.remembered(key);
      if (seen !== undefined) return seen;
    }
    const partition = this.partitionOf(channel);
    const seq = ++this.seqs[partition]!;
    const epoch = this.epochs[partition]!;
    const event: BrokerEvent = {
      channel,
      partition,
      epoch,
      seq,
      id: formatEventId(partition, epoch, seq, this.partitions),
      data: input.data,
      event: input.event,
      coalesce: input.coalesce,
    };
    if (key !== undefined) this.remember(key, event);
    let log = this.logs.get(channel);
    if (log === undefined) log = this.newLog(channel, true);
    else if (log !== this.newest) {
      this.unlink(log);
      this.link(log);
    }
    if (history > 0) log.append(event, history, this.maxHistoryBytes);
    else log.dropped = seq;
    for (const listener of log.listeners) listener.onEvent(event);
    if (log.listeners.size === 0 && log.size === 0) this.forget(log);
    return event;
  }

  private remembered(key: string): BrokerEvent | undefined {
    const seen = this.keys.get(key);
    if (seen === undefined) return undefined;
    if (Date.now() - seen.at < IDEMPOTENCY_MS) return seen.event;
    this.keys.delete(key);
    return undefined;
  }

  private remember(key: string, event: BrokerEvent): void {
    const now = Date.now();
    this.keys.set(key, { event, at: now });
    for (const [old, entry] of this.keys) {
      if (this.keys.size <= IDEMPOTENCY_KEYS && now - entry.at < IDEMPOTENCY_MS) break;
      this.keys.delete(old);
    }
  }

  /** Forgets a channel; everything it held folds into `floor`, so no resume across it looks complete. */
  private forget(log: Log): void {
    this.logs.delete(log.channel);
    this.unlink(log);
    const newest = log.newest;
    if (newest > this.floors[log.partition]!) this.floors[log.partition] = newest;
  }

  /** Forgets the least recently published channel that has no listener (looks at 64 at most). */
  private evictIdle(): void {
    let log = this.oldest;
    for (let looked = 0; log !== undefined && looked < 64; looked++, log = log.newer) {
      if (log.listeners.size === 0) return this.forget(log);
    }
  }

  async subscribe(channel: string, listener: BrokerListener): Promise<void> {
    if (this.closed) throw new SseRelayError('ERR_BROKER_CLOSED', 'sse-relay: the broker is closed');
    this.log(channel).listeners.add(listener);
  }

  async unsubscribe(channel: string, listener: BrokerListener): Promise<void> {
    const log = this.logs.get(channel);
    if (log === undefined) return;
    log.listeners.delete(listener);
    if (log.listeners.size === 0 && log.size === 0) this.forget(log);
  }

  async replay(
    channels: readonly string[],
    after: ReadonlyMap<number, number> | undefined,
    limit = Infinity,
  ): Promise<ReplayResult> {
    const heads = new Map<number, Position>();
    for (const channel of channels) {
      const p = this.partitionOf(channel);
      heads.set(p, { epoch: this.epochs[p]!, seq: this.seqs[p]! });
    }
    if (after === undefined) return { complete: true, events: [], heads };
    const events: BrokerEvent[] = [];
    for (const channel of channels) {
      const p = this.partitionOf(channel);
      const from = after.get(p);
      if (from === undefined || from > this.seqs[p]!) return { complete: false, events: [], heads };
      const log = this.logs.get(channel);
      const dropped = log === undefined ? this.floors[p]! : log.dropped;
      if (dropped > from) return { complete: false, events: [], heads };
      log?.after(from, limit, this.partitions, events);
    }
    // Partition by partition, each in seq order: cutting at `limit` leaves every partition without a gap.
    if (channels.length > 1) events.sort((a, b) => a.partition - b.partition || a.seq - b.seq);
    const more = events.length >= limit;
    if (events.length > limit) events.length = limit;
    return { complete: true, events, heads, more };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const log of this.logs.values()) log.listeners.clear();
  }
}
