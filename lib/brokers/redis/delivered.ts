/**
 * Where a partition's newest events were delivered, with a fingerprint of
 * each, so that Redis can be asked whether those positions still hold those
 * events (Store.holds). A Redis that restarted having lost acknowledged
 * writes (appendfsync everysec, an older snapshot) gives their seqs out
 * again; when a writer that never saw them wrote first, the head is back
 * where it was and only the events at those positions tell.
 */
import { createHash } from 'node:crypto';
import type { BrokerEvent } from '../broker';
import { decodeEntry } from './codec';
import type { PartitionKeys } from './partitions';

/** Events delivered that are checked (the newest this many). */
export const RECENT = 4;

/** Where an event was delivered, and a fingerprint of it (see fingerprint()). */
export interface DeliveredMark {
  readonly channel: string;
  readonly epoch: string;
  readonly seq: number;
  readonly print: string;
}

/** Data up to this many characters is kept whole in a fingerprint; longer data is hashed. */
const WHOLE = 64 * 1024;

/**
 * What tells one event from another: the event name, the coalesce key and the data itself,
 * or, past WHOLE characters, the data's length and MD5 (so a broker keeps at most RECENT x
 * 64 KiB per partition for it, and hashes only events bigger than that).
 */
export function fingerprint(ev: Pick<BrokerEvent, 'data' | 'event' | 'coalesce'>): string {
  const head = `${ev.event ?? '\0'}\n${ev.coalesce ?? '\0'}\n`;
  const d = ev.data;
  if (d.length <= WHOLE) return head + d;
  return `${head}\0${d.length}:${createHash('md5').update(d).digest('base64')}`;
}

/** The newest RECENT positions delivered, oldest first. */
export class Delivered {
  private recent: DeliveredMark[] = [];

  note(event: BrokerEvent): void {
    const mark = { channel: event.channel, epoch: event.epoch, seq: event.seq, print: fingerprint(event) };
    if (this.recent.push(mark) > RECENT) this.recent.shift();
  }

  /** Those of `epoch`. */
  of(epoch: string): DeliveredMark[] {
    return this.recent.filter((m) => m.epoch === epoch);
  }

  clear(): void {
    this.recent = [];
  }
}

/**
 * Whether Redis still holds the events delivered at `marks` (of partition `k`), asked through
 * `ask`: false when a position holds another event, or holds none while an older entry of the
 * channel is still kept (trimming takes the oldest first, so the position went to another
 * channel), or when nothing of the channel is left at or before it, not even B!d's note that it
 * had a stream or its trim mark (so the channel's history in this epoch is gone with a rewind).
 * A trimmed or history-0 channel leaves that trace, and is no proof either way. True when Redis
 * numbers the partition in another epoch than the marks' already (nothing to renumber).
 */
export async function holds(
  ask: (args: (string | number)[]) => Promise<unknown>,
  k: PartitionKeys,
  partitions: number,
  marks: readonly DeliveredMark[],
): Promise<boolean> {
  const [epoch, replies] = await Promise.all([
    ask(['HGET', k.base, 'e']),
    Promise.all(
      marks.map((m) =>
        Promise.all([
          ask(['XREVRANGE', k.channel(m.channel), `${m.seq}-0`, '-', 'COUNT', 1]),
          ask(['HMGET', k.dropped, m.channel, '+' + m.channel]),
        ]),
      ),
    ),
  ]);
  // Another epoch already (a promotion, a rewind seen by a floor): its streams reset anyway.
  if (marks.length === 0 || epoch !== marks[0]!.epoch) return true;
  return marks.every((m, i) => {
    const [entries, trace] = replies[i]!;
    if (!Array.isArray(entries) || entries.length === 0)
      return Array.isArray(trace) && trace.some((t) => t !== null && t !== undefined);
    const held = decodeEntry(m.channel, k.index, partitions, m.epoch, entries[0]);
    if (held === undefined) return true; // not ours to judge: counted where it is read
    return held.seq === m.seq && fingerprint(held) === m.print;
  });
}
