/**
 * One channel's history in a MemoryBroker: a window of the newest events, and
 * what fell out of it.
 *
 * The window is a ring of plain columns (seq, data, event name, coalescing
 * key), not of event objects: a history is what stays alive between garbage
 * collections, and an event kept as its data string alone is the least the
 * collector has to copy and promote (ten channels keep ten histories). The
 * events a replay returns are built when it asks for them.
 */
import { formatEventId } from '../positions';
import type { BrokerEvent, BrokerListener } from './broker';

/** What an event counts against maxHistoryBytes: UTF-16 length of data, event and key, plus a fixed 64. */
function sizeOf(data: string, event: string | undefined, coalesce: string | undefined): number {
  return data.length + (event?.length ?? 0) + (coalesce?.length ?? 0) + 64;
}

/** A ring never shrinks below this many slots. */
const MIN_SLOTS = 16;

export class Log {
  /** Neighbours in the broker's recency list (older, newer). */
  older: Log | undefined = undefined;
  newer: Log | undefined = undefined;
  /** seq of the newest event that fell out of history, or that may have been forgotten before this log was created. */
  dropped: number;
  readonly listeners = new Set<BrokerListener>();
  /** Characters held (see sizeOf). */
  private bytes = 0;
  /** The ring: `count` events from slot `head` on, oldest first; its length is a power of two. */
  private seqs = new Float64Array(0);
  private data: string[] = [];
  private events: (string | undefined)[] = [];
  private keys: (string | undefined)[] = [];
  private head = 0;
  private count = 0;

  constructor(
    readonly channel: string,
    /** The channel's partition, and that partition's epoch. */
    readonly partition: number,
    private readonly epoch: string,
    floor: number,
  ) {
    this.dropped = floor;
  }

  get size(): number {
    return this.count;
  }

  /** seq of the newest event this log knows of (held, or fallen out). */
  get newest(): number {
    return this.count > 0 ? this.seqs[(this.head + this.count - 1) & (this.seqs.length - 1)]! : this.dropped;
  }

  /** Adds the newest event, then drops the oldest while more than `history` or over `maxBytes`. */
  append(ev: BrokerEvent, history: number, maxBytes: number): void {
    if (this.count === this.seqs.length) this.resize(Math.max(MIN_SLOTS, this.count * 2));
    const at = (this.head + this.count) & (this.seqs.length - 1);
    this.seqs[at] = ev.seq;
    this.data[at] = ev.data;
    this.events[at] = ev.event;
    this.keys[at] = ev.coalesce;
    this.count++;
    this.bytes += sizeOf(ev.data, ev.event, ev.coalesce);
    while (this.count > history || (this.bytes > maxBytes && this.count > 0)) this.dropOldest();
    if (this.count * 4 < this.seqs.length && this.seqs.length > MIN_SLOTS) this.resize(this.seqs.length / 2);
  }

  private dropOldest(): void {
    const at = this.head;
    this.dropped = this.seqs[at]!;
    this.bytes -= sizeOf(this.data[at]!, this.events[at], this.keys[at]);
    this.data[at] = '';
    this.events[at] = this.keys[at] = undefined;
    this.head = (at + 1) & (this.seqs.length - 1);
    this.count--;
  }

  /** The ring with `slots` slots (a power of two, at least `count`), oldest first from slot 0. */
  private resize(slots: number): void {
    const seqs = new Float64Array(slots);
    const data = new Array<string>(slots).fill('');
    const events = new Array<string | undefined>(slots).fill(undefined);
    const keys = new Array<string | undefined>(slots).fill(undefined);
    const mask = this.seqs.length - 1;
    for (let i = 0; i < this.count; i++) {
      const from = (this.head + i) & mask;
      seqs[i] = this.seqs[from]!;
      data[i] = this.data[from]!;
      events[i] = this.events[from];
      keys[i] = this.keys[from];
    }
    this.seqs = seqs;
    this.data = data;
    this.events = events;
    this.keys = keys;
    this.head = 0;
  }

  /** Events with seq > after, oldest first, at most `limit` (`partitions`: the broker's, for their ids). */
  after(after: number, limit: number, partitions: number, out: BrokerEvent[]): void {
    const mask = this.seqs.length - 1;
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.seqs[(this.head + mid) & mask]! <= after) lo = mid + 1;
      else hi = mid;
    }
    const end = Math.min(this.count, lo + limit);
    for (let i = lo; i < end; i++) {
      const at = (this.head + i) & mask;
      const seq = this.seqs[at]!;
      out.push({
        channel: this.channel,
        partition: this.partition,
        epoch: this.epoch,
        seq,
        id: formatEventId(this.partition, this.epoch, seq, partitions),
        data: this.data[at]!,
        event: this.events[at],
        coalesce: this.keys[at],
      });
    }
  }
}
