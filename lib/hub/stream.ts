/**
 * A stream the hub opened: its connection, its channels, and where it stands
 * on each broker partition of those channels (its cursor), from which every
 * `id:` it is sent is built.
 */
import type { BrokerEvent, Position } from '../brokers/broker';
import { formatCursor } from '../positions';
import type { Connection } from '../stream/connection';

export class HubStream {
  /** Events that arrived while the stream was being set up; null once live. */
  buffer: BrokerEvent[] | null = [];
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
