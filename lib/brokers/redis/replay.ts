/**
 * replay(): one atomic read per partition of the channels given (in parallel),
 * merged into the contract's result: complete only when every partition was
 * given a position within its epoch's history and every channel's history
 * reaches back to it; events in seq order within each partition. With a
 * `limit`, each channel is read for at most that many entries, each
 * partition's events are cut where a channel may have more (so a page never
 * skips one), the pages of all partitions share the limit, and `more` says
 * whether anything is left. `floors`: per partition read, where the kept
 * history of all its channels given begins (a replay after it is complete).
 */
import type { BrokerEvent, Position, ReplayResult } from '../broker';
import type { Partition } from './partition';
import type { Store } from './store';

export async function replay(
  store: Store,
  parts: readonly Partition[],
  partitionOf: (channel: string) => number,
  channels: readonly string[],
  after: ReadonlyMap<number, number> | undefined,
  limit: number | undefined,
): Promise<ReplayResult> {
  const groups = new Map<number, string[]>();
  for (const c of new Set(channels)) {
    const p = partitionOf(c);
    const g = groups.get(p);
    if (g === undefined) groups.set(p, [c]);
    else g.push(c);
  }
  const order = [...groups.keys()].sort((a, b) => a - b);
  const replies = await Promise.all(
    order.map((p) => {
      const seq = after?.get(p);
      const list = after === undefined || seq === undefined ? [] : groups.get(p)!.map((name) => ({ name, after: seq }));
      return store.read(p, list, '', undefined, limit ?? 0);
    }),
  );
  const heads = new Map<number, Position>();
  const bases = new Map<number, number>();
  const floors = new Map<number, number>();
  const events: BrokerEvent[] = [];
  let complete = true;
  let more = false;
  let room = limit ?? Infinity;
  order.forEach((p, i) => {
    const r = replies[i]!;
    heads.set(p, { epoch: r.epoch, seq: r.head });
    bases.set(p, r.base);
    if (r.streams.length > 0) floors.set(p, Math.max(r.base, ...r.streams.map((s) => s.kept)));
    if (after === undefined) return;
    const seq = after.get(p);
    if (seq === undefined || seq > r.head || seq < r.base) {
      complete = false;
      return;
    }
    const list = groups.get(p)!;
    let part: BrokerEvent[] = [];
    /** Newest seq up to which every channel of this partition was read in full. */
    let cut = Infinity;
    r.streams.forEach((s, j) => {
      if (!s.complete) {
        complete = false;
        return;
      }
      const before = part.length;
      parts[p]!.entries(list[j]!, r.epoch, seq, r.head, s.entries, part);
      const entries = Array.isArray(s.entries) ? s.entries.length : 0;
      if (limit !== undefined && entries >= limit && part.length > before)
        cut = Math.min(cut, part[part.length - 1]!.seq);
    });
    part.sort((a, b) => a.seq - b.seq);
    if (cut !== Infinity) {
      const kept = part.filter((e) => e.seq <= cut);
      if (kept.length < part.length || cut < r.head) more = true;
      part = kept;
    }
    if (part.length > room) {
      part = part.slice(0, room);
      more = true;
    }
    room -= part.length;
    events.push(...part);
  });
  if (!complete) return { complete, events: [], heads, bases, floors };
  return limit === undefined
    ? { complete, events, heads, bases, floors }
    : { complete, events, heads, bases, floors, more };
}
