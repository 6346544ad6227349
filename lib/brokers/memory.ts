/**
 * The embedded default broker: history and fan-out inside ONE process. Two
 * processes with their own MemoryBroker do not see each other's events; use
 * RedisBroker for that. Its epoch is new for every instance, so a client that
 * resumes after a restart gets a `reset` rather than a silent gap.
 */
import { SseRelayError } from '../errors';
import { checkOptions, positiveInt } from '../options';
import { formatEventId, newEpoch } from '../positions';
import type { Broker, BrokerEvent, BrokerListener, Position, PublishInput, ReplayResult } from './broker';

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
}

/** How long an idempotency key is remembered. */
const IDEMPOTENCY_MS = 10 * 60 * 1000;
/** Idempotency keys remembered at most (the oldest go first). */
const IDEMPOTENCY_KEYS = 100_000;

function sizeOf(ev: BrokerEvent): number {
  return ev.data.length + (ev.event?.length ?? 0) + (ev.coalesce?.length ?? 0) + 64;
}

/** One channel's history: a window of the newest events, and what fell out of it. */
class Log {
  buf: (BrokerEvent | undefined)[] = [];
  start = 0;
  bytes = 0;
  /** seq of the newest event that fell out of history, or that may have been forgotten before this log was created. */
  dropped: number;
  readonly listeners = new Set<BrokerListener>();

  constructor(floor: number) {
    this.dropped = floor;
  }

  get size(): number {
    return this.buf.length - this.start;
  }

  append(event: BrokerEvent, history: number, maxBytes: number): void {
    this.buf.push(event);
    this.bytes += sizeOf(event);
    while (this.size > history || (this.bytes > maxBytes && this.size > 0)) {
      const old = this.buf[this.start]!;
      this.dropped = old.seq;
      this.bytes -= sizeOf(old);
      this.buf[this.start++] = undefined;
    }
    if (this.start > 64 && this.start * 2 > this.buf.length) {
      this.buf = this.buf.slice(this.start);
      this.start = 0;
    }
  }

  /** Events with seq > after, oldest first, at most `limit`. */
  after(after: number, limit: number, out: BrokerEvent[]): void {
    const buf = this.buf;
    let lo = this.start;
    let hi = buf.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (buf[mid]!.seq <= after) lo = mid + 1;
      else hi = mid;
    }
    const end = Math.min(buf.length, lo + limit);
    for (let i = lo; i < end; i++) out.push(buf[i]!);
  }
}

export class MemoryBroker implements Broker {
  readonly partitions = 1;
  readonly epoch = newEpoch();
  private seq = 0;
  private readonly maxChannels: number;
  private readonly maxHistoryBytes: number;
  /** In least-recently-published order (a publish moves its channel to the end). */
  private readonly logs = new Map<string, Log>();
  /** Newest `dropped` mark of the channels forgotten: a resume from before it cannot be complete. */
  private floor = 0;
  /** idempotency key -> the event it published, oldest first. */
  private readonly keys = new Map<string, { event: BrokerEvent; at: number }>();
  private closed = false;

  constructor(options?: MemoryBrokerOptions) {
    const o = checkOptions('MemoryBroker', options, ['maxChannels', 'maxHistoryBytes']);
    this.maxChannels = o.maxChannels === undefined ? 10000 : positiveInt('maxChannels', o.maxChannels);
    this.maxHistoryBytes = o.maxHistoryBytes === undefined ? 8 * 1024 * 1024 : positiveInt('maxHistoryBytes', o.maxHistoryBytes, true);
  }

  partitionOf(): number {
    return 0;
  }

  private log(channel: string): Log {
    let log = this.logs.get(channel);
    if (log === undefined) {
      log = new Log(this.floor);
      this.logs.set(channel, log);
    }
    return log;
  }

  async publish(channel: string, input: PublishInput, history: number): Promise<BrokerEvent> {
    if (this.closed) throw new SseRelayError('ERR_BROKER_CLOSED', 'sse-relay: the broker is closed');
    const key = input.idempotencyKey;
    if (key !== undefined) {
      const seen = this.remembered(key);
      if (seen !== undefined) return seen;
    }
    const seq = ++this.seq;
    const event: BrokerEvent = {
      channel,
      partition: 0,
      epoch: this.epoch,
      seq,
      id: formatEventId(0, this.epoch, seq),
      data: input.data,
      event: input.event,
      coalesce: input.coalesce,
    };
    if (key !== undefined) this.remember(key, event);
    let log = this.logs.get(channel);
    if (log === undefined) {
      log = new Log(this.floor);
      if (this.logs.size >= this.maxChannels) this.evictIdle();
    } else {
      this.logs.delete(channel);
    }
    this.logs.set(channel, log);
    if (history > 0) log.append(event, history, this.maxHistoryBytes);
    else log.dropped = seq;
    for (const listener of log.listeners) listener.onEvent(event);
    if (log.listeners.size === 0 && log.size === 0) this.forget(channel, log);
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
  private forget(channel: string, log: Log): void {
    this.logs.delete(channel);
    const newest = log.size > 0 ? log.buf[log.buf.length - 1]!.seq : log.dropped;
    if (newest > this.floor) this.floor = newest;
  }

  /** Forgets the least recently published channel that has no listener (looks at 64 at most). */
  private evictIdle(): void {
    let looked = 0;
    for (const [channel, log] of this.logs) {
      if (log.listeners.size === 0) {
        this.forget(channel, log);
        return;
      }
      if (++looked >= 64) return;
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
    if (log.listeners.size === 0 && log.size === 0) this.forget(channel, log);
  }

  async replay(channels: readonly string[], after: ReadonlyMap<number, number> | undefined, limit = Infinity): Promise<ReplayResult> {
    const heads = new Map<number, Position>([[0, { epoch: this.epoch, seq: this.seq }]]);
    const from = after?.get(0);
    if (after === undefined) return { complete: true, events: [], heads };
    if (from === undefined || from > this.seq) return { complete: false, events: [], heads };
    const events: BrokerEvent[] = [];
    for (const channel of channels) {
      const log = this.logs.get(channel);
      const dropped = log === undefined ? this.floor : log.dropped;
      if (dropped > from) return { complete: false, events: [], heads };
      log?.after(from, limit, events);
    }
    if (channels.length > 1) events.sort((a, b) => a.seq - b.seq);
    const more = events.length > limit;
    if (more) events.length = limit;
    return { complete: true, events, heads, more: more || events.length === limit };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const log of this.logs.values()) log.listeners.clear();
  }
}
