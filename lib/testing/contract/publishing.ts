/** Publishing and lifecycle: partitions, publish results, idempotency keys, close. */
import { formatEventId } from '../../brokers/broker';
import {
  Recorder,
  channelNames,
  samePartition,
  partitionsOf,
  partitionOf,
  expectCode,
  headOf,
  expect,
  test,
  type ContractContext,
} from './common';

export function publishingTests({ broker, fence }: ContractContext): void {
  test('partitions: 1..8, partitionOf stable and in range', async () => {
    const b = await broker();
    const n = partitionsOf(b);
    expect(Number.isSafeInteger(n) && n >= 1 && n <= 8).toBe(true);
    if (n > 1) expect(typeof b.partitionOf).toBe('function');
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const p = partitionOf(b, `chan:${i}`);
      expect(Number.isSafeInteger(p) && p >= 0 && p < n).toBe(true);
      expect(partitionOf(b, `chan:${i}`)).toBe(p);
      seen.add(p);
    }
    expect(seen.size).toBe(n); // 200 names reach every partition
  });
  test('publish resolves with the stored event and its id', async () => {
    const b = await broker();
    const [a] = channelNames('a');
    const ev = await b.publish(a!, { data: 'hello', event: 'greet', coalesce: 'k' }, 10);
    expect(ev.channel).toBe(a);
    expect(ev.data).toBe('hello');
    expect(ev.event).toBe('greet');
    expect(ev.coalesce).toBe('k');
    expect(ev.partition).toBe(partitionOf(b, a!));
    expect(ev.epoch).toMatch(/^[A-Za-z0-9_-]{1,32}$/);
    expect(Number.isSafeInteger(ev.seq) && ev.seq > 0).toBe(true);
    expect(ev.id).toBe(formatEventId(ev.partition, ev.epoch, ev.seq, partitionsOf(b)));
    expect(ev.id).toMatch(/^[A-Za-z0-9._-]{1,128}$/);
    const plain = await b.publish(a!, { data: '' }, 10);
    expect(plain.event).toBeUndefined();
    expect(plain.coalesce).toBeUndefined();
    expect(plain.data).toBe('');
  });
  test('idempotencyKey: a second publish with the same key stores nothing and returns the first event', async () => {
    const b = await broker();
    const [a, f] = samePartition(b, 'a', 'fence');
    const p = partitionOf(b, a!);
    const rec = new Recorder();
    await b.subscribe(a!, rec);
    await b.subscribe(f!, rec);
    const start = headOf((await b.replay([a!], undefined)).heads, p);
    const key = 'order-42-shipped-' + a;
    const first = await b.publish(a!, { data: 'once', idempotencyKey: key }, 10);
    const again = await b.publish(a!, { data: 'once', idempotencyKey: key }, 10);
    const [x, y] = await Promise.all([
      b.publish(a!, { data: 'twin', idempotencyKey: key + 'b' }, 10),
      b.publish(a!, { data: 'twin', idempotencyKey: key + 'b' }, 10),
    ]);
    expect(again.id).toBe(first.id);
    expect(again.seq).toBe(first.seq);
    expect(y!.id).toBe(x!.id);
    const other = await b.publish(a!, { data: 'other key', idempotencyKey: key + 'c' }, 10);
    expect(other.seq).toBeGreaterThan(x!.seq);
    await fence(b, rec, f!);
    expect(rec.events.filter((e) => e.channel === a).map((e) => e.data)).toEqual(['once', 'twin', 'other key']);
    const r = await b.replay([a!], new Map([[p, start.seq]]));
    expect(r.events.map((e) => e.data)).toEqual(['once', 'twin', 'other key']);
    // Keys are per channel: the same key on another channel is another publish.
    const elsewhere = await b.publish(f!, { data: 'same key, other channel', idempotencyKey: key }, 10);
    expect(elsewhere.channel).toBe(f);
    expect(elsewhere.seq).toBeGreaterThan(other.seq);
    await fence(b, rec, f!);
    expect(rec.events.some((e) => e.channel === f && e.data === 'same key, other channel')).toBe(true);
  });
  test('close: idempotent; publish and subscribe reject afterwards', async () => {
    const b = await broker();
    const [a] = channelNames('a');
    const rec = new Recorder();
    await b.subscribe(a!, rec);
    await b.close();
    await b.close();
    await expectCode(b.publish(a!, { data: 'x' }, 10), 'ERR_BROKER_CLOSED');
    await expectCode(b.subscribe(a!, new Recorder()), 'ERR_BROKER_CLOSED');
    await b.unsubscribe(a!, rec); // harmless after close
    expect(rec.events).toEqual([]);
  });
}
