/**
 * RedisBroker's catch-up in pages (lib/brokers/redis/catch-up.ts), on real
 * redis-servers, with a page budget lowered so that a small backlog spans many
 * pages: every event once, in order per channel and in increasing seq per
 * partition across channels; a page never over its budget; a subscriber
 * connection dropped between two pages resumes after the last page delivered
 * (MONITOR shows what each page call asked for); history trimmed between two
 * pages gives that channel one reset where its kept history begins, then what
 * is kept; Redis restarted
 * between two pages gives one reset per channel. "Between two pages" is a
 * fence: the listener's callback for an event of page k holds the broker's
 * command connection in the proxy (or cuts its subscriber connection), so the
 * next page's call reaches Redis only when the test lets it.
 */
import type Redis from 'ioredis';
import type { BrokerEvent, PartitionPosition } from '../lib/brokers/broker';
import { catchUpPage } from '../lib/brokers/redis/catch-up';
import { PartitionKeys } from '../lib/brokers/redis/partitions';
import { FN_PAGE } from '../lib/brokers/redis/scripts';
import { Recorder } from '../lib/testing';
import { redisFixtures } from './helpers/redis-fixtures';
import { freePort } from './helpers/redis-server';
import { until } from './helpers/wait';
import { commandClient } from './helpers/warnings';

jest.setTimeout(60_000);

const { prefix, broker, client, client6, server, proxy, untrack } = redisFixtures('cu');

const budget = { ...catchUpPage };
afterEach(() => Object.assign(catchUpPage, budget));

/** A Recorder that also calls `hook` after each event (the fence). */
class Fenced extends Recorder {
  hook: ((e: BrokerEvent) => void) | undefined = undefined;
  override onEvent(event: BrokerEvent): void {
    super.onEvent(event);
    this.hook?.(event);
  }
}

/** Every page call Redis ran, as MONITOR reports it: the positions it read after (and a marker line). */
async function monitorPages(url: string): Promise<{ calls: (number[] | 'mark')[]; stop: () => void }> {
  const mon = await client(url).monitor();
  const calls: (number[] | 'mark')[] = [];
  mon.on('monitor', (_time: string, args: string[]) => {
    if (args[0]?.toLowerCase() === 'echo' && args[1] === 'cu-mark') calls.push('mark');
    if (args[0]?.toLowerCase() !== 'fcall' || args[1] !== FN_PAGE) return;
    const keys = Number(args[2]);
    calls.push(args.slice(3 + keys + 6).map(Number));
  });
  return { calls, stop: () => mon.disconnect() };
}

/** Its subscriber connection is cut and kept away until `back()`. */
async function away(px: Awaited<ReturnType<typeof proxy>>, port: number): Promise<() => void> {
  px.retarget(await freePort());
  px.find('sse-relay:sub')[0]!.cut();
  return () => px.retarget(port);
}

/** A fresh Redis, a publisher straight to it, and a listener on 'a' and 'b' through a proxy. */
async function listenerThroughProxy(options: { commandTimeout?: number } = {}) {
  const s = await server();
  const px = await proxy(s.port);
  const p = prefix();
  const pub = broker({ url: s.url, prefix: p, ...options });
  const sub = broker({ url: px.url, prefix: p, ...options });
  const rec = new Fenced();
  await sub.subscribe('a', rec);
  await sub.subscribe('b', rec);
  return { s, px, pub, sub, rec };
}

function expectOncePerPartitionInOrder(rec: Recorder, acked: readonly BrokerEvent[]): void {
  const ids = rec.ids();
  expect(new Set(ids).size).toBe(ids.length);
  const last = new Map<number, number>();
  for (const e of rec.events) {
    expect(e.seq).toBeGreaterThan(last.get(e.partition ?? 0) ?? 0); // across channels of a partition
    last.set(e.partition ?? 0, e.seq);
  }
  const byId = new Map(rec.events.map((e) => [e.id, e]));
  expect(acked.filter((e) => !byId.has(e.id)).map((e) => e.data)).toEqual([]);
  for (const e of acked) expect(byId.get(e.id)).toEqual(e);
  expect(rec.events.length).toBe(acked.length);
}

describe('a catch-up in pages', () => {
  test.each(['url', 'ioredis6'] as const)(
    'over many pages and channels (two partitions, %s): every event once, in seq order per partition across channels, within the budget; no reset',
    async (how) => {
      catchUpPage.seqs = 9;
      catchUpPage.bytes = 700;
      const s = await server();
      const px = await proxy(s.port);
      const p = prefix();
      const pub = broker({ url: s.url, prefix: p, partitions: 2 });
      const sub = broker(
        how === 'url'
          ? { url: px.url, prefix: p, partitions: 2 }
          : { redis: client6(px.url), prefix: p, partitions: 2 },
      );
      const chans = [...Array(16).keys()].map((i) => 'ch' + i);
      const rec = new Recorder();
      for (const c of chans) await sub.subscribe(c, rec);
      const mon = await monitorPages(s.url);
      const back = await away(px, s.port);
      const acked: BrokerEvent[] = [];
      // skewed: channel 0 gets a third of them; sizes from 1 to ~300 bytes, so the byte budget cuts too
      for (let i = 0; i < 360; i++) {
        const c = i % 3 === 0 ? chans[0]! : chans[(i * 7) % 16]!;
        acked.push(await pub.publish(c, { data: `e${i}:` + 'x'.repeat((i * 37) % 300) }, 1000));
      }
      const recoveries = sub.stats().recoveries;
      back();
      await rec.until(() => rec.events.length >= acked.length, 'every event', 20_000);
      await until(() => sub.stats().recoveries > recoveries, 'the catch-up done');
      mon.stop();
      expectOncePerPartitionInOrder(rec, acked);
      expect(rec.resets).toEqual([]);
      expect(mon.calls.length).toBeGreaterThan(360 / 9); // each page spans at most 9 seqs
      const live = await pub.publish(chans[5]!, { data: 'live' }, 1000);
      await rec.has(live.id);
    },
  );

  test('one page call: at most <span> seqs past the lowest position, entries in (after, to], bytes within the budget plus one entry', async () => {
    const s = await server();
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p });
    const chans = ['a', 'b', 'c', 'd'];
    const acked: BrokerEvent[] = [];
    for (let i = 0; i < 200; i++)
      acked.push(await pub.publish(chans[(i * i) % 4]!, { data: 'y'.repeat((i * 53) % 400) }, 1000));
    const redis = client(s.url);
    const k = new PartitionKeys(p, 0, 1);
    const afters = [0, 20, 5, 0];
    const got = new Map<string, number>();
    for (let n = 0; n < 200; n++) {
      const span = 1 + (n % 23);
      const bytes = 100 + ((n * 131) % 900);
      const reply = (await redis.call(
        'FCALL',
        FN_PAGE,
        2 + chans.length,
        k.base,
        k.dropped,
        ...chans.map((c) => k.channel(c)),
        '',
        0,
        'tcu',
        '',
        span,
        bytes,
        ...afters,
      )) as unknown[];
      const to = Number(reply[3]);
      const head = Number(reply[1]);
      expect(to).toBeLessThanOrEqual(Math.min(head, Math.min(...afters) + span));
      const entries: { seq: number; size: number }[] = [];
      chans.forEach((c, i) => {
        expect(reply[4 + 3 * i]).toBe(1);
        expect(Number(reply[5 + 3 * i])).toBeLessThanOrEqual(afters[i]!); // nothing trimmed: kept from before its position
        for (const [id, fields] of reply[6 + 3 * i] as [string, string[]][]) {
          const seq = Number(id.split('-')[0]);
          expect(seq).toBeGreaterThan(afters[i]!);
          expect(seq).toBeLessThanOrEqual(to);
          got.set(c + seq, (got.get(c + seq) ?? 0) + 1);
          entries.push({ seq, size: id.length + fields.reduce((a, f) => a + f.length, 0) });
        }
        afters[i] = Math.max(afters[i]!, to);
      });
      entries.sort((a, b) => a.seq - b.seq);
      const total = entries.reduce((a, e) => a + e.size, 0);
      expect(total - (entries.at(-1)?.size ?? 0)).toBeLessThanOrEqual(bytes);
      if (to === head) break;
      expect(entries.length).toBeGreaterThan(0); // every page that is not the last moves on
    }
    // every event after the starting positions exactly once
    const want = acked.filter((e) => e.seq > [0, 20, 5, 0][chans.indexOf(e.channel)]!).map((e) => e.channel + e.seq);
    expect([...got.keys()].sort()).toEqual(want.sort());
    expect([...got.values()].every((v) => v === 1)).toBe(true);
  });

  test('a subscribe made during a long catch-up resolves after the page being read, not after the backlog; every event once', async () => {
    catchUpPage.seqs = 5;
    const { s, px, pub, sub, rec } = await listenerThroughProxy();
    const back = await away(px, s.port);
    const acked: BrokerEvent[] = [];
    for (let i = 0; i < 200; i++) acked.push(await pub.publish(i % 2 ? 'a' : 'b', { data: 'd' + i }, 1000));
    const late = new Recorder();
    let subscribed: Promise<void> | undefined;
    rec.hook = (e) => {
      if (e.data !== 'd20') return;
      rec.hook = undefined; // page 5 of 40 is being delivered
      subscribed = sub.subscribe('c', late);
    };
    const recoveries = sub.stats().recoveries;
    back();
    await until(() => subscribed !== undefined, 'page 5 of the catch-up');
    await subscribed;
    // live while most of the backlog is still to be read
    expect(sub.stats().recoveries).toBe(recoveries);
    expect(rec.events.length).toBeLessThan(50);
    const c = await pub.publish('c', { data: 'c0' }, 1000);
    await rec.until(() => rec.events.length >= acked.length, 'every event', 20_000);
    await until(() => sub.stats().recoveries > recoveries, 'the catch-up done');
    await late.has(c.id);
    expect(late.events).toEqual([c]);
    expectOncePerPartitionInOrder(rec, acked);
    expect([...rec.resets, ...late.resets]).toEqual([]);
    const live = await pub.publish('c', { data: 'c1' }, 1000);
    await late.has(live.id);
    expect(late.events).toEqual([c, live]);
  });

  test('its subscriber connection dropped between two pages: it resumes after the last page delivered, nothing read again, nothing lost or twice', async () => {
    catchUpPage.seqs = 10;
    const { s, px, pub, sub, rec } = await listenerThroughProxy();
    const acked: BrokerEvent[] = [];
    for (let i = 0; i < 10; i++) acked.push(await pub.publish(i % 2 ? 'a' : 'b', { data: 'd' + i }, 1000));
    await rec.until(() => rec.events.length === 10, 'the first 10');
    const mon = await monitorPages(s.url);
    const admin = client(s.url);
    const back = await away(px, s.port);
    for (let i = 10; i < 110; i++) acked.push(await pub.publish(i % 2 ? 'a' : 'b', { data: 'd' + i }, 1000));
    let cutAt = 0;
    rec.hook = (e) => {
      if (e.data !== 'd55') return;
      // page k is being delivered: from here on, no page may read at or before d55 again
      rec.hook = undefined;
      cutAt = e.seq;
      void admin.echo('cu-mark');
      px.find('sse-relay:sub')[0]!.cut();
    };
    const recoveries = sub.stats().recoveries;
    back();
    await rec.until(() => rec.events.length >= acked.length, 'every event', 20_000);
    await until(() => sub.stats().recoveries > recoveries, 'the catch-up done');
    const last = await pub.publish('a', { data: 'last' }, 1000);
    await rec.has(last.id);
    mon.stop();
    expectOncePerPartitionInOrder(rec, [...acked, last]);
    expect(rec.resets).toEqual([]);
    const mark = mon.calls.indexOf('mark');
    expect(mark).toBeGreaterThan(0);
    const after = mon.calls.slice(mark + 1) as number[][];
    expect(after.length).toBeGreaterThan(0); // the catch-up went on after the cut
    expect(after.filter((afters) => Math.min(...afters) < cutAt)).toEqual([]);
  });

  test('history trimmed while the subscriber connection was away (one page): that channel gets one reset where its kept history begins, then what is kept, once, in order; the other every event once', async () => {
    const { s, px, pub, rec } = await listenerThroughProxy();
    const first = await pub.publish('a', { data: 'a0' }, 5);
    await rec.has(first.id);
    const back = await away(px, s.port);
    const acked: BrokerEvent[] = [];
    for (let i = 1; i <= 12; i++) {
      acked.push(await pub.publish('a', { data: 'a' + i }, 5));
      if (i % 4 === 0) acked.push(await pub.publish('b', { data: 'b' + i }, 1000));
    }
    back();
    await rec.until(() => rec.events.some((e) => e.data === 'b12'), 'the catch-up delivered', 20_000);
    const after = await pub.publish('a', { data: 'after' }, 5);
    await rec.has(after.id);
    const as = acked.filter((e) => e.channel === 'a');
    // history 5: what is kept of 'a' begins after its 6th newest event
    const mark: PartitionPosition = { partition: 0, epoch: first.epoch, seq: as[as.length - 6]!.seq };
    expect(rec.resets).toEqual([{ channel: 'a', head: mark }]);
    expect(rec.events.filter((e) => e.channel === 'a').map((e) => e.data)).toEqual([
      'a0',
      ...as.slice(-5).map((e) => e.data),
      'after',
    ]);
    expectOncePerPartitionInOrder(rec, [first, ...acked.filter((e) => e.channel === 'b' || e.seq > mark.seq), after]);
  });

  test('history trimmed between two pages: that channel gets one reset where its kept history begins, then what is kept; the other every event once', async () => {
    catchUpPage.seqs = 6;
    const { s, px, pub, rec } = await listenerThroughProxy();
    const back = await away(px, s.port);
    const acked: BrokerEvent[] = [];
    for (let i = 0; i < 30; i++) acked.push(await pub.publish(i % 2 ? 'a' : 'b', { data: 'd' + i }, i % 2 ? 20 : 1000));
    let fenced!: () => void;
    const atFence = new Promise<void>((resolve) => (fenced = resolve));
    rec.hook = (e) => {
      if (e.data !== 'd10') return;
      rec.hook = undefined;
      px.find('sse-relay')[0]!.hold(); // the next page's call waits in the proxy
      fenced();
    };
    back();
    await atFence;
    const delivered = rec.events.length;
    // meanwhile 'a' gets 40 more (history 20): everything of it after its position is gone
    const more: BrokerEvent[] = [];
    for (let i = 30; i < 70; i++) more.push(await pub.publish(i % 4 ? 'a' : 'b', { data: 'd' + i }, i % 4 ? 20 : 1000));
    const head = more.at(-1)!.seq;
    px.find('sse-relay')[0]!.release();
    const bs = [...acked, ...more].filter((e) => e.channel === 'b');
    await rec.until(() => bs.every((e) => rec.ids().includes(e.id)), "every event of 'b'", 20_000);
    const after = await pub.publish('a', { data: 'after' }, 20);
    await rec.has(after.id);
    // history 20: what is kept of 'a' begins after its 21st newest event
    const allA = [...acked, ...more].filter((e) => e.channel === 'a');
    const mark = allA[allA.length - 21]!.seq;
    expect(mark).toBeLessThan(head);
    const position: PartitionPosition = { partition: 0, epoch: acked[0]!.epoch, seq: mark };
    expect(rec.resets).toEqual([{ channel: 'a', head: position }]);
    // 'a': what pages before the fence delivered, then what history kept of it (its last 20), then live
    const as = rec.events.filter((e) => e.channel === 'a');
    const before = as.filter((e) => e.seq <= mark);
    expect(before.length).toBeGreaterThan(0);
    expect(before).toEqual(acked.filter((e) => e.channel === 'a').slice(0, before.length));
    expect(before.every((e) => rec.events.indexOf(e) < delivered)).toBe(true);
    expect(as.filter((e) => e.seq > mark)).toEqual([...allA.slice(-20), after]);
    expectOncePerPartitionInOrder(
      rec,
      [...acked, ...more, after].filter((e) => e.channel === 'b' || rec.ids().includes(e.id)),
    );
  });

  test('Redis restarted (no persistence) between two pages: one reset per channel, then every event of the new epoch once', async () => {
    catchUpPage.seqs = 6;
    const fx = await listenerThroughProxy({ commandTimeout: 1000 });
    let { s } = fx;
    const { px, pub, rec } = fx;
    const { port } = s;
    const back = await away(px, port);
    const old: BrokerEvent[] = [];
    for (let i = 0; i < 30; i++) old.push(await pub.publish(i % 2 ? 'a' : 'b', { data: 'd' + i }, 1000));
    let fenced!: () => void;
    const atFence = new Promise<void>((resolve) => (fenced = resolve));
    rec.hook = (e) => {
      if (e.data !== 'd10') return;
      rec.hook = undefined;
      px.find('sse-relay')[0]!.hold();
      fenced();
    };
    back();
    await atFence;
    const delivered = rec.events.length;
    expect(delivered).toBeLessThan(old.length); // the restart comes between two pages
    px.retarget(await freePort());
    await s.kill();
    untrack(s);
    s = await server({ port });
    px.retarget(port);
    await until(() => (commandClient(pub) as unknown as Redis).status === 'ready', 'the publisher reconnected');
    const fresh: BrokerEvent[] = [];
    for (let i = 0; i < 12; i++) {
      const e = await pub.publish(i % 2 ? 'a' : 'b', { data: 'n' + i }, 1000).catch(() => undefined);
      if (e !== undefined) fresh.push(e);
    }
    expect(fresh.length).toBeGreaterThan(6);
    for (const c of px.connections) c.release();
    await rec.until(() => fresh.every((e) => rec.ids().includes(e.id)), 'the new epoch', 20_000);
    const epoch = fresh[0]!.epoch;
    expect(epoch).not.toBe(old[0]!.epoch);
    expect(rec.resets.map((r) => r.channel).sort()).toEqual(['a', 'b']);
    for (const r of rec.resets) expect(r.head).toEqual({ partition: 0, epoch, seq: 0 });
    const olds = rec.events.filter((e) => e.epoch === old[0]!.epoch);
    expect(olds.length).toBe(delivered); // nothing of the old epoch after the fence
    expect(olds).toEqual(old.slice(0, olds.length));
    expect(rec.events.slice(olds.length)).toEqual(fresh);
  });
});
