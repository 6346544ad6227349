/**
 * RedisBroker against real redis-servers of its own (so connection counts and
 * kills concern this file only): one subscriber connection per broker,
 * catch-up after a killed connection and after restarts with and without
 * persistence, validation of what anyone can write to our channels and keys,
 * behaviour while Redis is down, and the caller's client left alone.
 */
import type Redis from 'ioredis';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BrokerEvent } from '../lib/brokers/broker';
import { RedisBroker } from '../lib/brokers/redis';
import { SseRelayError } from '../lib/errors';
import { Recorder } from '../lib/testing';
import { redisFixtures } from './helpers/redis-fixtures';
import { freePort } from './helpers/redis-server';
import { sleep, until } from './helpers/wait';
import { commandClient, peakListeners, watchWarnings } from './helpers/warnings';

/** The ACL rules the README gives for the broker's Redis user (its prefix: sse-relay:). */
const README_ACL = (() => {
  const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
  const m = /ACL SETUSER sse-relay on >\S+ (.+)$/m.exec(readme);
  if (m === null) throw new Error('README: no "ACL SETUSER sse-relay on >..." line');
  return m[1]!.trim();
})();

jest.setTimeout(60_000);

const {
  prefix,
  at,
  topic,
  broker,
  client,
  server,
  untrack,
  dir: removeAfter,
} = redisFixtures('rb', { maxRetriesPerRequest: 1 });

async function pubsubClients(admin: Redis): Promise<string[]> {
  const list = (await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string;
  return list.split('\n').filter((line) => line.trim() !== '');
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<SseRelayError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SseRelayError);
  expect((err as SseRelayError).code).toBe(code);
  return err as SseRelayError;
}

/** Every id in `acked` was received exactly once, and everything received is in seq order. */
function expectExactlyOnceInOrder(rec: Recorder, acked: readonly BrokerEvent[]): void {
  const ids = rec.ids();
  expect(new Set(ids).size).toBe(ids.length);
  for (let i = 1; i < rec.events.length; i++) {
    expect(rec.events[i]!.epoch).toBe(rec.events[0]!.epoch);
    expect(rec.events[i]!.seq).toBeGreaterThan(rec.events[i - 1]!.seq);
  }
  const got = new Set(ids);
  expect(acked.filter((e) => !got.has(e.id))).toEqual([]);
  // what arrived is what was published (fields intact), not just the ids
  const byId = new Map(rec.events.map((e) => [e.id, e]));
  for (const e of acked) expect(byId.get(e.id)).toEqual(e);
}

function allOf(rec: Recorder, acked: readonly BrokerEvent[]): () => boolean {
  return () => {
    const got = new Set(rec.ids());
    return acked.every((e) => got.has(e.id));
  };
}

describe('connections', () => {
  test('ONE subscriber connection per broker, 50 listeners on 10 channels; nothing left after they leave', async () => {
    const s = await server();
    const admin = client(s.url);
    const p = prefix();
    const b = broker({ url: s.url, prefix: p });
    await b.publish('warmup', { data: 'x' }, 10);
    expect(await pubsubClients(admin)).toHaveLength(0); // publishing alone opens no subscriber

    const channels = Array.from({ length: 10 }, (_, i) => `ch${i}`);
    const listeners = Array.from({ length: 50 }, () => new Recorder());
    await Promise.all(listeners.map((l, i) => b.subscribe(channels[i % 10]!, l)));
    const clients = await pubsubClients(admin);
    expect(clients).toHaveLength(1);
    expect(clients[0]).toContain('name=sse-relay:sub');
    expect(((await admin.call('PUBSUB', 'SHARDCHANNELS', p + '*')) as string[]).sort()).toEqual(
      channels.map((c) => topic(p, c)).sort(),
    );
    const numsub = (await admin.call('PUBSUB', 'SHARDNUMSUB', ...channels.map((c) => topic(p, c)))) as (
      string | number
    )[];
    for (let i = 1; i < numsub.length; i += 2) expect(Number(numsub[i])).toBe(1);
    expect(b.stats()).toMatchObject({ subscribed: 10, listeners: 50 });

    // every listener gets its channel's events
    const evs = await Promise.all(channels.map((c) => b.publish(c, { data: c }, 10)));
    for (let i = 0; i < 50; i++) await listeners[i]!.has(evs[i % 10]!.id);

    // a second broker (another process) has its own one connection
    const b2 = broker({ url: s.url, prefix: p });
    const r2 = new Recorder();
    await Promise.all(channels.map((c) => b2.subscribe(c, r2)));
    expect(await pubsubClients(admin)).toHaveLength(2);
    await b2.close();
    expect(await pubsubClients(admin)).toHaveLength(1);

    // half leave: still subscribed; all leave: no subscription left
    await Promise.all(listeners.slice(0, 25).map((l, i) => b.unsubscribe(channels[i % 10]!, l)));
    expect((await admin.call('PUBSUB', 'SHARDCHANNELS', p + '*')) as string[]).toHaveLength(10);
    await Promise.all(listeners.slice(25).map((l, i) => b.unsubscribe(channels[(i + 25) % 10]!, l)));
    expect(await admin.call('PUBSUB', 'SHARDCHANNELS', p + '*')).toEqual([]);
    expect(b.stats()).toMatchObject({ subscribed: 0, listeners: 0 });

    // and back again
    const again = new Recorder();
    await b.subscribe('ch3', again);
    expect(await admin.call('PUBSUB', 'SHARDCHANNELS', p + '*')).toEqual([topic(p, 'ch3')]);
    const ev = await b.publish('ch3', { data: 'again' }, 10);
    await again.has(ev.id);
    expect(await pubsubClients(admin)).toHaveLength(1);
    await b.close();
    expect(await pubsubClients(admin)).toHaveLength(0);
  });

  test('concurrent subscribe/unsubscribe storms leave Redis subscribed to exactly the channels with listeners', async () => {
    const s = await server();
    const admin = client(s.url);
    const p = prefix();
    const b = broker({ url: s.url, prefix: p });
    const channels = ['s0', 's1', 's2'];
    const recs = Array.from({ length: 4 }, () => new Recorder());
    const model = channels.map(() => new Set<Recorder>());
    let rnd = 12345;
    const next = (n: number): number => {
      rnd = (rnd * 1103515245 + 12345) % 2147483648;
      return rnd % n;
    };
    for (let round = 0; round < 5; round++) {
      const ops: Promise<void>[] = [];
      for (let i = 0; i < 60; i++) {
        const c = next(3);
        const r = recs[next(4)]!;
        if (next(2) === 0) {
          model[c]!.add(r);
          ops.push(b.subscribe(channels[c]!, r));
        } else {
          model[c]!.delete(r);
          ops.push(b.unsubscribe(channels[c]!, r));
        }
      }
      await Promise.all(ops);
      const expected = channels
        .filter((_, c) => model[c]!.size > 0)
        .map((ch) => topic(p, ch))
        .sort();
      expect(((await admin.call('PUBSUB', 'SHARDCHANNELS', p + '*')) as string[]).sort()).toEqual(expected);
      expect(b.stats().listeners).toBe(model.reduce((n, m) => n + m.size, 0));
    }
    // and delivery matches the model
    const fence = new Recorder();
    await b.subscribe('fence', fence);
    const evs = await Promise.all(channels.map((ch) => b.publish(ch, { data: ch }, 10)));
    const f = await b.publish('fence', { data: 'f' }, 10);
    await fence.has(f.id);
    for (const r of recs) {
      const want = evs.filter((_, c) => model[c]!.has(r)).map((e) => e.id);
      expect(r.ids().filter((id) => evs.some((e) => e.id === id))).toEqual(want);
    }
  });

  test("the caller's client runs the commands, is duplicated for subscribing, and is never quit", async () => {
    const s = await server();
    const admin = client(s.url);
    const mine = client(s.url);
    const b = broker({ redis: mine, prefix: prefix() });
    const rec = new Recorder();
    await b.subscribe('a', rec);
    const ev = await b.publish('a', { data: 'x' }, 10);
    await rec.has(ev.id);
    expect(await pubsubClients(admin)).toHaveLength(1);
    await b.close();
    await b.close();
    expect(mine.status).toBe('ready');
    expect(await mine.ping()).toBe('PONG');
    expect(await pubsubClients(admin)).toHaveLength(0);
  });

  test('bad options throw at construction', () => {
    expect(() => new RedisBroker({ url: 5 as unknown as string })).toThrow(TypeError);
    expect(() => new RedisBroker({ redis: {} as never })).toThrow(TypeError);
    expect(() => new RedisBroker({ prefix: null as unknown as string })).toThrow(TypeError);
    expect(() => new RedisBroker({ commandTimeout: 0 })).toThrow(RangeError);
    expect(() => new RedisBroker({ commandTimeout: 1.5 })).toThrow(RangeError);
    expect(() => new RedisBroker({ partitions: 9 })).toThrow(RangeError);
    expect(() => new RedisBroker({ partitions: '2' as unknown as number })).toThrow(TypeError);
    expect(() => new RedisBroker({ healthCheckInterval: -1 })).toThrow(RangeError);
    expect(() => new RedisBroker({ url: 'redis://127.0.0.1:1', cluster: [{ host: '127.0.0.1', port: 1 }] })).toThrow(
      TypeError,
    );
    expect(() => new RedisBroker({ cluster: [{ host: '127.0.0.1' }] as never })).toThrow(TypeError);
    expect(() => new RedisBroker({ url: 'redis://127.0.0.1:1', clusterOptions: {} })).toThrow(
      'sse-relay: RedisBroker option clusterOptions goes with the option cluster (startup nodes)',
    );
    expect(() => new RedisBroker({ cluster: [{ host: '127.0.0.1', port: 1 }], clusterOptions: 5 as never })).toThrow(
      'sse-relay: RedisBroker option clusterOptions must be an object',
    );
    expect(() => new RedisBroker({ redisOptions: [] as never })).toThrow(
      'sse-relay: RedisBroker option redisOptions must be an object',
    );
  });

  test('unknown option names are refused with a "did you mean", before anything connects', () => {
    expect(() => new RedisBroker({ uri: 'redis://127.0.0.1:1' } as never)).toThrow(
      'sse-relay: unknown RedisBroker option "uri" (did you mean "url"?)',
    );
    expect(() => new RedisBroker({ prefx: 'a:' } as never)).toThrow(/did you mean "prefix"/);
    expect(() => new RedisBroker({ commandTimeOut: 5 } as never)).toThrow(/did you mean "commandTimeout"/);
    expect(() => new RedisBroker({ zzz: 1 } as never)).toThrow(/unknown RedisBroker option "zzz"; known: url, redis/);
  });

  test('publish input: unknown fields, bad types and oversized data are refused before anything is sent', async () => {
    const b = broker({ url: process.env.REDIS_URL!, prefix: prefix(), maxDataBytes: 10 });
    await expect(b.publish('a', { data: 'x', evnt: 'e' } as never, 10)).rejects.toThrow(
      /unknown RedisBroker.publish input option "evnt" \(did you mean "event"\?\)/,
    );
    await expect(b.publish('a', { data: 5 } as never, 10)).rejects.toThrow(TypeError);
    await expect(b.publish('a', { data: 'x', event: 'a\nb' }, 10)).rejects.toThrow(TypeError);
    await expect(b.publish('a', { data: 'x', coalesce: 'a\rb' }, 10)).rejects.toThrow(TypeError);
    await expect(b.publish('a b', { data: 'x' }, 10)).rejects.toThrow(TypeError);
    await expect(b.publish('a', { data: 'x' }, -1)).rejects.toThrow(RangeError);
    await expect(b.publish('a', { data: '12345678901' }, 10)).rejects.toThrow(
      /11 bytes, more than maxDataBytes \(10\)/,
    );
    await expect(b.publish('a', { data: 'ééééééé' }, 10)).rejects.toThrow(RangeError); // 14 bytes in UTF-8
    expect((await b.publish('a', { data: '1234567890' }, 10)).data).toBe('1234567890');
  });
});

describe('catch-up', () => {
  test('CLIENT KILL TYPE pubsub while publishing: every acknowledged event arrives exactly once, in order', async () => {
    const s = await server();
    const admin = client(s.url);
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p });
    const sub = broker({ url: s.url, prefix: p });
    const channels = ['k0', 'k1', 'k2'];
    const rec = new Recorder();
    const only1 = new Recorder();
    for (const c of channels) await sub.subscribe(c, rec);
    await sub.subscribe('k1', only1);
    const acked: BrokerEvent[] = [];
    let kills = 0;
    let killDue = false;
    for (let i = 0; i < 300; i++) {
      if (i % 30 === 15) killDue = true;
      // kill only a connection that is up again (else there is nothing to kill)
      if (killDue && sub.stats().subscribed === 3) {
        kills += Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
        killDue = false;
      }
      acked.push(await pub.publish(channels[i % 3]!, { data: 'd' + i, event: i % 2 ? 'odd' : undefined }, 1000));
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(kills).toBeGreaterThanOrEqual(5);
    await rec.until(allOf(rec, acked), 'every acknowledged event');
    await only1.until(
      allOf(
        only1,
        acked.filter((e) => e.channel === 'k1'),
      ),
      'every k1 event',
    );
    // fence: a last event, so late duplicates (if any) would be in by now
    const last = await pub.publish('k0', { data: 'last' }, 1000);
    await rec.has(last.id);
    expectExactlyOnceInOrder(rec, [...acked, last]);
    expect(rec.events).toHaveLength(acked.length + 1);
    expectExactlyOnceInOrder(
      only1,
      acked.filter((e) => e.channel === 'k1'),
    );
    expect(only1.events.every((e) => e.channel === 'k1')).toBe(true);
    expect(rec.resets).toEqual([]);
    expect(sub.stats().recoveries).toBeGreaterThanOrEqual(1);
    expect(await pubsubClients(admin)).toHaveLength(1);
  });

  test('restart with appendonly yes while publishing: nothing acknowledged is lost, same epoch', async () => {
    let s = await server({ appendonly: true });
    const { port, dir } = s;
    removeAfter(dir);
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const sub = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const rec = new Recorder();
    await sub.subscribe('a', rec);
    await sub.subscribe('b', rec);
    const acked: BrokerEvent[] = [];
    let failed = 0;
    let restart: Promise<void> | undefined;
    for (let i = 0; i < 200; i++) {
      if (i === 60) {
        restart = (async () => {
          await s.stop({ keepDir: true });
          untrack(s);
          s = await server({ port, dir, appendonly: true });
        })();
      }
      try {
        acked.push(await pub.publish(i % 2 ? 'a' : 'b', { data: String(i) }, 1000));
      } catch (err) {
        expect((err as SseRelayError).code).toBe('ERR_BROKER_UNAVAILABLE');
        failed++;
      }
      if (i >= 60 && i < 120) await new Promise((r) => setTimeout(r, 10)); // keep publishing across the restart
    }
    await restart;
    const last = await pub.publish('a', { data: 'last' }, 1000);
    acked.push(last);
    await rec.until(allOf(rec, acked), 'every acknowledged event');
    expectExactlyOnceInOrder(rec, acked);
    expect(rec.resets).toEqual([]);
    expect(new Set(acked.map((e) => e.epoch)).size).toBe(1);
    expect(acked.length + failed).toBe(201);
    expect(acked.length).toBeGreaterThan(100);
    // the history survived too
    const r = await sub.replay(['a', 'b'], at(acked[0]!.seq - 1));
    expect(r.complete).toBe(true);
    const ids = new Set(r.events.map((e) => e.id));
    expect(acked.filter((e) => !ids.has(e.id))).toEqual([]);
  });

  test('restart WITHOUT persistence: listeners get onReset in the new epoch, then live events', async () => {
    let s = await server();
    const { port } = s;
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const sub = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const rec = new Recorder();
    const recB = new Recorder();
    await sub.subscribe('a', rec);
    await sub.subscribe('b', recB);
    const before: BrokerEvent[] = [];
    for (let i = 0; i < 5; i++) before.push(await pub.publish('a', { data: 'old' + i }, 100));
    await rec.until(allOf(rec, before), 'events before the restart');
    const oldEpoch = before[0]!.epoch;

    await s.stop();
    untrack(s);
    s = await server({ port });

    await rec.until(() => rec.resets.length > 0, 'onReset on a');
    await recB.until(() => recB.resets.length > 0, 'onReset on b');
    expect(rec.resets).toHaveLength(1);
    expect(rec.resets[0]!.channel).toBe('a');
    expect(rec.resets[0]!.head.epoch).not.toBe(oldEpoch);
    expect(recB.resets[0]!.head.epoch).toBe(rec.resets[0]!.head.epoch);

    const after: BrokerEvent[] = [];
    for (let i = 0; i < 20 && after.length < 5; i++) {
      try {
        after.push(await pub.publish('a', { data: 'new' + i }, 100));
      } catch (err) {
        expect((err as SseRelayError).code).toBe('ERR_BROKER_UNAVAILABLE'); // its connection still coming back
      }
    }
    expect(after).toHaveLength(5);
    await rec.until(allOf(rec, after), 'events after the restart');
    const newEpoch = rec.resets[0]!.head.epoch;
    expect(after.every((e) => e.epoch === newEpoch)).toBe(true);
    expect(rec.events.slice(0, 5)).toEqual(before);
    const later = rec.events.slice(5);
    expect(later.map((e) => e.id)).toEqual(after.map((e) => e.id));
    expect(later.every((e) => e.seq > rec.resets[0]!.head.seq)).toBe(true);
    expect(sub.stats().resets).toBe(2);
  });

  test('the data vanishing under a live connection (keys deleted) is a reset too, then catch-up in the new epoch', async () => {
    const s = await server();
    const admin = client(s.url);
    const p = prefix();
    const b = broker({ url: s.url, prefix: p });
    const rec = new Recorder();
    await b.subscribe('a', rec);
    const first = await b.publish('a', { data: '1' }, 10);
    await rec.has(first.id);
    await admin.flushall();
    const fresh = await b.publish('a', { data: '2' }, 10);
    expect(fresh.epoch).not.toBe(first.epoch);
    await rec.has(fresh.id);
    expect(rec.resets).toEqual([{ channel: 'a', head: { partition: 0, epoch: fresh.epoch, seq: 0 } }]);
    expect(rec.ids()).toEqual([first.id, fresh.id]);
  });

  test('history trimmed while disconnected: that channel gets onReset where its kept history begins, then what is kept; the others catch up', async () => {
    const s = await server();
    const admin = client(s.url);
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p });
    // The subscriber reconnects only after 500 ms: time to publish more than history meanwhile.
    const slow = client(s.url, { retryStrategy: () => 500 });
    const sub = broker({ redis: slow, prefix: p });
    const recA = new Recorder();
    const recB = new Recorder();
    await sub.subscribe('a', recA);
    await sub.subscribe('b', recB);
    const a0 = await pub.publish('a', { data: 'a0' }, 3);
    await recA.has(a0.id);
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    const burst = await Promise.all([
      ...Array.from({ length: 6 }, (_, i) => pub.publish('a', { data: 'a' + (i + 1) }, 3)),
      ...Array.from({ length: 2 }, (_, i) => pub.publish('b', { data: 'b' + i }, 3)),
    ]);
    const as = burst.filter((e) => e.channel === 'a').sort((x, y) => x.seq - y.seq);
    const kept = as.slice(-3); // history 3: what is kept of 'a' begins after its 4th newest event
    await recA.until(allOf(recA, kept), 'onReset on a, then what is kept');
    const bEvents = burst.filter((e) => e.channel === 'b');
    await recB.until(allOf(recB, bEvents), 'b caught up');
    expect(recA.resets).toEqual([
      { channel: 'a', head: { partition: 0, epoch: a0.epoch, seq: as[as.length - 4]!.seq } },
    ]);
    expect(recA.ids()).toEqual([a0.id, ...kept.map((e) => e.id)]); // nothing older than what is kept
    expect(recB.resets).toEqual([]);
    expect(recB.ids()).toEqual(bEvents.map((e) => e.id));
    const next = await pub.publish('a', { data: 'next' }, 3);
    await recA.has(next.id);
    expect(recA.ids()).toEqual([a0.id, ...kept.map((e) => e.id), next.id]);
  });
});

describe('history deleted from outside (DEL by an operator, eviction)', () => {
  test('a channel whose stream is gone: a resume over it is incomplete, not an empty success; other channels unaffected', async () => {
    const p = prefix();
    const b = broker({ url: process.env.REDIS_URL!, prefix: p });
    const admin = client(process.env.REDIS_URL!);
    const a: BrokerEvent[] = [];
    for (let i = 0; i < 5; i++) a.push(await b.publish('a', { data: `a${i}` }, 100));
    const other = await b.publish('other', { data: 'o' }, 100);
    expect(await admin.del(topic(p, 'a'))).toBe(1);
    const r = await b.replay(['a'], at(a[2]!.seq));
    expect(r.complete).toBe(false);
    expect(r.events).toEqual([]);
    // a reader that has everything up to the head missed nothing
    expect(await b.replay(['a'], at(other.seq))).toMatchObject({ complete: true, events: [] });
    expect((await b.replay(['other'], at(a[0]!.seq))).events.map((e) => e.data)).toEqual(['o']);
  });

  test('a stream deleted and written again: what it held before is reported gone; from its new start on, complete', async () => {
    const p = prefix();
    const b = broker({ url: process.env.REDIS_URL!, prefix: p });
    const admin = client(process.env.REDIS_URL!);
    const before: BrokerEvent[] = [];
    for (let i = 0; i < 5; i++) before.push(await b.publish('a', { data: `a${i}` }, 100));
    await admin.del(topic(p, 'a'));
    const after = await Promise.all([0, 1].map((i) => b.publish('a', { data: `new${i}` }, 100))); // one call
    expect((await b.replay(['a'], at(before[2]!.seq))).complete).toBe(false);
    // the new start: the seq before the first event written again (here a4's, so a4's reader missed nothing)
    expect(after[0]!.seq - 1).toBe(before[4]!.seq);
    const r = await b.replay(['a'], at(before[4]!.seq));
    expect(r.complete).toBe(true);
    expect(r.events.map((e) => e.data)).toEqual(['new0', 'new1']);
    expect((await b.replay(['a'], at(before[3]!.seq))).complete).toBe(false);
  });

  test('a new channel is not a deleted one: a resume from before its first event is complete', async () => {
    const p = prefix();
    const b = broker({ url: process.env.REDIS_URL!, prefix: p });
    const early = await b.publish('old', { data: 'x' }, 100);
    await b.publish('old', { data: 'y' }, 100);
    const first = await b.publish('fresh', { data: 'f0' }, 100);
    await b.publish('fresh', { data: 'f1' }, 100);
    const r = await b.replay(['fresh', 'old'], at(early.seq));
    expect(r.complete).toBe(true);
    expect(r.events.map((e) => e.data)).toEqual(['y', 'f0', 'f1']);
    expect(first.seq).toBe(early.seq + 2);
  });

  test('a channel moved to history 0 keeps its exact mark, not a reset for every resume', async () => {
    const p = prefix();
    const b = broker({ url: process.env.REDIS_URL!, prefix: p });
    await b.publish('h', { data: 'kept' }, 10);
    const last = await b.publish('h', { data: 'none kept' }, 0);
    const later = await b.publish('elsewhere', { data: 'z' }, 10);
    expect(await b.replay(['h'], at(last.seq))).toMatchObject({ complete: true, events: [] });
    expect((await b.replay(['h'], at(last.seq - 1))).complete).toBe(false);
    expect(later.seq).toBe(last.seq + 1);
  });
});

describe('fence', () => {
  test('a client-presented position ahead of the head starts a new epoch once per partition per connection, not on every made-up id', async () => {
    const b = broker({ url: process.env.REDIS_URL!, prefix: prefix() });
    await b.publish('f', { data: 'x' }, 10);
    const epochOf = async (): Promise<string> => (await b.replay(['f'], undefined)).heads.get(0)!.epoch;
    const first = await epochOf();
    await b.fence({ partition: 0, epoch: first, seq: 100 });
    const second = await epochOf();
    expect(second).not.toBe(first); // history rewound behind a position we issued: nothing before it is vouched for
    await b.fence({ partition: 0, epoch: second, seq: 100 }); // a second claim on the same connection
    expect(await epochOf()).toBe(second);
  });
});

describe('validation', () => {
  test('garbage published to our channel is dropped and counted', async () => {
    const admin = client(process.env.REDIS_URL!);
    const p = prefix();
    const b = broker({ url: process.env.REDIS_URL!, prefix: p });
    const rec = new Recorder();
    await b.subscribe('v', rec);
    const garbage = [
      'no newlines',
      '',
      'epoch_1\n1\n-\n-', // four fields, no data separator
      'bad epoch!\n1\n-\n-\nx',
      'x'.repeat(33) + '\n1\n-\n-\nx',
      'epoch_1\n0\n-\n-\nx',
      'epoch_1\n01\n-\n-\nx',
      'epoch_1\n1e3\n-\n-\nx',
      'epoch_1\n-1\n-\n-\nx',
      'epoch_1\n99999999999999999\n-\n-\nx',
      'epoch_1\n1\nevent\n-\nx', // event field without '='
      'epoch_1\n1\n-\n=\nx', // empty coalesce key
      'epoch_1\n1\n-\nkey\nx',
    ];
    for (const g of garbage) await admin.call('SPUBLISH', topic(p, 'v'), g);
    const real = await b.publish('v', { data: 'real' }, 10);
    await rec.has(real.id);
    expect(rec.events).toEqual([real]);
    expect(b.stats().invalid).toBe(garbage.length);
    // a forged message in the past of what was delivered is never delivered backwards
    await admin.call('SPUBLISH', topic(p, 'v'), `${real.epoch}\n${real.seq}\n-\n-\nreplayed`);
    const real2 = await b.publish('v', { data: 'real2' }, 10);
    await rec.has(real2.id);
    expect(rec.events).toEqual([real, real2]);
    expect(b.stats().duplicates).toBe(1);
  });

  test('garbage in a history stream is skipped; a foreign stream is replaced without a silent gap', async () => {
    const admin = client(process.env.REDIS_URL!);
    const p = prefix();
    const b = broker({ url: process.env.REDIS_URL!, prefix: p });
    const e1 = await b.publish('h', { data: '1' }, 10);
    const before = at(e1.seq - 1);
    await admin.xadd(topic(p, 'h'), `${e1.seq}-5`, 'd', 'not ours'); // id not <seq>-0
    await admin.xadd(topic(p, 'h'), `${e1.seq + 1000}-0`, 'nodata', 'x'); // no data field, beyond the head
    const r = await b.replay(['h'], before);
    expect(r).toEqual({
      complete: true,
      events: [e1],
      heads: new Map([[0, { epoch: e1.epoch, seq: e1.seq }]]),
      bases: new Map([[0, 0]]),
      floors: new Map([[0, 0]]), // nothing trimmed: its kept history begins with the epoch
    });
    expect(b.stats().invalid).toBe(2);
    // the next publish cannot append behind the forged id: the stream starts again and says so
    const e2 = await b.publish('h', { data: '2' }, 10);
    expect((await b.replay(['h'], before)).complete).toBe(false);
    expect(await b.replay(['h'], at(e2.seq - 1))).toEqual({
      complete: true,
      events: [e2],
      heads: new Map([[0, { epoch: e2.epoch, seq: e2.seq }]]),
      bases: new Map([[0, 0]]),
      floors: new Map([[0, e2.seq - 1]]), // the stream started again at e2: nothing before it is kept
    });
    // a key of another type under our name is replaced the same way
    await admin.set(topic(p, 't'), 'a string');
    const t = await b.publish('t', { data: 't' }, 10);
    expect((await b.replay(['t'], at(t.seq - 1))).events).toEqual([t]);
  });

  test('a corrupt epoch in Redis is an error, never an id', async () => {
    const admin = client(process.env.REDIS_URL!);
    const p = prefix();
    const b = broker({ url: process.env.REDIS_URL!, prefix: p });
    await admin.hset(p + '{0}', 'e', 'not a valid epoch!', 's', '3');
    const err = await expectCode(b.publish('x', { data: 'x' }, 10), 'ERR_BROKER_UNAVAILABLE');
    expect(err.message).toMatch(/invalid epoch/);
    await expectCode(b.replay(['x'], undefined), 'ERR_BROKER_UNAVAILABLE');
  });
});

describe('Redis unreachable', () => {
  test('publish, subscribe and replay reject with ERR_BROKER_UNAVAILABLE when nothing listens', async () => {
    const port = await freePort();
    const b = broker({ url: `redis://127.0.0.1:${port}`, prefix: prefix(), commandTimeout: 300 });
    const err = await expectCode(b.publish('a', { data: 'x' }, 10), 'ERR_BROKER_UNAVAILABLE');
    expect(err.message).toMatch(/Redis is unavailable/);
    await expectCode(b.subscribe('a', new Recorder()), 'ERR_BROKER_UNAVAILABLE');
    await expectCode(b.replay(['a'], undefined), 'ERR_BROKER_UNAVAILABLE');
    expect(b.stats()).toMatchObject({ subscribed: 0, listeners: 0 });
    await b.close();
    await expectCode(b.publish('a', { data: 'x' }, 10), 'ERR_BROKER_CLOSED');
  });

  test('Redis going down: operations reject; once it is back they work again and listeners resume', async () => {
    let s = await server();
    const { port } = s;
    const p = prefix();
    const b = broker({ url: s.url, prefix: p, commandTimeout: 300 });
    const rec = new Recorder();
    await b.subscribe('a', rec);
    const e1 = await b.publish('a', { data: '1' }, 10);
    await rec.has(e1.id);

    await s.stop();
    untrack(s);
    await expectCode(b.publish('a', { data: 'lost' }, 10), 'ERR_BROKER_UNAVAILABLE');
    await expectCode(b.subscribe('other', new Recorder()), 'ERR_BROKER_UNAVAILABLE');
    await expectCode(b.replay(['a'], at(0)), 'ERR_BROKER_UNAVAILABLE');
    expect(b.stats().listeners).toBe(1); // the failed subscribe left nothing behind

    s = await server({ port });
    // while the restarted server is not accepting yet, publishes fail fast: retry (bounded)
    let e2: BrokerEvent | undefined;
    const until = Date.now() + 10_000;
    while (e2 === undefined && Date.now() < until) {
      e2 = await b.publish('a', { data: '2' }, 10).catch(() => undefined);
      if (e2 === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    expect(e2).toBeDefined();
    await rec.has(e2!.id);
    expect(rec.resets.map((r) => r.head.epoch)).toEqual([e2!.epoch]); // a new, empty Redis: a new epoch
  });

  test('close() while Redis is down returns and leaves nothing open', async () => {
    const s = await server();
    const b = broker({ url: s.url, prefix: prefix(), commandTimeout: 300 });
    await b.subscribe('a', new Recorder());
    await s.stop();
    untrack(s);
    const pending = b.subscribe('b', new Recorder()).catch((e: unknown) => e);
    await b.close();
    expect(((await pending) as SseRelayError).code).toMatch(/^ERR_BROKER_(CLOSED|UNAVAILABLE)$/);
  });
});

describe('a Redis user with only the permissions the README lists', () => {
  test('publish, subscribe, replay, recover and the eviction check all work under that ACL; a missing permission is an error, not a hang', async () => {
    const p = `acl${process.pid}:`;
    const user = `sse-relay-${process.pid}`;
    const admin = client(process.env.REDIS_URL!);
    const rules = README_ACL.replace(/sse-relay:\*/g, `${p}*`).split(' ');
    await admin.call('ACL', 'SETUSER', user, 'reset', 'on', '>secret', ...rules);
    try {
      const url = process.env.REDIS_URL!.replace('redis://', `redis://${user}:secret@`);
      const warnings = watchWarnings();
      const b = broker({ url, prefix: p, commandTimeout: 2000 });
      const rec = new Recorder();
      await b.subscribe('a', rec);
      const e1 = await b.publish('a', { data: 'one', event: 'e', coalesce: 'k' }, 10);
      const e2 = await b.publish('a', { data: 'two', idempotencyKey: 'x' }, 10);
      await rec.has(e2.id);
      expect(rec.events.map((e) => e.data)).toEqual(['one', 'two']);
      expect((await b.replay(['a'], at(0))).events.map((e) => e.id)).toEqual([e1.id, e2.id]);
      // a reconnect: the library is loaded again and the listener catches up
      await admin.call('CLIENT', 'KILL', 'USER', user);
      const e3 = await b.publish('a', { data: 'three' }, 10).catch(async () => b.publish('a', { data: 'three' }, 10));
      await rec.has(e3.id);
      expect(warnings.withCode('SSE_RELAY_EVICTION_POLICY')).toEqual([]);
      warnings.restore();
      // another language's publisher with the same user: the public function, and what it runs
      const other = client(url);
      const [epoch, seq] = (await other.call('FCALL', 'sse_relay_publish_v1', '1', b.keyOf('a'), 'four')) as string[];
      await rec.has(`${epoch}.${seq}`);
      expect(rec.events.at(-1)!.data).toBe('four');
      // without one of them (XADD): the publish is refused with Redis' reason
      await admin.call('ACL', 'SETUSER', user, '-xadd');
      const err = await b.publish('a', { data: 'five' }, 10).then(
        () => undefined,
        (e: unknown) => e as SseRelayError,
      );
      expect(err).toMatchObject({ code: 'ERR_BROKER_UNAVAILABLE' });
      expect(err!.message).toMatch(/can't run this command/);
      // and the public function without EXISTS: Redis' reason too, not a "moving" TRYAGAIN
      await admin.call('ACL', 'SETUSER', user, '+xadd', '-exists');
      await expect(other.call('FCALL', 'sse_relay_publish_v1', '1', b.keyOf('a'), 'six')).rejects.toThrow(
        /^ERR The user executing the script can't run this command/,
      );
    } finally {
      await admin.call('ACL', 'DELUSER', user);
    }
  });
});

describe("Redis' eviction policy", () => {
  test('a Redis that may evict (allkeys-lru) gets one process warning naming it, not one per reconnect; noeviction none', async () => {
    const warnings = watchWarnings();
    try {
      const safe = broker({ url: process.env.REDIS_URL!, prefix: prefix() });
      await safe.publish('a', { data: 'x' }, 10);
      const s = await server({ args: ['--maxmemory-policy', 'allkeys-lru'] });
      const b = broker({ url: s.url, prefix: prefix(), commandTimeout: 1000 });
      await b.publish('a', { data: 'x' }, 10);
      await until(() => warnings.withCode('SSE_RELAY_EVICTION_POLICY').length > 0, 'the warning');
      // a reconnect loads the library again, but does not say it again
      await client(s.url).call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      await until(
        async () => (await b.publish('a', { data: 'y' }, 10).catch(() => undefined)) !== undefined,
        'publishing again',
      );
      await sleep(50);
      const ours = warnings.withCode('SSE_RELAY_EVICTION_POLICY');
      expect(ours).toHaveLength(1);
      expect(ours[0]!.message).toContain(`127.0.0.1:${s.port} has allkeys-lru`);
      expect(ours[0]!.message).not.toContain(process.env.REDIS_URL!.replace('redis://', ''));
      expect(ours[0]!.message).toMatch(/Set maxmemory-policy noeviction/);
    } finally {
      warnings.restore();
    }
  });
});

describe('load', () => {
  test('1,000 publishes in flight before the connection: all acknowledged in order, no listener per waiting publish, one epoch', async () => {
    const b = broker({ url: process.env.REDIS_URL!, prefix: prefix() });
    const peak = peakListeners(commandClient(b));
    const events = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => b.publish('load', { data: String(i) }, 2000)),
    );
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => events[0]!.seq + i));
    expect(new Set(events.map((e) => e.epoch)).size).toBe(1);
    expect(peak()).toBeLessThanOrEqual(5); // Node warns of a leak past 10
  });
});
