/** Delivery: order per partition, only subscribed channels, every listener once, unsubscribe. */
import { type BrokerEvent } from '../../brokers/broker';
import {
  Recorder,
  channelNames,
  samePartition,
  expectSeqIncreasing,
  expect,
  test,
  type ContractContext,
} from './common';

export function deliveryTests({ broker, fence }: ContractContext): void {
  test('a listener gets every event of its channel in publish order, with the published fields', async () => {
    const b = await broker();
    const [a] = channelNames('a');
    const rec = new Recorder();
    await b.subscribe(a!, rec);
    const published: BrokerEvent[] = [];
    const payloads = ['x', '', 'multi\nline\r\ndata', '{"json":true}', 'ünïcødé ✓ 𝄞', ' spaced '];
    for (let i = 0; i < 30; i++) {
      const data = payloads[i % payloads.length]! + i;
      const input =
        i % 3 === 0 ? { data } : i % 3 === 1 ? { data, event: i % 2 ? 'e' : '' } : { data, coalesce: 'c' + i };
      published.push(await b.publish(a!, input, 100));
    }
    await rec.count(30);
    expect(rec.events).toEqual(published);
  });
  test('concurrent publishes to one channel are delivered in the order of their seqs, each once', async () => {
    const b = await broker();
    const [a] = channelNames('a');
    const rec = new Recorder();
    await b.subscribe(a!, rec);
    const all = await Promise.all(Array.from({ length: 200 }, (_, i) => b.publish(a!, { data: String(i) }, 500)));
    await rec.count(200);
    expect(new Set(all.map((e) => e.seq)).size).toBe(200);
    expect(rec.events).toEqual([...all].sort((x, y) => x.seq - y.seq));
  });
  test('seq increases strictly across the channels of a partition, in one epoch', async () => {
    const b = await broker();
    const names = samePartition(b, 'a', 'b', 'c');
    const out: BrokerEvent[] = [];
    for (let i = 0; i < 15; i++) out.push(await b.publish(names[i % 3]!, { data: String(i) }, 100));
    expectSeqIncreasing(out);
    expect(new Set(out.map((e) => e.epoch)).size).toBe(1);
    const many = await Promise.all(names.map((n, i) => b.publish(n, { data: 'p' + i }, 100)));
    expect(new Set(many.map((e) => e.seq)).size).toBe(3);
    expect(Math.min(...many.map((e) => e.seq))).toBeGreaterThan(out[out.length - 1]!.seq);
  });
  test('only subscribed channels are delivered; events of a partition arrive in seq order', async () => {
    const b = await broker();
    const [a, other, c] = samePartition(b, 'a', 'other', 'c');
    const rec = new Recorder();
    await b.subscribe(a!, rec);
    await b.subscribe(c!, rec);
    const expected: string[] = [];
    for (let i = 0; i < 12; i++) {
      const ch = [a, other, c][i % 3]!;
      const ev = await b.publish(ch, { data: String(i) }, 100);
      if (ch !== other) expected.push(ev.id);
    }
    await fence(b, rec, c!);
    expect(rec.ids().slice(0, -1)).toEqual(expected);
    expect(rec.events.some((e) => e.channel === other)).toBe(false);
    expectSeqIncreasing(rec.events);
  });
  test('every listener of a channel gets each event once; subscribing twice is once', async () => {
    const b = await broker();
    const [a] = channelNames('a');
    const r1 = new Recorder();
    const r2 = new Recorder();
    await b.subscribe(a!, r1);
    await b.subscribe(a!, r1);
    await b.subscribe(a!, r2);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await b.publish(a!, { data: String(i) }, 10)).id);
    await r1.count(5);
    await r2.count(5);
    await fence(b, r1, a!);
    expect(r1.ids().slice(0, 5)).toEqual(ids);
    expect(r1.events).toHaveLength(6);
    expect(r2.ids().slice(0, 5)).toEqual(ids);
  });
  test('unsubscribe stops delivery to that listener only, then to the channel', async () => {
    const b = await broker();
    const [a, f] = samePartition(b, 'a', 'fence');
    const r1 = new Recorder();
    const r2 = new Recorder();
    const watch = new Recorder();
    await b.subscribe(a!, r1);
    await b.subscribe(a!, r2);
    await b.subscribe(f!, watch);
    await b.subscribe(f!, r1);
    const first = await b.publish(a!, { data: '1' }, 10);
    await r1.has(first.id);
    await r2.has(first.id);
    await b.unsubscribe(a!, r1);
    const second = await b.publish(a!, { data: '2' }, 10);
    await r2.has(second.id);
    await fence(b, r1, f!);
    expect(r1.events.filter((e) => e.channel === a).map((e) => e.id)).toEqual([first.id]);
    await b.unsubscribe(a!, r2);
    await b.unsubscribe(a!, r2); // twice: harmless
    await b.publish(a!, { data: '3' }, 10);
    await fence(b, watch, f!);
    await fence(b, watch, f!);
    expect(r2.ids()).toEqual([first.id, second.id]);
    await b.unsubscribe(channelNames('never')[0]!, r1);
  });
  test('concurrent subscribe/unsubscribe of one channel end in the state the calls left', async () => {
    const b = await broker();
    const [a, f] = samePartition(b, 'a', 'fence');
    const rec = new Recorder();
    const other = new Recorder();
    await b.subscribe(f!, rec);
    await Promise.all([b.subscribe(a!, rec), b.unsubscribe(a!, rec), b.subscribe(a!, rec)]);
    const one = await b.publish(a!, { data: '1' }, 10);
    await rec.has(one.id);
    await Promise.all([
      b.unsubscribe(a!, rec),
      b.subscribe(a!, other),
      b.subscribe(a!, rec),
      b.unsubscribe(a!, other),
      b.unsubscribe(a!, rec),
    ]);
    await b.publish(a!, { data: '2' }, 10);
    await fence(b, rec, f!);
    expect(rec.events.filter((e) => e.channel === a).map((e) => e.id)).toEqual([one.id]);
    expect(other.events.filter((e) => e.data === '2')).toHaveLength(0);
  });
  test('a listener subscribed after some events gets only later ones, live', async () => {
    const b = await broker();
    const [a] = channelNames('a');
    await b.publish(a!, { data: 'before' }, 10);
    const rec = new Recorder();
    await b.subscribe(a!, rec);
    const after = await b.publish(a!, { data: 'after' }, 10);
    await rec.has(after.id);
    expect(rec.ids()).toEqual([after.id]);
  });
}
