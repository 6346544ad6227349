/**
 * From the broker to the hub's streams: every event is checked (a broker
 * cannot inject fields or events), de-duplicated per stream by its cursor,
 * encoded once and handed to the stream layer's fan-out. A new epoch on a
 * partition, or a broker's `onReset`, becomes ONE `reset` event per stream.
 */
import type { BrokerEvent, BrokerListener, PartitionPosition, Position, ReplayResult } from '../brokers/broker';
import { encodeData, encodeEvent, encodeFrame } from '../protocol/encode';
import { EPOCH, formatEventId, isSinglePartitionId } from '../positions';
import { resetSent } from '../diagnostics';
import type { Counters } from '../metrics/counters';
import { labelCounts } from '../metrics/registry';
import { FanOut } from '../stream/fan-out';

import type { HubStream } from './stream';

export const RESET_EVENT = 'reset';

const FIELD_BREAK = /[\r\n\0]/;

/** How many publish times are kept for events a broker delivers after publish() resolved. */
const MAX_STAMPS = 1024;

export class Delivery implements BrokerListener {
  readonly fanOut = new FanOut();
  /** performance.now() of the publish() whose broker call runs right now (MemoryBroker delivers inside it). */
  publishing: number | undefined = undefined;
  /** Set when an event was delivered while `publishing` was set (its latency is observed already). */
  deliveredInPublish = false;
  /** event id -> performance.now() at publish(), for events published here that a broker delivers later. */
  private readonly stamps = new Map<string, number>();
  /** partition -> the last epoch that passed the check (skips the regex for the common case). */
  private readonly goodEpochs: (string | undefined)[];
  /** Publish times of the events delivered this turn, observed together once they were handed to the sockets. */
  private sent: number[] = [];
  private readonly observeSent = (): void => {
    const sent = this.sent;
    this.sent = [];
    const now = performance.now();
    for (let i = 0; i < sent.length; i++) this.counters.observeLatency((now - sent[i]!) / 1000);
  };

  /** This turn's heads reads, one per set of channels (see regroup). */
  private readonly reading = new Map<string, Promise<ReplayResult | undefined>>();

  constructor(
    /** The streams of a channel here. */
    private readonly streamsOf: (channel: string) => ReadonlySet<HubStream> | undefined,
    private readonly partitionCount: number,
    /** The hub's counters (shared with its streams' admission). */
    private readonly counters: Counters,
    /**
     * The broker's heads of the partitions of `channels` now, with its epochs' bases and where
     * their kept history begins (`floors`): a replay after `after`, of at most one event.
     */
    private readonly heads?: (channels: readonly string[], after: ReadonlyMap<number, number>) => Promise<ReplayResult>,
  ) {
    this.goodEpochs = new Array<string | undefined>(partitionCount).fill(undefined);
  }

  /** Whether `ev` keeps the Broker contract's rules (see lib/brokers/broker.ts). */
  valid(ev: BrokerEvent): boolean {
    if (ev === null || typeof ev !== 'object') return false;
    const p = ev.partition ?? 0;
    if (!Number.isInteger(p) || p < 0 || p >= this.partitionCount) return false;
    if (!Number.isSafeInteger(ev.seq) || ev.seq < 1 || typeof ev.data !== 'string') return false;
    if (ev.event !== undefined && (typeof ev.event !== 'string' || FIELD_BREAK.test(ev.event))) return false;
    if (ev.coalesce !== undefined && typeof ev.coalesce !== 'string') return false;
    if (ev.epoch !== this.goodEpochs[p]) {
      if (typeof ev.epoch !== 'string' || !EPOCH.test(ev.epoch)) return false;
      this.goodEpochs[p] = ev.epoch;
    }
    return true;
  }

  /** The id of one event on its own (what `publish` resolves with; the id grouped streams are sent). */
  eventId(ev: BrokerEvent): string {
    // The broker's own id when it is exactly the one we would build (MemoryBroker's, a single Redis's): no new string.
    if (this.partitionCount === 1 && isSinglePartitionId(ev.id, ev.epoch, ev.seq)) return ev.id;
    return formatEventId(ev.partition ?? 0, ev.epoch, ev.seq, this.partitionCount);
  }

  onEvent(ev: BrokerEvent): void {
    if (!this.valid(ev)) {
      this.counters.invalid++;
      return;
    }
    const set = this.streamsOf(ev.channel);
    if (set === undefined) return;
    const fanOut = this.fanOut;
    const before = this.counters.delivered;
    let begun = false;
    let data: string | undefined;
    for (const s of set) {
      if (s.buffer !== null) {
        s.hold(ev);
        continue;
      }
      if (!this.advance(s, ev)) {
        fanOut.skip(s.conn, s.group);
        continue;
      }
      if (s.group !== undefined) {
        if (!begun) {
          data ??= encodeData(ev.data);
          fanOut.begin(this.frame(this.eventId(ev), ev, data), ev.coalesce);
          begun = true;
        }
        fanOut.to(s.conn, s.group);
      } else {
        data ??= encodeData(ev.data);
        s.conn.push(this.frame(s.id(), ev, data), ev.coalesce);
      }
    }
    if (begun) fanOut.end();
    const delivered = this.counters.delivered - before;
    if (delivered > 0) this.observe(ev, delivered);
  }

  /** Remembers when an event was published here, for a broker that delivers it after publish() resolved. */
  stamp(ev: BrokerEvent, at: number): void {
    if (this.stamps.size >= MAX_STAMPS) this.stamps.clear();
    this.stamps.set(this.eventId(ev), at);
  }

  /** Per-label counts, and publish -> written-to-socket latency for events published in this process. */
  private observe(ev: BrokerEvent, delivered: number): void {
    const label = labelCounts(this.counters, ev.channel);
    if (label !== undefined) label.delivered += delivered;
    let t0 = this.publishing;
    if (t0 !== undefined) this.deliveredInPublish = true;
    else if (this.stamps.size > 0) {
      const id = this.eventId(ev);
      t0 = this.stamps.get(id);
      this.stamps.delete(id);
    }
    // Queued after this turn's flush (the turn scheduled it first): runs once the frames were handed to the sockets.
    if (t0 !== undefined && this.sent.push(t0) === 1) process.nextTick(this.observeSent);
  }

  /**
   * The broker could not deliver everything of `channel`: every stream on it
   * gets `reset` and continues from `head`; a stream still being set up gets
   * it before its first event.
   */
  onReset(channel: string, head: PartitionPosition): void {
    const set = this.streamsOf(channel);
    if (set === undefined || head === null || typeof head !== 'object') return;
    const p = head.partition ?? 0;
    if (!Number.isInteger(p) || p < 0 || p >= this.partitionCount) return;
    if (typeof head.epoch !== 'string' || !EPOCH.test(head.epoch) || !Number.isSafeInteger(head.seq) || head.seq < 0)
      return;
    for (const s of set) {
      const at = { partition: p, head };
      if (s.buffer !== null) s.pendingResets.push(at);
      // another epoch on a stream of one partition: its new epoch from where it began, at once
      else if (this.heads === undefined || (s.partitions.length === 1 && s.epochs[p] !== head.epoch))
        this.reset(s, p, head);
      else this.regroup(s, at);
    }
  }

  /**
   * A broker reset of a stream over several partitions, or of history trimmed past a stream's
   * position: a fault (a restart, a failover, a subscriber connection away while history was
   * trimmed) usually resets several partitions, each in its own catch-up, and several channels,
   * and the stream would get a `reset` for each. Instead its live events are held and its
   * partitions read (once per set of channels per turn, however many streams): every partition
   * the broker numbers in another epoch now is moved to where that epoch began, and every one
   * whose channels' kept history (`floors`) now begins past the stream's position is moved to
   * its head (a reset's id must resume later: one at the edge of history would not, after the
   * next publish); ONE reset is sent, then what was held. The broker resets a trimmed channel
   * where its kept history begins, a mark that moves only when it is trimmed again, so the
   * other resets of that fault move nothing and send nothing (see resetAll()), and the events
   * since the fault (after the head, on a trimmed partition) still arrive. A failed read: the
   * reset as it came.
   */
  private regroup(s: HubStream, first: { partition: number; head: Position }): void {
    s.buffer = [];
    s.pendingResets.push(first);
    const key = [...s.channels].sort().join(',');
    let read = this.reading.get(key);
    if (read === undefined) {
      // from 0: where the channels' kept history begins, whatever the stream's position
      read = this.heads!(s.channels, new Map(s.partitions.map((q) => [q, 0]))).then(
        (heads) => heads,
        () => undefined,
      );
      if (this.reading.size === 0) setImmediate(() => this.reading.clear()); // shared within this turn only
      this.reading.set(key, read);
    }
    void read.then((now) => {
      if (s.conn.closed || s.buffer === null) return;
      const moves: { partition: number; head: Position }[] = [];
      for (const q of s.partitions) {
        const head = now?.heads?.get(q);
        if (head === undefined || head === null) continue;
        const within = (n: number | undefined): number | undefined =>
          Number.isSafeInteger(n) && n! >= 0 && n! <= head.seq ? n : undefined;
        const floor = within(now?.floors?.get(q));
        if (head.epoch === s.epochs[q]) {
          if (floor !== undefined && floor > s.seqs[q]!) moves.push({ partition: q, head: { ...head } });
          continue;
        }
        const seq = Math.max(within(now?.bases?.get(q)) ?? 0, floor ?? 0);
        moves.push({ partition: q, head: { epoch: head.epoch, seq } });
      }
      // these first: a broker reset that came after the read was sent may be newer
      s.pendingResets.unshift(...moves);
      this.release(s);
    });
  }

  /** A stream's held resets (as ONE reset), then its held events, then live. */
  release(s: HubStream): void {
    this.resetAll(s, s.pendingResets, 'broker');
    s.pendingResets = [];
    const held = s.buffer;
    s.buffer = null;
    if (held === null) return;
    let text = '';
    for (const ev of held) {
      if (text !== '' && this.startsEpoch(s, ev)) {
        s.conn.push(text);
        text = '';
      }
      text += this.deliverOwn(s, ev);
    }
    if (text !== '') s.conn.push(text);
  }

  /** Writes an event that was buffered or replayed during set-up (frames of its own). */
  deliverOwn(s: HubStream, ev: BrokerEvent): string {
    if (!this.valid(ev)) {
      this.counters.invalid++;
      return '';
    }
    if (!this.advance(s, ev)) return '';
    return this.frame(s.id(), ev, encodeData(ev.data));
  }

  /** Whether `ev` would start a new epoch for `s` (so a `reset` is sent before it). */
  startsEpoch(s: HubStream, ev: BrokerEvent): boolean {
    const epoch = s.epochs[ev.partition ?? 0];
    return epoch !== undefined && epoch !== ev.epoch;
  }

  private frame(id: string, ev: BrokerEvent, data: string): string {
    return encodeFrame(id, ev.event, data);
  }

  /**
   * Moves stream `s`'s cursor past `ev` and counts it delivered; false when the
   * stream has it already (a duplicate). An event of another epoch first sends
   * the page a `reset`: the broker lost history.
   */
  private advance(s: HubStream, ev: BrokerEvent): boolean {
    const p = ev.partition ?? 0;
    const epoch = s.epochs[p];
    if (epoch !== ev.epoch) {
      if (epoch !== undefined) this.reset(s, p, { epoch: ev.epoch, seq: ev.seq - 1 });
      else s.place(p, { epoch: ev.epoch, seq: 0 });
    }
    if (ev.seq <= s.seqs[p]!) return false;
    s.seqs[p] = ev.seq;
    this.counters.delivered++;
    return true;
  }

  /** Tells the page it missed events (refetch your state); later resumes start from `head`. */
  reset(s: HubStream, p: number, head: Position, cause: 'resume' | 'broker' = 'broker'): void {
    this.resetAll(s, [{ partition: p, head }], cause);
  }

  /**
   * Moves the stream to each of `heads` that is ahead of it (another epoch, or further on)
   * and tells the page ONCE. A broker's reset that moves nothing is not sent: the stream has
   * everything up to there already (a resume's reset always is).
   */
  private resetAll(
    s: HubStream,
    heads: readonly { partition: number; head: Position }[],
    cause: 'resume' | 'broker',
  ): void {
    let moved = cause === 'resume';
    for (const { partition: q, head } of heads) {
      if (s.epochs[q] !== head.epoch || head.seq > s.seqs[q]!) {
        s.place(q, head);
        moved = true;
      }
    }
    if (!moved) return;
    if (!s.positioned) return; // set-up gives every partition a position and sends the reset then
    const id = s.id();
    if (s.resetAt === id) return; // already told at this position
    s.resetAt = id;
    this.counters.resets++;
    resetSent(s.conn.req, s.channels, cause, id);
    s.conn.push(encodeEvent({ id, event: RESET_EVENT, data: '' }));
  }
}
