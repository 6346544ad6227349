/**
 * A stream the hub opened: its connection, its channels, and where it stands
 * on each broker partition of those channels (its cursor), from which every
 * `id:` it is sent is built.
 */
import type { BrokerEvent, Position } from '../brokers/broker';
import { formatCursor } from '../positions';
import type { Connection } from '../stream/connection';
import type { Upstream } from '../stream/write-queue';

/** What a buffered event is counted for besides its data: its other fields and the object, roughly. */
const EVENT_OVERHEAD = 64;

export class HubStream implements Upstream {
  /** Events that arrived while the stream was being set up (add with `hold`); null once live. */
  buffer: BrokerEvent[] | null = [];
  /** The buffer `chars` counts (a new buffer counts from 0), and what it holds in characters. */
  private counted: BrokerEvent[] | null = null;
  private chars = 0;
  /** partition -> epoch of the position reached (undefined: not known yet). */
  readonly epochs: (string | undefined)[];
  /** partition -> newest seq written to this stream: anything at or below it is a duplicate. */
  readonly seqs: number[];
  /** The id sent with the last `reset` ('' = none): one reset per position, however many channels said so. */
  resetAt = '';
  /** A broker reset that arrived while the stream was being set up. */
  pendingResets: { partition: number; head: Position }[] = [];
  /** When re-authorisation is due (ms since epoch), and whether one is running. */
  nextAuth = 0;
  authorizing = false;

  constructor(
    readonly conn: Connection,
    readonly channels: readonly string[],
    /** The partitions of `channels`, ascending. */
    readonly partitions: readonly number[],
    /** How many partitions the broker has (ids are laid out by it). */
    readonly partitionCount: number,
    /** Streams with the same group get the same frames (shared bytes); undefined: frames of its own. */
    readonly group: string | undefined,
  ) {
    this.epochs = new Array<string | undefined>(partitionCount).fill(undefined);
    this.seqs = new Array<number>(partitionCount).fill(0);
    conn.upstream = this;
  }

  /**
   * Buffers an event that arrived during set-up. What waits here is part of
   * the stream's backlog: a client that stops reading while its replay is
   * written is cut for it as a live one is (lib/stream/write-queue.ts).
   */
  hold(ev: BrokerEvent): void {
    const buffer = this.buffer!;
    if (buffer !== this.counted) {
      this.counted = buffer;
      this.chars = 0;
    }
    buffer.push(ev);
    this.chars += ev.data.length + EVENT_OVERHEAD;
    this.conn.backlogGrew();
  }

  /** What waits in `buffer`, in characters (0 once live, and for a buffer nothing was held in yet). */
  get waitingChars(): number {
    return this.buffer !== null && this.buffer === this.counted ? this.chars : 0;
  }

  /** Whether every partition of the stream has a known epoch (an id can be built). */
  get positioned(): boolean {
    for (const p of this.partitions) if (this.epochs[p] === undefined) return false;
    return true;
  }

  /** Moves partition `p` to `pos`. */
  place(p: number, pos: Position): void {
    this.epochs[p] = pos.epoch;
    this.seqs[p] = pos.seq;
  }

  /** The id of where this stream stands now. */
  id(): string {
    const entries: [number, Position][] = [];
    for (const p of this.partitions) {
      const epoch = this.epochs[p];
      if (epoch !== undefined) entries.push([p, { epoch, seq: this.seqs[p]! }]);
    }
    return formatCursor(this.partitionCount, entries);
  }
}
