/**
 * History trimmed in the same epoch (Redis kept running, a channel's capped
 * history moved past a stream's position) on several partitions at once, as a
 * browser sees it through the hub: ONE `reset`, then every event after the
 * reset's position once, in order per channel; the reset's id resumes with no
 * second reset. A live stream whose process lost its subscriber connection
 * meanwhile (cut and kept away by a proxy: a fence, no sleeps): on one Redis
 * with 4 partitions, on one partition, and on a Redis Cluster whose masters
 * come back one at a time while publishing goes on (each partition's catch-up
 * then resets in a turn of its own: before the fix, one reset per master); and
 * an HTTP resume whose channels were all trimmed. Real redis-servers.
 */
import express from 'express';
import type { Server } from 'node:http';
import { createHub, RedisBroker, type Hub } from '../lib';
import { parseCursor } from '../lib/positions';
import { closeServer, listen, openStream, type ParsedEvent, type TestStream } from '../lib/testing';
import { keySlot } from '../lib/brokers/redis/partitions';
import { startCluster, type RedisCluster } from './helpers/redis-cluster';
import { redisFixtures } from './helpers/redis-fixtures';
import { freePort } from './helpers/redis-server';
import { startProxy, type TcpProxy } from './helpers/tcp-proxy';
import { throughProxies } from './helpers/timeline';
import { until } from './helpers/wait';

jest.setTimeout(60_000);

const PARTITIONS = 4;
const HISTORY = 3;

const { prefix, broker, server, proxy } = redisFixtures('tr');
let hubs: Hub[] = [];
let servers: Server[] = [];
let streams: TestStream[] = [];

afterEach(async () => {
  for (const s of streams) await s.close();
  for (const h of hubs) await h.close();
  for (const s of servers) await closeServer(s);
  streams = [];
  hubs = [];
  servers = [];
});

/** `n` channel names: one per partition (`spread`), or all in one partition. */
function channelsOf(b: RedisBroker, n: number, spread: boolean): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n && i < 10_000; i++) {
    const c = `ch${i}`;
    const p = b.partitionOf(c);
    if (spread ? !out.some((x) => b.partitionOf(x) === p) : out.length === 0 || b.partitionOf(out[0]!) === p)
      out.push(c);
  }
  expect(out).toHaveLength(n);
  return out;
}

/**
 * A hub whose broker reaches Redis through a proxy (so its subscriber connection can be
 * cut and kept away), a publisher straight to Redis, and an HTTP server for the hub.
 */
async function setUp() {
  const s = await server();
  const px = await proxy(s.port);
  const p = prefix();
  const sub = broker({ url: px.url, prefix: p, partitions: PARTITIONS });
  const pub = broker({ url: s.url, prefix: p, partitions: PARTITIONS });
  const hub = createHub({ authorize: () => true, history: HISTORY, broker: sub });
  const publisher = createHub({ authorize: () => true, history: HISTORY, broker: pub });
  hubs.push(hub, publisher);
  const a = express();
  a.use('/events', hub.router());
  const http = await listen(a);
  servers.push(http);
  /** Cuts the subscriber connection and keeps it away until the function returned is called. */
  const away = async (): Promise<() => void> => {
    px.retarget(await freePort());
    px.find('sse-relay:sub')[0]!.cut();
    await until(() => px.find('sse-relay:sub').every((c) => c.closed), 'the subscriber connection cut');
    return () => px.retarget(s.port);
  };
  return { hub, publisher, sub, http, away };
}

/** What was published: channel, data and the event's own id (its partition's position). */
interface Published {
  channel: string;
  data: string;
  partition: number;
  seq: number;
}

async function publishOne(publisher: Hub, b: RedisBroker, channel: string, data: string): Promise<Published> {
  const id = await publisher.publish(channel, data);
  const parsed = parseCursor(id, PARTITIONS)!;
  const partition = b.partitionOf(channel);
  return { channel, data, partition, seq: parsed.seqs.get(partition)! };
}

/** A live stream of the set-up's hub over 3 channels (one per partition, or all in one), one event published on each. */
async function liveStream(fx: Awaited<ReturnType<typeof setUp>>, spread: boolean) {
  const channels = channelsOf(fx.sub, 3, spread);
  const path = '/events?' + channels.map((c) => `channel=${c}`).join('&');
  const stream = await openStream({ server: fx.http, path });
  streams.push(stream);
  await until(() => fx.hub.stats().connections === 1, 'a live stream');
  const published: Published[] = [];
  for (const c of channels) published.push(await publishOne(fx.publisher, fx.sub, c, `${c}:0`));
  await stream.waitFor(3, 10_000);
  return { channels, path, stream, published };
}

/** A resume from the reset's id `resetId`: it gets what `publishNext` publishes (its data) and no second reset. */
async function expectResumeWithoutReset(
  http: Server,
  path: string,
  resetId: string,
  publishNext: () => Promise<string>,
): Promise<void> {
  const resumed = await openStream({ server: http, path }, { headers: { 'Last-Event-ID': resetId } });
  streams.push(resumed);
  const data = await publishNext();
  await resumed.waitFor((e) => e.data === data, 10_000);
  expect(resumed.events.filter((e) => e.event === 'reset')).toEqual([]);
}

/**
 * The outcome a client relies on after `from` (the events it had): either every event
 * published after that, once, in order per channel, or ONE reset and then every event after
 * the reset's position, once, in order per channel. Returns the resets seen.
 */
function expectOnceOrOneReset(
  got: readonly ParsedEvent[],
  published: readonly Published[],
  after: number,
  partitions = PARTITIONS,
): ParsedEvent[] {
  const tail = got.slice(after);
  const resets = tail.filter((e) => e.event === 'reset');
  expect(resets.length).toBeLessThanOrEqual(1);
  const reset = resets[0];
  const from = reset === undefined ? undefined : parseCursor(reset.id, partitions)!.seqs;
  const rest = reset === undefined ? tail : tail.slice(tail.indexOf(reset) + 1);
  const channels = [...new Set(published.map((e) => e.channel))];
  for (const c of channels) {
    const want = published
      .filter((e) => e.channel === c && (from === undefined || e.seq > from.get(e.partition)!))
      .map((e) => e.data);
    const seen = rest.filter((e) => e.event === 'message' && e.data.startsWith(c + ':')).map((e) => e.data);
    expect([c, seen]).toEqual([c, want]);
  }
  return resets;
}

describe('history trimmed while the subscriber connection was away', () => {
  test.each([
    ['three partitions', true],
    ['one partition', false],
  ] as const)(
    'a live stream over channels on %s, each trimmed past its position: ONE reset, then every event after it once; its id resumes with no second reset',
    async (_name, spread) => {
      const fx = await setUp();
      const { publisher, sub, http, away } = fx;
      const { channels, path, stream: s, published } = await liveStream(fx, spread);
      const had = s.events.length;

      const back = await away();
      // each channel moves 2 × HISTORY past the stream's position: its history no longer reaches back
      for (let i = 1; i <= 2 * HISTORY; i++)
        for (const c of channels) published.push(await publishOne(publisher, sub, c, `${c}:${i}`));
      const recoveries = sub.stats().recoveries;
      back();
      await until(() => sub.stats().recoveries >= recoveries + (spread ? 3 : 1), 'every partition caught up', 20_000);
      for (const c of channels) published.push(await publishOne(publisher, sub, c, `${c}:next`));
      for (const c of channels) await s.waitFor((e) => e.data === `${c}:next`, 10_000);

      const resets = expectOnceOrOneReset(s.events, published, had);
      expect(resets).toHaveLength(1);
      // the resume from the reset's id: nothing missing, no second reset
      await expectResumeWithoutReset(http, path, resets[0]!.id, async () => {
        return (await publishOne(publisher, sub, channels[0]!, `${channels[0]}:live`)).data;
      });
    },
  );
});

describe('an HTTP resume over trimmed channels', () => {
  test.each([
    ['three partitions', true],
    ['one partition', false],
  ] as const)(
    'with Last-Event-ID from before every channel on %s was trimmed: ONE reset, then every event after it once; its id resumes with no second reset',
    async (_name, spread) => {
      const fx = await setUp();
      const { hub, publisher, sub, http } = fx;
      const { channels, path, stream: first, published } = await liveStream(fx, spread);
      const lastId = first.events[2]!.id;
      await first.close();
      for (let i = 1; i <= 2 * HISTORY; i++)
        for (const c of channels) published.push(await publishOne(publisher, sub, c, `${c}:${i}`));

      const s = await openStream({ server: http, path }, { headers: { 'Last-Event-ID': lastId } });
      streams.push(s);
      await until(() => hub.stats().connections === 1, 'the resumed stream live');
      for (const c of channels) published.push(await publishOne(publisher, sub, c, `${c}:next`));
      for (const c of channels) await s.waitFor((e) => e.data === `${c}:next`, 10_000);
      const resets = expectOnceOrOneReset(s.events, published.slice(3), 0);
      expect(resets).toHaveLength(1);
      await expectResumeWithoutReset(http, path, resets[0]!.id, async () => {
        return (await publishOne(publisher, sub, channels[0]!, `${channels[0]}:live`)).data;
      });
    },
  );
});

describe('on a Redis Cluster, the partitions on three masters back one after the other', () => {
  let cluster: RedisCluster;
  const proxies = new Map<number, TcpProxy>();
  const brokers: RedisBroker[] = [];
  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(async () => {
    await cluster?.stop();
  });
  beforeEach(async () => {
    for (const { port } of cluster.nodes) proxies.set(port, await startProxy(port));
  });
  afterEach(async () => {
    for (const s of streams.splice(0)) await s.close();
    for (const h of hubs.splice(0)) await h.close();
    for (const b of brokers.splice(0)) await b.close();
    for (const px of proxies.values()) await px.close();
    proxies.clear();
  });

  test('a live stream over channels on three masters, each trimmed past its position while its subscriber connection was away, the masters back one at a time: ONE reset, then every event after it once; its id resumes with no second reset', async () => {
    const p = prefix();
    // the hub's broker reaches every node through its proxy (natMap), so a test can keep it off one node
    const sub = new RedisBroker({
      ...throughProxies(proxies),
      prefix: p,
      commandTimeout: 1000,
      healthCheckInterval: 500,
    });
    const pub = new RedisBroker({ cluster: cluster.startup, prefix: p });
    brokers.push(sub, pub);
    const hub = createHub({ authorize: () => true, history: HISTORY, broker: sub });
    const publisher = createHub({ authorize: () => true, history: HISTORY, broker: pub });
    hubs.push(hub, publisher);
    const a = express();
    a.use('/events', hub.router());
    const http = await listen(a);
    servers.push(http);
    // one channel on each master
    const channels: string[] = [];
    const masters: number[] = [];
    for (let i = 0; channels.length < 3 && i < 10_000; i++) {
      const c = `m${i}`;
      const m = await cluster.masterOf(keySlot(sub.keyOf(c)));
      if (masters.includes(m)) continue;
      channels.push(c);
      masters.push(m);
    }
    expect(channels).toHaveLength(3);
    const path = '/events?' + channels.map((c) => `channel=${c}`).join('&');
    const s = await openStream({ server: http, path });
    streams.push(s);
    await until(() => hub.stats().connections === 1, 'a live stream');
    const published: Published[] = [];
    const count = sub.partitions;
    const put = async (c: string, data: string): Promise<void> => {
      const id = await publisher.publish(c, data);
      const partition = sub.partitionOf(c);
      published.push({ channel: c, data, partition, seq: parseCursor(id, count)!.seqs.get(partition)! });
    };
    for (const c of channels) await put(c, `${c}:0`);
    await s.waitFor(3, 10_000);
    const had = s.events.length;

    // every master's subscriber connection cut and kept away
    const dead = await freePort();
    for (const m of masters) {
      const px = proxies.get(m)!;
      px.retarget(dead);
      for (const c of px.find('sse-relay:sub')) c.cut();
    }
    await until(
      () => masters.every((m) => proxies.get(m)!.find('sse-relay:sub').length === 0),
      'no subscriber connection left',
    );
    for (let i = 1; i <= 2 * HISTORY; i++) for (const c of channels) await put(c, `${c}:${i}`);
    // back one master at a time, the next only once the one before has caught up; publishing
    // goes on meanwhile on the masters still away (fewer than HISTORY: not trimmed past the head again)
    for (const [i, m] of masters.entries()) {
      const recoveries = sub.stats().recoveries;
      proxies.get(m)!.retarget(m);
      await until(() => sub.stats().recoveries > recoveries, `the partition on ${m} caught up`, 20_000);
      if (i === 0) await s.waitFor((e) => e.event === 'reset', 10_000);
      for (const c of channels.slice(i + 1)) await put(c, `${c}:during${i}`);
    }
    for (const c of channels) await put(c, `${c}:next`);
    for (const c of channels) await s.waitFor((e) => e.data === `${c}:next`, 10_000);

    const resets = expectOnceOrOneReset(s.events, published, had, count);
    expect(resets).toHaveLength(1);
    await expectResumeWithoutReset(http, path, resets[0]!.id, async () => {
      await put(channels[0]!, `${channels[0]}:live`);
      return `${channels[0]}:live`;
    });
  });
});
