/**
 * RedisBroker under real faults, each on a redis-server of its own: Redis
 * rewinding to an older snapshot (also written past the lost positions by a
 * writer that never saw them), Redis restarted without persistence and then a
 * catch-up in its new epoch, a replica promoted behind its master and
 * written first by a broker that never saw the lost writes, a half-open
 * subscriber connection, a
 * half-open command connection, a frozen
 * or paused Redis while publishing, a reply lost with its connection (a
 * publish's, a catch-up read's), a forged
 * message far ahead, Redis out of memory, and a Redis that refuses connections. Each test asserts
 * what a user relies on: every acknowledged event exactly once in order, or
 * exactly one reset; a rejected publish never delivered later; bounded time.
 */
import type Redis from 'ioredis';
import type { BrokerEvent } from '../lib/brokers/broker';
import type { RedisBroker } from '../lib/brokers/redis';
import { SseRelayError } from '../lib/errors';
import { Recorder } from '../lib/testing';
import { redisFixtures } from './helpers/redis-fixtures';
import { freePort, type RedisServer } from './helpers/redis-server';
import { sleep, until } from './helpers/wait';
import { commandClient, peakListeners } from './helpers/warnings';

jest.setTimeout(60_000);

const { prefix, at, topic, broker, client, client6, server, proxy, untrack } = redisFixtures('rf');

/** `acked` all arrived, each once, in seq order, fields intact (and nothing else but `extra`). */
function expectExactlyOnceInOrder(
  rec: Recorder,
  acked: readonly BrokerEvent[],
  extra: readonly BrokerEvent[] = [],
): void {
  const ids = rec.ids();
  expect(new Set(ids).size).toBe(ids.length);
  for (let i = 1; i < rec.events.length; i++) {
    const [a, b] = [rec.events[i - 1]!, rec.events[i]!];
    if (a.epoch === b.epoch) expect(b.seq).toBeGreaterThan(a.seq);
  }
  const byId = new Map(rec.events.map((e) => [e.id, e]));
  expect(acked.filter((e) => !byId.has(e.id)).map((e) => e.id)).toEqual([]);
  for (const e of acked) expect(byId.get(e.id)).toEqual(e);
  const allowed = new Set([...acked, ...extra].map((e) => e.id));
  expect(rec.events.filter((e) => !allowed.has(e.id)).map((e) => e.data)).toEqual([]);
}

/** A Recorder listening to channels 'a' and 'b' through `b`. */
async function listenAB(b: RedisBroker): Promise<Recorder> {
  const rec = new Recorder();
  await b.subscribe('a', rec);
  await b.subscribe('b', rec);
  return rec;
}

/** Events d<from>..d<to - 1> (or `data(i)`), published by `b` alternately on 'b' and 'a', appended to `acked`. */
async function publishAB(
  b: RedisBroker,
  acked: BrokerEvent[],
  from: number,
  to: number,
  data = (i: number) => 'd' + i,
): Promise<void> {
  for (let i = from; i < to; i++) acked.push(await b.publish(i % 2 ? 'a' : 'b', { data: data(i) }, 1000));
}

/**
 * A Redis SAVEd after `saved` published, then killed and restarted from that dump after `lost`
 * published (acknowledged and delivered, then lost with the crash). The listener (on 'a' and
 * 'b', through a proxy) is held off from the restart until `back()`; `fresh` is a new broker on
 * the restarted Redis that never saw the lost positions.
 */
async function crashBehindSnapshot(
  saved: (pub: RedisBroker) => Promise<BrokerEvent[]>,
  lost: (pub: RedisBroker) => Promise<BrokerEvent[]>,
  listener: 'url' | 'ioredis6' = 'url',
): Promise<{
  rec: Recorder;
  sub: RedisBroker;
  fresh: RedisBroker;
  saved: BrokerEvent[];
  lost: BrokerEvent[];
  back(): void;
}> {
  let s = await server();
  const { port, dir } = s;
  const px = await proxy(port);
  const p = prefix();
  const pub = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
  const sub =
    listener === 'url'
      ? broker({ url: px.url, prefix: p, commandTimeout: 1000 })
      : broker({ redis: client6(px.url), prefix: p, commandTimeout: 1000 });
  const rec = await listenAB(sub);
  const kept = await saved(pub);
  expect(await client(s.url).call('SAVE')).toBe('OK');
  const gone = await lost(pub);
  await rec.until(hasAll(rec, [...kept, ...gone]), 'everything before the crash');
  px.retarget(await freePort());
  await s.kill();
  untrack(s);
  s = await server({ port, dir });
  const fresh = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
  return { rec, sub, fresh, saved: kept, lost: gone, back: () => px.retarget(port) };
}

const hasAll = (rec: Recorder, acked: readonly BrokerEvent[]) => (): boolean => {
  const got = new Set(rec.ids());
  return acked.every((e) => got.has(e.id));
};

describe('Redis rewinds to an older snapshot (SAVE, more publishes, SIGKILL, restart from the dump)', () => {
  test('a live listener gets every acknowledged event, exactly one reset, then every event published after the restart', async () => {
    let s = await server();
    const { port, dir } = s;
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const sub = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const rec = new Recorder();
    const rec3 = new Recorder();
    await sub.subscribe('a', rec);
    for (const c of ['a', 'b', 'c']) await sub.subscribe(c, rec3);
    const before: BrokerEvent[] = [];
    for (let i = 0; i < 100; i++) before.push(await pub.publish(['a', 'b', 'c'][i % 3]!, { data: 'saved' + i }, 1000));
    const admin = client(s.url);
    expect(await admin.call('SAVE')).toBe('OK');
    for (let i = 0; i < 100; i++) before.push(await pub.publish(['a', 'b', 'c'][i % 3]!, { data: 'lost' + i }, 1000));
    await rec3.until(hasAll(rec3, before), 'everything before the crash');
    const lastBefore = before[before.length - 1]!;
    await s.kill();
    untrack(s);
    s = await server({ port, dir });

    const after: BrokerEvent[] = [];
    const deadline = Date.now() + 15_000;
    while (after.length < 150 && Date.now() < deadline) {
      try {
        after.push(await pub.publish(['a', 'b', 'c'][after.length % 3]!, { data: 'new' + after.length }, 1000));
      } catch (err) {
        expect((err as SseRelayError).code).toBe('ERR_BROKER_UNAVAILABLE');
        await sleep(20);
      }
    }
    expect(after).toHaveLength(150);
    expect(after.every((e) => e.epoch !== lastBefore.epoch)).toBe(true); // the rewind started a new epoch
    expect(after[0]!.seq).toBe(101); // Redis' own (rewound) counter, in the new epoch
    await rec3.until(hasAll(rec3, after), 'every event after the restart (3 channels)');
    await rec.until(
      hasAll(
        rec,
        after.filter((e) => e.channel === 'a'),
      ),
      'every event after the restart (a)',
    );
    expect(rec3.resets.map((r) => r.channel).sort()).toEqual(['a', 'b', 'c']);
    expect(rec.resets).toHaveLength(1);
    expect(rec.resets[0]!.head).toEqual({ partition: 0, epoch: after[0]!.epoch, seq: 100 });
    expectExactlyOnceInOrder(rec3, [...before, ...after]);
    expect(rec3.events).toHaveLength(350);
    expectExactlyOnceInOrder(
      rec,
      [...before, ...after].filter((e) => e.channel === 'a'),
    );
    // a client resuming from the last id before the crash: its epoch is no longer the head's (the hub resets it)
    const r = await sub.replay(['a', 'b', 'c'], at(lastBefore.seq));
    expect(r.heads.get(0)!.epoch).toBe(after[0]!.epoch);
    expect(r.heads.get(0)!.epoch === lastBefore.epoch).toBe(false);
  });

  test.each<[string, (i: number) => string, 'url' | 'ioredis6']>([
    ['short events', (i) => 'd' + i, 'url'],
    ['70 KiB events that differ in one character', (i) => `d${i}`.padEnd(70 * 1024, '.'), 'url'],
    ["short events, the listener on the caller's ioredis 6 client (RESP3)", (i) => 'd' + i, 'ioredis6'],
  ])(
    'a writer that never saw the lost events writes past them before the listener is back: the positions it delivered name other events; one reset, then live (%s)',
    async (_kind, data, listener) => {
      const ab = (from: number, to: number) => async (b: RedisBroker) => {
        const out: BrokerEvent[] = [];
        await publishAB(b, out, from, to, data);
        return out;
      };
      const { rec, sub, fresh, saved, lost, back } = await crashBehindSnapshot(ab(0, 10), ab(10, 13), listener);
      // A writer that never saw seqs 11..13 (a new process, or another language's FCALL) writes
      // past them: the head is beyond every position the listener had, so no floor shows it.
      const reused: BrokerEvent[] = [];
      await publishAB(fresh, reused, 100, 106, data);
      expect(reused.slice(0, 3).map((e) => [e.epoch, e.seq])).toEqual(lost.map((e) => [e.epoch, e.seq]));
      back();
      await rec.until(() => rec.resets.length === 2, 'the listener back, with one reset per channel', 15_000);
      expect(sub.stats().reused).toBe(1);
      const after: BrokerEvent[] = [];
      await publishAB(fresh, after, 200, 204, data);
      await rec.until(hasAll(rec, after), 'the events published after the reset');
      const head = { partition: 0, epoch: after[0]!.epoch, seq: reused.at(-1)!.seq };
      expect(rec.resets.map((r) => [r.channel, r.head])).toEqual([
        ['a', head],
        ['b', head],
      ]);
      expect(head.epoch === lost[0]!.epoch).toBe(false); // a new numbering: the old ids resume nowhere
      // the reused positions are behind the reset (the page refetches its state); nothing else came
      expectExactlyOnceInOrder(rec, [...saved, ...lost, ...after]);
      const resume = await fresh.replay(['a', 'b'], at(lost.at(-1)!.seq));
      expect(resume.heads.get(0)!.epoch).toBe(head.epoch);
    },
  );

  test("the lost events were a channel's first (nothing of it left, not even B!d's note): the other channel's reused positions are not skipped either", async () => {
    const on = (channel: string, tag: string, n: number) => async (b: RedisBroker) => {
      const out: BrokerEvent[] = [];
      for (let i = 0; i < n; i++) out.push(await b.publish(channel, { data: tag + i }, 1000));
      return out;
    };
    // 'a' has its first events after the snapshot
    const { rec, fresh, saved, lost, back } = await crashBehindSnapshot(on('b', 'b', 5), on('a', 'a', 3));
    const reused: BrokerEvent[] = [];
    for (let i = 0; i < 5; i++) reused.push(await fresh.publish('b', { data: 'B' + i }, 1000));
    expect(reused[0]!.seq).toBe(lost[0]!.seq);
    back();
    // 'b's listener had seen the partition up to the last 'a' event: without the check it would
    // take b's reused seqs as delivered and skip them
    await rec.until(() => rec.resets.length === 2, 'the listener back, with one reset per channel', 15_000);
    const after = [await fresh.publish('b', { data: 'after' }, 1000)];
    await rec.has(after[0]!.id);
    expect(rec.resets.map((r) => r.head)).toEqual([
      { partition: 0, epoch: after[0]!.epoch, seq: reused.at(-1)!.seq },
      { partition: 0, epoch: after[0]!.epoch, seq: reused.at(-1)!.seq },
    ]);
    expectExactlyOnceInOrder(rec, [...saved, ...lost, ...after]);
  });

  test("the listener's streams left before the crash and come back to the same broker after a writer reused the lost seqs: the positions it delivered are checked before it subscribes again; one new epoch, so the resume is not vouched for", async () => {
    let s = await server();
    const { port, dir } = s;
    const px = await proxy(port);
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const sub = broker({ url: px.url, prefix: p, commandTimeout: 1000 });
    const rec = await listenAB(sub);
    const saved: BrokerEvent[] = [];
    await publishAB(pub, saved, 0, 10);
    expect(await client(s.url).call('SAVE')).toBe('OK');
    const lost: BrokerEvent[] = [];
    await publishAB(pub, lost, 10, 13);
    await rec.until(hasAll(rec, [...saved, ...lost]), 'everything before the crash');
    // the client goes away: nothing of the partition is subscribed while Redis is away
    await sub.unsubscribe('a', rec);
    await sub.unsubscribe('b', rec);
    await until(() => sub.stats().subscribed === 0, 'the listener gone');
    px.retarget(await freePort());
    await s.kill();
    untrack(s);
    s = await server({ port, dir });
    const fresh = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const reused: BrokerEvent[] = [];
    await publishAB(fresh, reused, 100, 106);
    expect(reused.slice(0, 3).map((e) => [e.epoch, e.seq])).toEqual(lost.map((e) => [e.epoch, e.seq]));
    px.retarget(port);
    // the client comes back to the same process, resuming after the last event it saw
    const back = await listenAB(sub);
    const resume = await sub.replay(['a', 'b'], at(lost.at(-1)!.seq));
    expect(resume.heads.get(0)!.epoch === lost[0]!.epoch).toBe(false); // the hub resets it, not a silent gap
    expect(resume.heads.get(0)!.seq).toBe(reused.at(-1)!.seq);
    expect(sub.stats().reused).toBe(1);
    // live again, from the new numbering, with no reset for the streams that just subscribed
    const after: BrokerEvent[] = [];
    await publishAB(fresh, after, 200, 204);
    await back.until(hasAll(back, after), 'the events published after');
    expect(after[0]!.epoch).toBe(resume.heads.get(0)!.epoch);
    expect(back.resets).toEqual([]);
    expectExactlyOnceInOrder(back, after);
  });

  test('a broker whose streams on the partition all left before Redis restarted empty: the next stream there gets live events only, no reset and no history from before it subscribed', async () => {
    let s = await server();
    const { port } = s;
    const p = prefix();
    const idle = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const gone = new Recorder();
    await idle.subscribe('a', gone);
    for (let i = 0; i < 5; i++) await idle.publish('a', { data: 'old' + i }, 100);
    await gone.until(() => gone.events.length === 5, 'the first stream');
    await idle.unsubscribe('a', gone);
    await until(() => idle.stats().subscribed === 0, 'nothing subscribed');
    await s.kill();
    untrack(s);
    s = await server({ port }); // no persistence: a new epoch
    const other = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const meanwhile: BrokerEvent[] = [];
    for (let i = 0; i < 30; i++) meanwhile.push(await other.publish('a', { data: 'new' + i }, 100));
    const next = new Recorder();
    await idle.subscribe('a', next);
    const live = await other.publish('a', { data: 'live' }, 100);
    await next.has(live.id);
    expect(next.resets).toEqual([]);
    expect(next.events.map((e) => e.data)).toEqual(['live']);
    // and a resume from an id of the new epoch is complete there
    const r = await idle.replay(['a'], at(meanwhile[19]!.seq));
    expect(r.heads.get(0)!.epoch).toBe(live.epoch);
    expect(r.events.map((e) => e.data)).toEqual([...meanwhile.slice(20).map((e) => e.data), 'live']);
  });

  test('a resuming client nobody else saw: the id is ahead of the head in the same epoch, fence() starts a new epoch', async () => {
    let s = await server();
    const { port, dir } = s;
    const p = prefix();
    const first = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const evs: BrokerEvent[] = [];
    for (let i = 0; i < 10; i++) evs.push(await first.publish('a', { data: String(i) }, 100));
    await client(s.url).call('SAVE');
    for (let i = 10; i < 20; i++) evs.push(await first.publish('a', { data: String(i) }, 100));
    await first.close();
    await s.kill();
    untrack(s);
    s = await server({ port, dir });
    // a new process: it never saw seq 20
    const fresh = broker({ url: s.url, prefix: p });
    const seen = evs[evs.length - 1]!;
    const r = await fresh.replay(['a'], at(seen.seq));
    expect(r.heads.get(0)).toEqual({ epoch: seen.epoch, seq: 10 });
    expect(r.complete).toBe(false); // the id is from the future of what Redis holds
    await fresh.fence({ partition: 0, epoch: seen.epoch, seq: seen.seq });
    const head = (await fresh.replay(['a'], undefined)).heads.get(0)!;
    expect(head.epoch === seen.epoch).toBe(false);
    expect(head.seq).toBe(10);
    // and a client of the old epoch at an older position is not vouched for either (other epoch)
    const old = await fresh.replay(['a'], at(evs[4]!.seq));
    expect(old.heads.get(0)!.epoch).toBe(head.epoch);
    // the fence is idempotent: the same id again changes nothing
    await fresh.fence({ partition: 0, epoch: seen.epoch, seq: seen.seq });
    expect((await fresh.replay(['a'], undefined)).heads.get(0)).toEqual(head);
  });
});

describe('Redis restarted without persistence, then a catch-up in its new epoch', () => {
  test('the catch-up reads the new epoch from what the listener has of it, not from the position its channels had in the old numbering: no silent gap', async () => {
    let s = await server();
    const { port } = s;
    const px = await proxy(port);
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const sub = broker({ url: px.url, prefix: p, commandTimeout: 1000 });
    const rec = await listenAB(sub);
    const caughtUp = async (what: string): Promise<void> => {
      const recoveries = sub.stats().recoveries;
      px.find('sse-relay:sub')[0]!.cut();
      await until(() => sub.stats().recoveries > recoveries, what);
    };
    const old: BrokerEvent[] = [];
    await publishAB(pub, old, 0, 20);
    await rec.until(hasAll(rec, old), 'the first epoch');
    await caughtUp('a catch-up in the first epoch (its channels are at seq 20 there)');

    // everything lost: the listener gets one reset per channel, then the new epoch's events live
    px.retarget(await freePort());
    await s.kill();
    untrack(s);
    s = await server({ port });
    px.retarget(port);
    await rec.until(() => rec.resets.length === 2, 'one reset per channel');
    await until(() => (commandClient(pub) as unknown as Redis).status === 'ready', 'the publisher reconnected');
    const fresh: BrokerEvent[] = [];
    await publishAB(pub, fresh, 20, 24);
    await rec.until(hasAll(rec, fresh), 'the new epoch live');

    // the listener's connection lost again, held off while 20 more are published (seqs 5..24)
    px.retarget(await freePort());
    px.find('sse-relay:sub')[0]!.cut();
    await publishAB(pub, fresh, 24, 44);
    px.retarget(port);
    await rec.has(fresh[fresh.length - 1]!.id, 10_000); // then nothing may be missing before it
    const head = rec.resets[0]!.head;
    expect(rec.resets.map((r) => [r.channel, r.head])).toEqual([
      [rec.resets[0]!.channel, head],
      [rec.resets[1]!.channel, head],
    ]);
    expect(fresh.every((e) => e.epoch === head.epoch && e.seq > head.seq)).toBe(true);
    expectExactlyOnceInOrder(rec, [...old, ...fresh]);
  });
});

describe('a replica promoted behind its master, then written first by a broker that never saw the lost writes', () => {
  test('the lost seqs are not given out again under the same epoch: one reset, the new events delivered, an id names one event', async () => {
    const m = await server();
    const link = await proxy(m.port); // the replication link, to stall
    const r = await server({ args: ['--replicaof', '127.0.0.1', String(link.port)] });
    const admin = client(r.url);
    await until(
      async () => /master_link_status:up/.test((await admin.info('replication')) as string),
      'the replica in sync',
    );
    // each broker reaches Redis through a proxy of its own, so the test moves them one by one
    const [fa, fb, fw] = [await proxy(m.port), await proxy(m.port), await proxy(m.port)];
    const p = prefix();
    const a = broker({ url: fa.url, prefix: p, commandTimeout: 2000 });
    const b = broker({ url: fb.url, prefix: p, commandTimeout: 2000 });
    const w = broker({ url: fw.url, prefix: p, commandTimeout: 2000, healthCheckInterval: 300 });
    const rec = new Recorder();
    await w.subscribe('c', rec);
    await a.publish('c', { data: 'e0' }, 100);
    const e1 = await b.publish('c', { data: 'e1' }, 100);
    await rec.has(e1.id);
    await until(async () => (await admin.call('XLEN', a.keyOf('c'))) === 2, 'e0 and e1 on the replica');
    for (const c of link.connections) c.stall(); // from here on the replica gets nothing
    const x = await a.publish('c', { data: 'X' }, 100); // acknowledged by the master alone
    await rec.has(x.id);
    // the replica is promoted; A and B move to it, W stays on the old master for now
    await admin.call('REPLICAOF', 'NO', 'ONE');
    for (const px of [fa, fb, fw]) px.retarget(r.port);
    for (const px of [fa, fb]) for (const c of px.connections) c.cut();
    // B never saw X: its floor is e1. Its publish is the first write the promoted replica takes.
    let y: BrokerEvent | undefined;
    for (let i = 0; y === undefined && i < 100; i++)
      y = await b.publish('c', { data: 'Y' }, 100).catch(() => undefined);
    expect(y).toBeDefined();
    expect(y!.id).not.toBe(x.id); // before: both were <epoch>.3, and W dropped Y as a duplicate
    expect(y!.epoch).not.toBe(x.epoch);
    await m.kill(); // W loses the old master and catches up on the promoted replica
    const z = await b.publish('c', { data: 'Z' }, 100);
    await rec.has(z.id, 20_000);
    expect(rec.events.map((e) => e.data)).toEqual(['e0', 'e1', 'X', 'Y', 'Z']);
    expect(rec.resets).toEqual([{ channel: 'c', head: { partition: 0, epoch: y!.epoch, seq: e1.seq } }]);
    // history: X is gone, and the head is in the new epoch (a client holding X's id gets a reset)
    const h = await w.replay(['c'], at(e1.seq)); // the new epoch begins after e1
    expect(h.complete).toBe(true);
    expect(h.events.map((e) => e.data)).toEqual(['Y', 'Z']);
    expect(h.heads.get(0)).toEqual({ epoch: y!.epoch, seq: z.seq });
  });
});

describe('a half-open subscriber connection', () => {
  test('stalled by a proxy (no FIN, no RST): noticed by the health check, reconnected, caught up exactly', async () => {
    const s = await server();
    const px = await proxy(s.port);
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p });
    const sub = broker({ url: px.url, prefix: p, healthCheckInterval: 200 });
    const rec = await listenAB(sub);
    const acked: BrokerEvent[] = [];
    await publishAB(pub, acked, 0, 20);
    await rec.until(hasAll(rec, acked), 'events before the stall');
    const subs = px.find('sse-relay:sub');
    expect(subs).toHaveLength(1);
    subs[0]!.stall();
    for (let i = 20; i < 60; i++) {
      acked.push(await pub.publish(i % 2 ? 'a' : 'b', { data: 'd' + i }, 1000));
      await sleep(5);
    }
    await rec.until(hasAll(rec, acked), 'every event published during the stall', 10_000);
    await until(() => sub.stats().recoveries >= 1, 'a recovery');
    const last = await pub.publish('a', { data: 'last' }, 1000);
    await rec.has(last.id);
    expectExactlyOnceInOrder(rec, [...acked, last]);
    expect(rec.resets).toEqual([]);
    // the stalled one was given up (Redis still sees it: that is what half-open means), one new one is live
    expect(px.find('sse-relay:sub').filter((c) => !c.stalled)).toHaveLength(1);
    expect(sub.stats().connections).toBe(1);
  });

  test('the same listener subscribed again while its first SSUBSCRIBE hangs (a page reloaded): the first call fails, the second goes live and the listener gets what is published', async () => {
    const s = await server();
    const px = await proxy(s.port);
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p });
    const sub = broker({ url: px.url, prefix: p, commandTimeout: 1000, healthCheckInterval: 60_000 });
    await sub.subscribe('warm', new Recorder()); // the subscriber connection is up
    px.find('sse-relay:sub')[0]!.stall();
    const rec = new Recorder();
    const first = sub.subscribe('x', rec).then(
      () => 'live',
      (err: SseRelayError) => err.code,
    );
    await new Promise((r) => setImmediate(r)); // its pass is running (stuck in SSUBSCRIBE): the next one queues
    const second = sub.subscribe('x', rec);
    expect(await first).toBe('ERR_BROKER_UNAVAILABLE');
    await second;
    const ev = await pub.publish('x', { data: 'after' }, 1000);
    await rec.has(ev.id);
    expect(rec.ids()).toEqual([ev.id]);
  });
});

describe('the subscriber connection dropped while a subscribe is under way', () => {
  test('the subscribe goes live on the reconnected connection instead of rejecting at once', async () => {
    const s = await server();
    const px = await proxy(s.port);
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p });
    const sub = broker({ url: px.url, prefix: p, healthCheckInterval: 60_000 });
    await sub.subscribe('warm', new Recorder()); // the subscriber connection is up
    // fence: the pass reads the head (command connection, held) after it saw the subscriber
    // connection ready; the subscriber connection is cut meanwhile, so SSUBSCRIBE meets it closed
    const [cmd] = px.find('sse-relay');
    cmd!.hold();
    const rec = new Recorder();
    const subscribed = sub.subscribe('x', rec).then(
      () => 'live',
      (err: SseRelayError) => `${err.code}: ${err.message}`,
    );
    const [conn] = px.find('sse-relay:sub');
    await until(() => cmd!.holding > 0, 'the head read waiting in the proxy');
    conn!.cut();
    await until(() => conn!.closed, 'the subscriber connection cut');
    cmd!.release();
    expect(await subscribed).toBe('live');
    const ev = await pub.publish('x', { data: 'after' }, 1000);
    await rec.has(ev.id);
    expect(rec.ids()).toEqual([ev.id]);
  });
});

describe('a half-open command connection', () => {
  test('stalled by a proxy while 16 publishers have calls in flight: those fail within commandTimeout, a new connection carries on; nothing failed is stored, every acknowledged event once', async () => {
    const s = await server();
    const px = await proxy(s.port);
    const p = prefix();
    const b = broker({ url: px.url, prefix: p, commandTimeout: 500 });
    const watcher = broker({ url: s.url, prefix: p });
    const rec = await listenAB(watcher);
    const first = await b.publish('a', { data: 'first' }, 10_000);
    await rec.has(first.id);
    const [cmd] = px.find('sse-relay');
    expect(px.find('sse-relay')).toHaveLength(1);
    const acked: BrokerEvent[] = [];
    const failed: { data: string; outcome: string | undefined }[] = [];
    const started = Date.now();
    await Promise.all(
      Array.from({ length: 16 }, async (_, lane) => {
        for (let i = 0; i < 40; i++) {
          const data = `${lane}-${i}`;
          try {
            acked.push(await b.publish(lane % 2 ? 'a' : 'b', { data }, 10_000));
          } catch (err) {
            expect((err as SseRelayError).code).toBe('ERR_BROKER_UNAVAILABLE');
            failed.push({ data, outcome: (err as SseRelayError).outcome });
          }
          if (lane === 0 && i === 10) cmd!.stall(); // lane 0's next publish is certainly caught
        }
      }),
    );
    expect(Date.now() - started).toBeLessThan(20_000); // one commandTimeout, not one per publish
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.length).toBeLessThanOrEqual(16); // only what was in flight when it stalled
    for (const f of failed) expect(['unknown', 'not-published']).toContain(f.outcome);
    expect(cmd!.stalled).toBe(true);
    expect(px.find('sse-relay').filter((c) => !c.stalled && !c.closed)).toHaveLength(1); // a new one
    const last = await b.publish('a', { data: 'last' }, 10_000);
    await rec.has(last.id);
    expectExactlyOnceInOrder(rec, [first, ...acked, last]);
    const stored = (await watcher.replay(['a', 'b'], at(0))).events.map((e) => e.data);
    expect(stored.filter((d) => failed.some((f) => f.data === d))).toEqual([]);
    expect(stored).toHaveLength(acked.length + 2);
  });
});

describe('Redis frozen or paused while two brokers publish', () => {
  const faults: [string, (s: RedisServer, admin: Redis) => Promise<void>][] = [
    [
      'SIGSTOP / SIGCONT',
      async (s) => {
        s.process.kill('SIGSTOP');
        await sleep(1200);
        s.process.kill('SIGCONT');
      },
    ],
    [
      'CLIENT PAUSE',
      async (_s, admin) => {
        await admin.call('CLIENT', 'PAUSE', '1200', 'ALL');
        await sleep(1200);
      },
    ],
    ['DEBUG SLEEP', async (_s, admin) => void (await admin.call('DEBUG', 'SLEEP', '1.2'))],
  ];
  for (const [name, fault] of faults) {
    test(`${name}: acknowledged events exactly once in order on 1- and 3-channel listeners; a not-published one never delivered, an unknown one at most once`, async () => {
      const s = await server({ args: ['--enable-debug-command', 'yes'] });
      const admin = client(s.url);
      const p = prefix();
      const channels = ['x', 'y', 'z'];
      const brokers = [0, 1].map(() =>
        broker({ url: s.url, prefix: p, commandTimeout: 300, healthCheckInterval: 300 }),
      );
      const recs = brokers.map(() => ({ one: new Recorder(), three: new Recorder() }));
      for (let i = 0; i < 2; i++) {
        await brokers[i]!.subscribe('x', recs[i]!.one);
        for (const c of channels) await brokers[i]!.subscribe(c, recs[i]!.three);
      }
      const acked: BrokerEvent[] = [];
      const unknown: string[] = [];
      const notPublished: string[] = [];
      let stop = false;
      const publishers = brokers.map(async (b, bi) => {
        for (let i = 0; !stop && i < 2000; i++) {
          const data = `b${bi}-${i}`;
          try {
            acked.push(await b.publish(channels[i % 3]!, { data }, 1000));
          } catch (err) {
            const e = err as SseRelayError;
            expect(e.code).toBe('ERR_BROKER_UNAVAILABLE');
            (e.outcome === 'unknown' ? unknown : notPublished).push(data);
          }
          await sleep(5);
        }
      });
      await sleep(200);
      await fault(s, admin);
      await sleep(800);
      stop = true;
      await Promise.all(publishers);
      expect(unknown.length + notPublished.length).toBeGreaterThan(0); // the fault was felt
      const last = await brokers[0]!.publish('x', { data: 'last' }, 1000);
      acked.push(last);
      for (const r of recs) {
        await r.three.until(hasAll(r.three, acked), 'every acknowledged event (3 channels)', 15_000);
        await r.one.until(
          hasAll(
            r.one,
            acked.filter((e) => e.channel === 'x'),
          ),
          'every acknowledged event (x)',
          15_000,
        );
      }
      // settle: one more round trip through both subscribers
      const fence = await brokers[1]!.publish('x', { data: 'fence' }, 1000);
      for (const r of recs) await r.one.has(fence.id);
      acked.push(fence);
      for (const r of recs) {
        expect(r.three.resets).toEqual([]);
        const delivered = r.three.events.map((e) => e.data);
        expect(delivered.filter((d) => notPublished.includes(d))).toEqual([]);
        // a publish whose outcome was unknown: stored at most once. Mostly not at all (the Redis-side
        // deadline is 5 ms before the broker gives up), but one Redis ran just in time and whose reply
        // came after that is stored, and then delivered like any other event, once.
        const maybe = r.three.events.filter((e) => unknown.includes(e.data));
        expectExactlyOnceInOrder(r.three, acked, maybe);
        expectExactlyOnceInOrder(
          r.one,
          acked.filter((e) => e.channel === 'x'),
          maybe.filter((e) => e.channel === 'x'),
        );
      }
      // history agrees: nothing not-published was stored, an unknown one at most once
      const all = await brokers[0]!.replay(channels, at(0));
      const stored = all.events.map((e) => e.data);
      expect(stored.filter((d) => notPublished.includes(d))).toEqual([]);
      const maybeStored = stored.filter((d) => unknown.includes(d));
      expect(new Set(maybeStored).size).toBe(maybeStored.length);
      expect(all.events).toHaveLength(acked.length + maybeStored.length);
    });
  }
});

describe('a reply lost with its connection', () => {
  const label = {
    url: "the broker's own connection (url)",
    redis: "the caller's client (redis, default ioredis 5 options)",
    redis6: "the caller's ioredis 6 client (RESP3, default options)",
  };
  for (const mode of ['url', 'redis', 'redis6'] as const) {
    test(`${label[mode]}: the publish resolves, stored and delivered once`, async () => {
      const s = await server();
      const px = await proxy(s.port);
      const p = prefix();
      const b =
        mode === 'url'
          ? broker({ url: px.url, prefix: p })
          : mode === 'redis'
            ? broker({ redis: client(px.url, { connectionName: 'caller' }), prefix: p })
            : broker({ redis: client6(px.url, { connectionName: 'caller' }), prefix: p });
      const watcher = broker({ url: s.url, prefix: p });
      const rec = new Recorder();
      await watcher.subscribe('a', rec);
      const warm = await b.publish('a', { data: 'warm' }, 100);
      const conns = px.find(mode === 'url' ? 'sse-relay' : 'caller');
      expect(conns).toHaveLength(1);
      const dropped = conns[0]!.dropReplyTo('sse_relay_batch_v2');
      const result = await b.publish('a', { data: 'once' }, 100).then(
        (e) => e,
        (e: unknown) => e as SseRelayError,
      );
      await dropped;
      if (result instanceof SseRelayError) {
        // allowed by the contract, but then it must say so
        expect(result.outcome).toBe('unknown');
      } else {
        expect(result.data).toBe('once');
        expect(result.seq).toBe(warm.seq + 1);
      }
      const next = await b.publish('a', { data: 'next' }, 100);
      await rec.has(next.id);
      expect(rec.events.map((e) => e.data)).toEqual(['warm', 'once', 'next']);
      const r = await watcher.replay(['a'], at(0));
      expect(r.events.map((e) => e.data)).toEqual(['warm', 'once', 'next']);
      expect(result).not.toBeInstanceOf(SseRelayError); // and in practice it is known: asked again under the same call id
    });
  }
});

describe('a reply lost, then the call asked again is refused (Redis out of memory meanwhile)', () => {
  test("the publish rejects as 'unknown', not 'not-published': the first attempt stored it, so a retry without its key would store it twice", async () => {
    const s = await server();
    const px = await proxy(s.port);
    const p = prefix();
    const b = broker({ url: px.url, prefix: p, commandTimeout: 3000 });
    const watcher = broker({ url: s.url, prefix: p });
    const admin = client(s.url);
    const warm = await b.publish('a', { data: 'warm' }, 100);
    const [conn] = px.find('sse-relay');
    // the broker cannot ask again until the proxy leads back to Redis (no race with its retry)
    px.retarget(await freePort());
    const dropped = conn!.dropReplyTo('sse_relay_batch_v2');
    const publishing = b.publish('a', { data: 'once' }, 100).then(
      (e) => e,
      (e: unknown) => e as SseRelayError,
    );
    await dropped; // it ran: stored
    await admin.call('CONFIG', 'SET', 'maxmemory', '1'); // (noeviction) every write refused from here
    px.retarget(s.port);
    const result = await publishing;
    await admin.call('CONFIG', 'SET', 'maxmemory', '0');
    expect(result).toBeInstanceOf(SseRelayError);
    expect((result as SseRelayError).outcome).toBe('unknown');
    const r = await watcher.replay(['a'], at(0));
    expect(r.events.map((e) => [e.seq, e.data])).toEqual([
      [warm.seq, 'warm'],
      [warm.seq + 1, 'once'],
    ]);
  });
});

describe('a catch-up read whose reply is lost with its connection', () => {
  test('the catch-up is read again: every event published while the subscriber was away arrives once, in order, no reset', async () => {
    const s = await server();
    const px = await proxy(s.port);
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p });
    const sub = broker({ url: px.url, prefix: p });
    const rec = await listenAB(sub);
    const acked: BrokerEvent[] = [];
    await publishAB(pub, acked, 0, 10);
    await rec.until(hasAll(rec, acked), 'events before the cut');
    const [cmd] = px.find('sse-relay');
    const [subConn] = px.find('sse-relay:sub');
    // the catch-up is the one read that names the channels' streams (head reads name none)
    const dropped = cmd!.dropReplyTo(`${p}{0}:a`);
    const recoveries = sub.stats().recoveries;
    px.retarget(await freePort()); // the subscriber cannot reconnect until it is pointed back
    subConn!.cut();
    await publishAB(pub, acked, 10, 30);
    px.retarget(s.port);
    await publishAB(pub, acked, 30, 40);
    await dropped;
    expect(cmd!.closed).toBe(true); // the catch-up's reply really was lost
    await rec.until(hasAll(rec, acked), 'every event published while the subscriber was away', 10_000);
    const last = await pub.publish('a', { data: 'last' }, 1000);
    await rec.has(last.id);
    expectExactlyOnceInOrder(rec, [...acked, last]);
    expect(rec.resets).toEqual([]);
    expect(sub.stats().recoveries).toBeGreaterThan(recoveries);
  });
});

describe('what is read from Redis cannot move the broker past what Redis holds', () => {
  test('a forged message far ahead in the current epoch is counted invalid; delivery goes on on every channel', async () => {
    const s = await server();
    const admin = client(s.url);
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p });
    const sub = broker({ url: s.url, prefix: p });
    const rec = await listenAB(sub);
    const first = await pub.publish('a', { data: 'first' }, 100);
    await rec.has(first.id);
    await admin.call('SPUBLISH', topic(p, 'a'), `${first.epoch}\n${first.seq + 1_000_000}\n-\n-\nforged`);
    await admin.call('SPUBLISH', topic(p, 'b'), `${first.epoch}\n${first.seq + 5}\n=evil\n-\nforged too`);
    const acked: BrokerEvent[] = [first];
    for (let i = 0; i < 10; i++) acked.push(await pub.publish(i % 2 ? 'a' : 'b', { data: 'real' + i }, 100));
    await rec.until(hasAll(rec, acked), 'every real event after the forgeries');
    expectExactlyOnceInOrder(rec, acked);
    expect(rec.events.some((e) => e.data.startsWith('forged'))).toBe(false);
    expect(sub.stats().invalid).toBe(2);
    expect(rec.resets).toEqual([]);
    // the floor did not move: a publish carries no fence from the forged seq
    const head = (await sub.replay(['a'], undefined)).heads.get(0)!;
    expect(head).toEqual({ epoch: first.epoch, seq: acked[acked.length - 1]!.seq });
  });
});

describe('Redis out of memory (maxmemory reached, noeviction)', () => {
  test("publish is refused whole as not-published with Redis' reason; once memory is back, every acknowledged event once, in order, no reset", async () => {
    const s = await server();
    const p = prefix();
    const b = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
    const rec = await listenAB(b);
    const acked: BrokerEvent[] = [];
    await publishAB(b, acked, 0, 6);
    await rec.until(hasAll(rec, acked), 'events before');
    const admin = client(s.url);
    await admin.call('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
    await admin.call('CONFIG', 'SET', 'maxmemory', '1');
    // a turn's publishes of two channels, in one call: refused whole
    const refused = await Promise.all(
      ['a', 'b', 'a'].map((c) =>
        b.publish(c, { data: 'refused' }, 100).then(
          () => undefined,
          (e: unknown) => e as SseRelayError,
        ),
      ),
    );
    for (const err of refused) {
      expect(err).toBeInstanceOf(SseRelayError);
      expect(err).toMatchObject({ code: 'ERR_BROKER_UNAVAILABLE', outcome: 'not-published' });
      expect(err!.message).toMatch(/OOM/);
    }
    await admin.call('CONFIG', 'SET', 'maxmemory', '0');
    await publishAB(b, acked, 6, 12);
    await rec.until(hasAll(rec, acked), 'events after');
    expectExactlyOnceInOrder(rec, acked);
    expect(rec.resets).toEqual([]);
    const r = await b.replay(['a', 'b'], at(0));
    expect(r.events.map((e) => e.data)).toEqual(acked.map((e) => e.data)); // nothing refused was stored
  });
});

describe('Redis refusing connections', () => {
  test('publish fails fast (not after commandTimeout) with outcome not-published; 50 waiting operations, no listener per operation', async () => {
    const port = await freePort();
    const b = broker({ url: `redis://127.0.0.1:${port}`, prefix: prefix(), commandTimeout: 20_000 });
    const peak = peakListeners(commandClient(b));
    const started = Date.now();
    const errs = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        b.publish('a', { data: String(i) }, 10).then(
          () => undefined,
          (e: unknown) => e as SseRelayError,
        ),
      ),
    );
    expect(Date.now() - started).toBeLessThan(10_000); // far below the 20 s commandTimeout
    for (const e of errs) {
      expect(e).toBeInstanceOf(SseRelayError);
      if (e === undefined) continue;
      expect(e.code).toBe('ERR_BROKER_UNAVAILABLE');
      expect(e.outcome).toBe('not-published');
      expect(e.message).toMatch(/refused/);
    }
    await expect(b.subscribe('a', new Recorder())).rejects.toMatchObject({ code: 'ERR_BROKER_UNAVAILABLE' });
    expect(peak()).toBeLessThanOrEqual(5); // Node warns of a leak past 10
    // the caller's client, default options, refused too
    const c = client(`redis://127.0.0.1:${port}`);
    const peak2 = peakListeners(c);
    const b2 = broker({ redis: c, prefix: prefix(), commandTimeout: 20_000 });
    await until(() => c.status === 'reconnecting', 'the client to have failed once');
    const t2 = Date.now();
    await expect(
      Promise.all(Array.from({ length: 50 }, () => b2.publish('a', { data: 'x' }, 10))),
    ).rejects.toMatchObject({
      code: 'ERR_BROKER_UNAVAILABLE',
      outcome: 'not-published',
    });
    expect(Date.now() - t2).toBeLessThan(10_000);
    expect(peak2()).toBeLessThanOrEqual(5);
  });
});
