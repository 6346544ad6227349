import { SseRelayError } from '../errors';
import {
  formatId,
  newEpoch,
  type Broker,
  type BrokerEvent,
  type BrokerListener,
  type Position,
  type PublishInput,
  type ReplayResult,
} from './broker';

/** One channel's history: a window of the newest events, and what fell out of it. */
class Log {
  buf: (BrokerEvent | undefined)[] = [];
  start = 0;
  /** seq of the newest event that fell out of history, or that may have been forgotten before this log was created. */
  dropped: number;
  readonly listeners = new Set<BrokerListener>();

  constructor(floor: number) {
    this.dropped = floor;
  }

  get size(): number {
    return this.buf.length - this.start;
  }

  append(event: BrokerEvent, history: number): void {
    this.buf.push(event);
    while (this.buf.length - this.start > history) {
      this.dropped = this.buf[this.start]!.seq;
      this.buf[this.start++] = undefined;
    }
    if (this.start > 64 && this.start * 2 > this.buf.length) {
      this.buf = this.buf.slice(this.start);
      this.start = 0;
    }
  }

  /** Events with seq > after, oldest first. */
  after(after: number, out: BrokerEvent[]): void {
    const buf = this.buf;
    let lo = this.start;
    let hi = buf.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (buf[mid]!.seq <= after) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < buf.length; i++) out.push(buf[i]!);
  }
}

/**
 * The embedded default broker: history and fan-out inside ONE process. Two
 * processes with their own MemoryBroker do not see each other's events; use
 * RedisBroker for that. Its epoch is new for every instance, so a client that
 * resumes after a restart gets a `reset` rather than a silent gap.
 */
export interface MemoryBrokerOptions {
  /**
   * Channels whose history is kept at most (default 10,000). Past it, the
   * history of the channel published to least recently that has no stream
   * is forgotten; a later resume on it gets `reset` instead of a silent gap.
   * Channels with an open stream are never forgotten.
   */
  maxChannels?: number;
}

export class MemoryBroker implements Broker {
  readonly epoch = newEpoch();
  private seq = 0;
  private readonly maxChannels: number;
  /** In least-recently-published order (a publish moves its channel to the end). */
  private readonly logs = new Map<string, Log>();
  /** Newest `dropped` mark of the channels forgotten: a resume from before it cannot be complete. */
  private floor = 0;
  private closed = false;

  constructor(options: MemoryBrokerOptions = {}) {
    const max = options.maxChannels ?? 10000;
    if (typeof max !== 'number' || !Number.isSafeInteger(max) || max <= 0) {
      throw new RangeError(`sse-relay: MemoryBroker option maxChannels must be a positive integer, got ${String(max)}`);
    }
    this.maxChannels = max;
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
    const seq = ++this.seq;
    const event: BrokerEvent = {
      channel,
      epoch: this.epoch,
      seq,
      id: formatId(this.epoch, seq),
      data: input.data,
      event: input.event,
      coalesce: input.coalesce,
    };
    let log = this.logs.get(channel);
    if (log === undefined) {
      log = new Log(this.floor);
      if (this.logs.size >= this.maxChannels) this.evictIdle();
    } else {
      this.logs.delete(channel);
    }
    this.logs.set(channel, log);
    if (history > 0) log.append(event, history);
    else log.dropped = seq;
    for (const listener of log.listeners) listener.onEvent(event);
    if (log.listeners.size === 0 && log.size === 0) this.forget(channel, log);
    return event;
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

  async replay(channels: readonly string[], after: Position | undefined): Promise<ReplayResult> {
    const head: Position = { epoch: this.epoch, seq: this.seq };
    if (after === undefined) return { complete: true, events: [], head };
    if (after.epoch !== this.epoch || after.seq > this.seq) return { complete: false, events: [], head };
    const events: BrokerEvent[] = [];
    for (const channel of channels) {
      const log = this.logs.get(channel);
      const dropped = log === undefined ? this.floor : log.dropped;
      if (dropped > after.seq) return { complete: false, events: [], head };
      log?.after(after.seq, events);
    }
    if (channels.length > 1) events.sort((a, b) => a.seq - b.seq);
    return { complete: true, events, head };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const log of this.logs.values()) log.listeners.clear();
  }
}
