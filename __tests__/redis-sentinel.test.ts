/**
 * RedisBroker on one Redis with a replica behind Sentinel, the most common
 * highly available setup: `SENTINEL FAILOVER` while two channels are live and
 * publishing goes on. Sentinel turns the old master into a replica only about
 * 10 s after it promoted the other, and meanwhile the old one goes on
 * acknowledging writes that the resync then throws away. What a user relies
 * on: every acknowledged event exactly once in order, or exactly one reset per
 * channel whose head is where the promoted replica's history ends (only events
 * after it may be missing); publishing works again through the new master;
 * nothing not-published is delivered later. With `waitReplicas: 1` a publish
 * resolves only once the replica has it, so the promoted replica holds every
 * acknowledged event, and what the old master took alone is refused.
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

/** A plain client to one node (closed after the test). */
function node(port: number): Redis {
  const c = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

/** The data of every entry of `channels`' streams on the node at `port`. */
async function stored(b: RedisBroker, port: number, channels: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const ch of channels) {
    const entries = (await node(port).call('XRANGE', b.keyOf(ch), '-', '+')) as [string, string[]][];
    for (const [, fields] of entries) out.add(fields[fields.indexOf('d') + 1]!);
  }
  return out;
}

describe('waitReplicas', () => {
  test('1: a publish resolves once the replica has it (read there right after); a stopped replica makes it reject with outcome unknown, then it works again', async () => {
    const b = new RedisBroker({
      redisOptions: set.clientOptions,
      prefix: 'wr1:',
      waitReplicas: 1,
      commandTimeout: 800,
    });
    brokers.push(b);
    const masterPort = await set.masterPort();
    const replicaPort = masterPort === set.master.port ? set.replica.port : set.master.port;
    const replicaServer = replicaPort === set.master.port ? set.master : set.replica;
    for (let i = 0; i < 20; i++) {
      const e = await b.publish('w', { data: `w${i}` }, 100);
      expect((await stored(b, replicaPort, ['w'])).has(`w${i}`)).toBe(true); // no waiting: it is there
      expect(e.data).toBe(`w${i}`);
    }
    replicaServer.process.kill('SIGSTOP');
    try {
      const started = Date.now();
      const err = await b.publish('w', { data: 'alone' }, 100).then(
        () => undefined,
        (e: unknown) => e as SseRelayError,
      );
      expect(err).toBeInstanceOf(SseRelayError);
      expect(err!.outcome).toBe('unknown'); // on the master, not confirmed
      expect(err!.message).toMatch(/0 of the 1 replicas of waitReplicas confirmed it in time/);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect((await stored(b, masterPort, ['w'])).has('alone')).toBe(true);
    } finally {
      replicaServer.process.kill('SIGCONT');
    }
    const again = await b.publish('w', { data: 'again' }, 100);
    expect((await stored(b, replicaPort, ['w'])).has('again')).toBe(true);
    expect(again.seq).toBeGreaterThan(0);
  });

  test('refused on a cluster, out of range refused', () => {
    expect(() => new RedisBroker({ cluster: [{ host: '127.0.0.1', port: 1 }], waitReplicas: 1 })).toThrow(
      'sse-relay: RedisBroker option waitReplicas works on one Redis (with replicas), not on a Redis Cluster',
    );
    expect(() => new RedisBroker({ url: 'redis://127.0.0.1:1', waitReplicas: -1 })).toThrow(RangeError);
    expect(() => new RedisBroker({ url: 'redis://127.0.0.1:1', waitReplicas: 1.5 })).toThrow(RangeError);
  });
});

const modes = {
  durable: 'waitReplicas: 1 (and every acknowledged event is in the promoted replica)',
  owned: 'the connection the broker opens (redisOptions: { sentinels, name })',
  caller: "the caller's ioredis client (new Redis({ sentinels, name }))",
} as const;

describe('SENTINEL FAILOVER while publishing', () => {
  let run = 0;
  for (const mode of Object.keys(modes) as (keyof typeof modes)[]) {
    test(`SENTINEL FAILOVER, ${modes[mode]}: every acknowledged event once in order or one reset; publishing resumes`, async () => {
      const prefix = `sen${++run}:`;
      const options = { prefix, commandTimeout: 1000, healthCheckInterval: 300 };
      const make = (): RedisBroker => {
        let b: RedisBroker;
        if (mode !== 'caller') {
          b = new RedisBroker({
            ...options,
            redisOptions: set.clientOptions,
            waitReplicas: mode === 'durable' ? 1 : 0,
          });
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
            // 'unknown' may have been stored (waitReplicas: on the master, unconfirmed); 'not-published' never is
            if ((err as SseRelayError).outcome === 'not-published') rejected.push(data);
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
      expect(rec.events.filter((e) => rejected.includes(e.data))).toEqual([]); // nothing not-published, ever
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
      if (mode === 'durable') {
        // nothing acknowledged was lost with the old master (what it took alone was refused)
        const kept = await stored(pub, await set.masterPort(), ['x', 'y']);
        expect(acked.filter((e) => !kept.has(e.data)).map((e) => e.data)).toEqual([]);
      }
    });
  }
});
