/**
 * replay(): one atomic read per partition of the channels given (in parallel),
 * merged into the contract's result: complete only when every partition was
 * given a position within its epoch's history and every channel's history
 * reaches back to it; events in seq order within each partition.
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
        return store.read(p, list, '');
      }),
    );
    const heads = new Map<number, Position>();
    const events: BrokerEvent[] = [];
    let complete = true;
    order.forEach((p, i) => {
      const r = replies[i]!;
      heads.set(p, { epoch: r.epoch, seq: r.head });
      if (after === undefined) return;
      const seq = after.get(p);
      if (seq === undefined || seq > r.head || seq < r.base) {
        complete = false;
        return;
      }
      const list = groups.get(p)!;
      const part: BrokerEvent[] = [];
      r.streams.forEach((s, j) => {
        if (!s.complete) complete = false;
        else parts[p]!.entries(list[j]!, r.epoch, seq, r.head, s.entries, part);
      });
      part.sort((a, b) => a.seq - b.seq);
      events.push(...part);
    });
    return complete ? { complete, events, heads } : { complete, events: [], heads };
}
