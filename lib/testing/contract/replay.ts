/** Replay: heads, positions per partition, completeness, history trimming and 0, paging, fence. */
import { type BrokerEvent } from '../../brokers/broker';
import {
  Recorder,
  channelNames,
  samePartition,
  afterMap,
  partitionsOf,
  partitionOf,
  result,
  headOf,
  expect,
  test,
  type ContractContext,
} from './common';

export function replayTests({ broker }: ContractContext): void {
  test('replay without positions gives the heads of the partitions of the channels only', async () => {
    const b = await broker();
    const [a, c] = samePartition(b, 'a', 'c');
    const p = partitionOf(b, a!);
    const first = await b.replay([a!], undefined);
    expect(first.complete).toBe(true);
    expect(first.events).toEqual([]);
    expect([...first.heads.keys()]).toEqual([p]);
    expect(headOf(first.heads, p).epoch).toMatch(/^[A-Za-z0-9_-]{1,32}$/);
    const e1 = await b.publish(a!, { data: '1' }, 10);
    const e2 = await b.publish(c!, { data: '2' }, 10);
    const r = await b.replay([a!], undefined);
    expect(r.complete).toBe(true);
    expect(r.events).toEqual([]);
    expect(headOf(r.heads, p)).toEqual({ epoch: e2.epoch, seq: e2.seq });
    expect(e1.epoch).toBe(headOf(first.heads, p).epoch);
    const none = await b.replay([], undefined);
    expect(none.complete).toBe(true);
    expect(none.heads.size).toBe(0);
  });
  test('replay across several channels of a partition: every event after the position, merged in seq order', async () => {
    const b = await broker();
    const [a, bb, c, empty] = samePartition(b, 'a', 'b', 'c', 'empty');
    const p = partitionOf(b, a!);
    const start = headOf((await b.replay([a!, bb!, c!], undefined)).heads, p);
    const all: BrokerEvent[] = [];
    for (let i = 0; i < 18; i++)
      all.push(await b.publish([a, bb, c][(i * 7) % 3]!, { data: 'd' + i, event: 'ev' }, 100));
    const at = new Map([[p, start.seq]]);
    const r = await b.replay([a!, bb!, c!], at);
    expect(r.complete).toBe(true);
    expect(r.events).toEqual(all);
    expect(headOf(r.heads, p)).toEqual({ epoch: start.epoch, seq: all[all.length - 1]!.seq });
    const sub = await b.replay([c!, a!], at);
    expect(sub.events).toEqual(all.filter((e) => e.channel !== bb));
    const none = await b.replay([empty!], afterMap(b, [empty!], r.heads));
    expect(none.complete).toBe(true);
    expect(none.events).toEqual([]);
    expect((await b.replay([], at)).complete).toBe(true);
  });
  test('replay from every position returns exactly the events after it', async () => {
    const b = await broker();
    const names = samePartition(b, 'a', 'b', 'c');
    const p = partitionOf(b, names[0]!);
    const start = headOf((await b.replay(names, undefined)).heads, p);
    const all: BrokerEvent[] = [];
    for (let i = 0; i < 12; i++) all.push(await b.publish(names[i % 3]!, { data: String(i) }, 100));
    const last = all[all.length - 1]!.seq;
    for (let seq = start.seq; seq <= last; seq++) {
      const r = await b.replay(names, new Map([[p, seq]]));
      expect(r.complete).toBe(true);
      expect(r.events).toEqual(all.filter((e) => e.seq > seq));
      expect(headOf(r.heads, p)).toEqual({ epoch: start.epoch, seq: last });
      const one = await b.replay([names[1]!], new Map([[p, seq]]));
      expect(one.events).toEqual(all.filter((e) => e.seq > seq && e.channel === names[1]));
    }
  });
  test('replay across partitions: one position per partition, each partition complete or the whole replay not', async () => {
    const b = await broker();
    const n = partitionsOf(b);
    // one channel in each of (up to) three partitions
    const chans: string[] = [];
    const parts = new Set<number>();
    for (let i = 0; chans.length < Math.min(3, n) && i < 10_000; i++) {
      const [c] = channelNames('x' + i);
      const p = partitionOf(b, c!);
      if (!parts.has(p)) {
        parts.add(p);
        chans.push(c!);
      }
    }
    const start = (await b.replay(chans, undefined)).heads;
    expect(start.size).toBe(chans.length);
    const all: BrokerEvent[] = [];
    for (let i = 0; i < 12; i++) all.push(await b.publish(chans[i % chans.length]!, { data: String(i) }, 100));
    const r = await b.replay(chans, afterMap(b, chans, start));
    expect(r.complete).toBe(true);
    const sorted = [...r.events].sort((x, y) => x.partition - y.partition || x.seq - y.seq);
    expect(r.events.map((e) => e.id).sort()).toEqual(all.map((e) => e.id).sort());
    for (const p of parts) {
      const mine = r.events.filter((e) => e.partition === p);
      expect(mine).toEqual(all.filter((e) => e.partition === p));
    }
    expect(sorted).toHaveLength(all.length);
    for (const p of parts) {
      const newest = all.filter((e) => e.partition === p).pop()!;
      expect(headOf(r.heads, p)).toEqual({ epoch: newest.epoch, seq: newest.seq });
    }
    if (n > 1 && chans.length > 1) {
      // a partition missing from the positions: not complete
      const partial = afterMap(b, chans, start);
      partial.delete(partitionOf(b, chans[1]!));
      const miss = await b.replay(chans, partial);
      expect(miss.complete).toBe(false);
      expect(miss.events).toEqual([]);
      expect(miss.heads.size).toBe(chans.length);
    }
  });
  test('history trimming: complete only when nothing after the position was trimmed', async () => {
    const b = await broker();
    const [a, other] = samePartition(b, 'a', 'other');
    const p = partitionOf(b, a!);
    const at = (seq: number): Map<number, number> => new Map([[p, seq]]);
    const start = headOf((await b.replay([a!], undefined)).heads, p);
    const evs: BrokerEvent[] = [];
    for (let i = 0; i < 6; i++) {
      evs.push(await b.publish(a!, { data: String(i) }, 3));
      await b.publish(other!, { data: 'x' + i }, 100);
    }
    const heads = (await b.replay([a!], undefined)).heads;
    expect((await b.replay([a!], at(start.seq))).complete).toBe(false);
    expect((await b.replay([a!], at(evs[1]!.seq))).complete).toBe(false);
    const miss = await b.replay([a!], at(evs[2]!.seq - 1));
    expect(result(miss)).toEqual({ complete: false, events: [], heads });
    const ok = await b.replay([a!], at(evs[2]!.seq));
    expect(result(ok)).toEqual({ complete: true, events: evs.slice(3), heads });
    expect((await b.replay([a!], at(evs[3]!.seq))).events).toEqual(evs.slice(4));
    const both = await b.replay([other!, a!], at(evs[0]!.seq));
    expect(both.complete).toBe(false);
    expect(both.events).toEqual([]);
    const more: BrokerEvent[] = [];
    for (let i = 0; i < 4; i++) more.push(await b.publish(a!, { data: 'm' + i }, 100));
    const r = await b.replay([a!], at(evs[2]!.seq));
    expect(r.complete).toBe(true);
    expect(r.events).toEqual([...evs.slice(3), ...more]);
  });
  test('history 0 keeps nothing: live delivery only, replay from before it is incomplete', async () => {
    const b = await broker();
    const [a] = channelNames('a');
    const p = partitionOf(b, a!);
    const rec = new Recorder();
    await b.subscribe(a!, rec);
    const start = headOf((await b.replay([a!], undefined)).heads, p);
    const ev = await b.publish(a!, { data: 'live' }, 0);
    await rec.has(ev.id);
    expect((await b.replay([a!], new Map([[p, start.seq]]))).complete).toBe(false);
    const at = await b.replay([a!], new Map([[p, ev.seq]]));
    expect(at.complete).toBe(true);
    expect(at.events).toEqual([]);
    expect(headOf(at.heads, p).seq).toBe(ev.seq);
    const [c] = channelNames('c');
    const q = partitionOf(b, c!);
    const kept = await b.publish(c!, { data: '1' }, 10);
    const zero = await b.publish(c!, { data: '2' }, 0);
    expect((await b.replay([c!], new Map([[q, kept.seq - 1]]))).complete).toBe(false);
    expect((await b.replay([c!], new Map([[q, kept.seq]]))).complete).toBe(false);
    expect((await b.replay([c!], new Map([[q, zero.seq]]))).complete).toBe(true);
  });
  test("a position from the future is not complete (epochs are the hub's to compare)", async () => {
    const b = await broker();
    const [a] = channelNames('a');
    const p = partitionOf(b, a!);
    const ev = await b.publish(a!, { data: '1' }, 10);
    const head = { epoch: ev.epoch, seq: ev.seq };
    for (const seq of [ev.seq + 1, Number.MAX_SAFE_INTEGER]) {
      const r = await b.replay([a!], new Map([[p, seq]]));
      expect(r.complete).toBe(false);
      expect(r.events).toEqual([]);
      expect(headOf(r.heads, p)).toEqual(head);
    }
    const now = await b.replay([a!], new Map([[p, ev.seq]]));
    expect(result(now)).toEqual({ complete: true, events: [], heads: new Map([[p, head]]) });
  });
  test('fence: a position ahead of the head in the same epoch starts a new epoch; listeners get one reset, then every later event', async () => {
    const b = await broker();
    const [a] = channelNames('a');
    const p = partitionOf(b, a!);
    if (b.fence === undefined) {
      expect(b.fence).toBeUndefined(); // optional: a broker whose history cannot rewind omits it
      return;
    }
    const rec = new Recorder();
    await b.subscribe(a!, rec);
    const ev = await b.publish(a!, { data: 'before' }, 10);
    await rec.has(ev.id);
    // a fence at or behind the head changes nothing
    await b.fence({ partition: p, epoch: ev.epoch, seq: ev.seq });
    expect(headOf((await b.replay([a!], undefined)).heads, p).epoch).toBe(ev.epoch);
    await b.fence({ partition: p, epoch: ev.epoch, seq: ev.seq + 1000 });
    const after = headOf((await b.replay([a!], undefined)).heads, p);
    expect(after.epoch === ev.epoch).toBe(false);
    // nothing of the old epoch is vouched for: a replay from its positions is the hub's reset
    const next = await b.publish(a!, { data: 'after' }, 10);
    expect(next.epoch).toBe(after.epoch);
    await rec.has(next.id);
    await rec.until(() => rec.resets.length >= 1, 'a reset');
    expect(rec.resets).toHaveLength(1);
    expect(rec.resets[0]!.channel).toBe(a);
    expect(rec.resets[0]!.head.epoch).toBe(after.epoch);
    expect(rec.events.map((e) => e.data)).toEqual(['before', 'after']);
    const r = await b.replay([a!], new Map([[p, rec.resets[0]!.head.seq]]));
    expect(r.complete).toBe(true);
    expect(r.events.map((e) => e.data)).toEqual(['after']);
  });
  test('replay with a limit: pages of at most that many, oldest first, no gap per partition, `more` until the end', async () => {
    const b = await broker();
    const chans: string[] = [];
    const parts = new Set<number>();
    for (let i = 0; chans.length < Math.min(2, partitionsOf(b)) && i < 10_000; i++) {
      const [c] = channelNames('L' + i);
      if (!parts.has(partitionOf(b, c!))) {
        parts.add(partitionOf(b, c!));
        chans.push(c!);
      }
    }
    const [same] = samePartition(b, 'L-same');
    if (!parts.has(partitionOf(b, same!))) chans.push(same!);
    else chans.push(samePartition(b, 'L-x', 'L-y')[1]!);
    const start = (await b.replay(chans, undefined)).heads;
    const all: BrokerEvent[] = [];
    for (let i = 0; i < 23; i++) all.push(await b.publish(chans[i % chans.length]!, { data: String(i) }, 100));
    const whole = await b.replay(chans, afterMap(b, chans, start));
    expect(whole.complete).toBe(true);
    expect(whole.more === undefined || whole.more === false).toBe(true);
    // page through with limit 5: every event exactly once, each page at most 5, in seq order per partition
    const at = afterMap(b, chans, start);
    const got: BrokerEvent[] = [];
    for (let page = 0; page < 50; page++) {
      const r = await b.replay(chans, at, 5);
      expect(r.complete).toBe(true);
      if (r.more === undefined) {
        // a broker that ignores limit: everything at once
        got.push(...r.events);
        break;
      }
      expect(r.events.length).toBeGreaterThan(r.more ? 0 : -1);
      expect(r.events.length <= 5).toBe(true);
      for (const e of r.events) at.set(e.partition, Math.max(at.get(e.partition)!, e.seq));
      got.push(...r.events);
      if (!r.more) break;
    }
    expect(got.map((e) => e.id).sort()).toEqual(all.map((e) => e.id).sort());
    for (const p of parts) {
      const mine = got.filter((e) => e.partition === p);
      expect(mine).toEqual(all.filter((e) => e.partition === p));
    }
  });
}
