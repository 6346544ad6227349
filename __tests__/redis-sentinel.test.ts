/**
 * RedisBroker on one Redis with a replica behind Sentinel, the most common
 * highly available setup: `SENTINEL FAILOVER` while two channels are live and
 * publishing goes on. Sentinel turns the old master into a replica only about
 * 10 s after it promoted the other, and meanwhile the old one goes on
 * acknowledging writes that the resync then throws away. What a user relies
 * on: every acknowledged event exactly once in order, or exactly one reset per
 * channel whose head is where the promoted replica's history ends (only events
 * after it may be missing); publishing works again through the new master;
 * nothing rejected is delivered later.
 */
import Redis from 'ioredis';
import type { BrokerEvent } from '../lib/brokers/broker';
import { RedisBroker } from '../lib/brokers/redis';
import { SseRelayError } from '../lib/errors';
import { Recorder } from '../lib/testing';
import { startSentinelSet, type SentinelSet } from './helpers/redis-sentinel';
import { sleep } from './helpers/wait';

jest.setTimeout(90_000);

let set: SentinelSet;
const brokers: RedisBroker[] = [];
const clients: Redis[] = [];

beforeAll(async () => {
  set = await startSentinelSet();
});
afterAll(async () => {
  await set?.stop();
});
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
  for (const c of clients.splice(0)) c.disconnect();
});

const modes = {
  owned: 'the connection the broker opens (redisOptions: { sentinels, name })',
  caller: "the caller's ioredis client (new Redis({ sentinels, name }))",
} as const;

let run = 0;
for (const mode of Object.keys(modes) as (keyof typeof modes)[]) {
  test(`SENTINEL FAILOVER, ${modes[mode]}: every acknowledged event once in order or one reset; publishing resumes`, async () => {
    const prefix = `sen${++run}:`;
    const options = { prefix, commandTimeout: 1000, healthCheckInterval: 300 };
    const make = (): RedisBroker => {
      let b: RedisBroker;
      if (mode === 'owned') {
        b = new RedisBroker({ ...options, redisOptions: set.clientOptions });
      } else {
        const c = new Redis({ ...set.clientOptions, maxRetriesPerRequest: 1 });
        c.on('error', () => undefined);
        clients.push(c);
        b = new RedisBroker({ ...options, redis: c });
      }
      brokers.push(b);
      return b;
    };
    const pub = make();
    const sub = make();
    const rec = new Recorder();
    await sub.subscribe('x', rec);
    await sub.subscribe('y', rec);
    const acked: BrokerEvent[] = [];
    const rejected: string[] = [];
    let stop = false;
    const publishing = (async () => {
      for (let i = 0; !stop && i < 5000; i++) {
        const data = `e${i}`;
        try {
          acked.push(await pub.publish(i % 2 ? 'x' : 'y', { data }, 10_000));
        } catch (err) {
          expect((err as SseRelayError).code).toBe('ERR_BROKER_UNAVAILABLE');
          rejected.push(data);
        }
        await sleep(3);
      }
    })();
    await sleep(300);
    const before = acked.length;
    await set.failover();
    // publishing must go through the new master: wait (bounded) for 50 acknowledged after the switch
    const deadline = Date.now() + 30_000;
    const switched = acked.length;
    while (acked.length < switched + 50 && Date.now() < deadline) await sleep(20);
    stop = true;
    await publishing;
    expect(before).toBeGreaterThan(0);
    expect(acked.length).toBeGreaterThanOrEqual(switched + 50);
    const last = await pub.publish('x', { data: 'last' }, 10_000);
    acked.push(last);
    await rec.has(last.id, 20_000);
    const ids = rec.ids();
    const got = new Set(ids);
    expect(got.size).toBe(ids.length); // nothing twice
    expect(rec.events.filter((e) => rejected.includes(e.data))).toEqual([]); // nothing rejected, ever
    // at most one reset per channel; it names where the new epoch starts (what the promoted
    // replica had): an acknowledged event of the old epoch after that may be gone, and nothing else
    const resets = new Map(rec.resets.map((r) => [r.channel, r.head]));
    expect(resets.size).toBe(rec.resets.length);
    const gone = (e: BrokerEvent): boolean => {
      const head = resets.get(e.channel);
      return head !== undefined && e.epoch !== head.epoch && e.seq > head.seq;
    };
    expect(acked.filter((e) => !got.has(e.id) && !gone(e)).map((e) => e.data)).toEqual([]);
    // in order per epoch
    for (let i = 1; i < rec.events.length; i++) {
      const [a, b] = [rec.events[i - 1]!, rec.events[i]!];
      if (a.epoch === b.epoch) expect(b.seq).toBeGreaterThan(a.seq);
    }
    // the last event is on the new master, and the broker reads its head from there
    const promoted = new Redis(await set.masterPort(), '127.0.0.1', { maxRetriesPerRequest: 1 });
    clients.push(promoted);
    expect(await promoted.call('XREVRANGE', pub.keyOf('x'), '+', '-', 'COUNT', '1')).toEqual([
      [`${last.seq}-0`, expect.arrayContaining(['d', 'last'])],
    ]);
    const all = await sub.replay(['x', 'y'], undefined);
    expect(all.heads.get(0)).toEqual({ epoch: last.epoch, seq: last.seq });
  });
}
