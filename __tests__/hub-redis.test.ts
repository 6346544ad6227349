/**
 * What a browser sees through the hub when Redis misbehaves: every lost or
 * unreplayable stretch reaches the stream as ONE `reset` event, never as a
 * silent gap, and the stream stays live afterwards. Real redis-servers of the
 * test's own (so they can be killed and restarted).
 */
import express from 'express';
import Redis from 'ioredis';
import type { Server } from 'node:http';
import { createHub, RedisBroker, type Hub } from '../lib';
import { closeServer, listen, openStream, type TestStream } from '../lib/testing';
import { startRedis, type RedisServer } from './helpers/redis-server';
import { until } from './helpers/wait';

const open: Array<{ close(): unknown }> = [];
let hubs: Hub[] = [];
let servers: Server[] = [];
let redisServers: RedisServer[] = [];
let streams: TestStream[] = [];

afterEach(async () => {
  for (const s of streams) await s.close();
  for (const h of hubs) await h.close();
  for (const s of servers) await closeServer(s);
  for (const c of open) await c.close();
  for (const r of redisServers) await r.stop();
  streams = [];
  hubs = [];
  servers = [];
  redisServers = [];
  open.length = 0;
});

async function app(hub: Hub): Promise<Server> {
  const a = express();
  a.use('/events', hub.router());
  const server = await listen(a);
  servers.push(server);
  return server;
}

test('history trimmed while the subscriber was away: one reset, then live, never a silent gap', async () => {
  const redis = await startRedis();
  redisServers.push(redis);
  const admin = new Redis(redis.url);
  open.push({ close: () => admin.quit() });
  // The subscribing side reconnects only after 500 ms: time to publish more than history meanwhile.
  const slow = new Redis(redis.url, { retryStrategy: () => 500 });
  open.push({ close: () => slow.quit() });
  const hub = createHub({ authorize: () => true, history: 3, broker: new RedisBroker({ redis: slow, prefix: 't1:' }) });
  const publisher = createHub({
    authorize: () => true,
    history: 3,
    broker: new RedisBroker({ url: redis.url, prefix: 't1:' }),
  });
  hubs.push(hub, publisher);
  const server = await app(hub);
  const both = await openStream({ server, path: '/events?channel=a&channel=b' });
  const onlyB = await openStream({ server, path: '/events/b' });
  streams.push(both, onlyB);
  await until(() => hub.stats().connections === 2, 'two live streams');
  const a0 = await publisher.publish('a', 'a0');
  await both.waitFor(1);

  await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
  const burst: string[] = [];
  for (let i = 1; i <= 6; i++) burst.push(await publisher.publish('a', `a${i}`));
  const b1 = await publisher.publish('b', 'b1');
  const b2 = await publisher.publish('b', 'b2');
  const head = b2;

  // The stream on a+b: a lost events beyond history -> reset at the head, nothing older after it.
  await both.waitFor((e) => e.event === 'reset', 10000);
  const next = await publisher.publish('a', 'next');
  await both.waitFor((e) => e.id === next, 10000);
  expect(both.events.map((e) => [e.event, e.id])).toEqual([
    ['message', a0],
    ['reset', head],
    ['message', next],
  ]);
  // The stream on b alone lost nothing: it catches up, no reset.
  await onlyB.waitFor(2, 10000);
  expect(onlyB.events.map((e) => [e.event, e.id])).toEqual([
    ['message', b1],
    ['message', b2],
  ]);
  // Resuming from the reset's id is complete.
  const resumed = await openStream(
    { server, path: '/events?channel=a&channel=b' },
    { headers: { 'Last-Event-ID': head } },
  );
  streams.push(resumed);
  await resumed.waitFor(1);
  expect(resumed.events.map((e) => e.id)).toEqual([next]);
});

test('Redis restarted without persistence: streams get one reset, then the new epoch live', async () => {
  const redis = await startRedis();
  redisServers.push(redis);
  const hub = createHub({ authorize: () => true, broker: new RedisBroker({ url: redis.url, prefix: 't2:' }) });
  hubs.push(hub);
  const server = await app(hub);
  const s = await openStream({ server, path: '/events?channel=a&channel=b' });
  streams.push(s);
  await until(() => hub.stats().connections === 1, 'a live stream');
  const before = await hub.publish('a', 'before');
  await s.waitFor(1);

  await redis.stop({ keepDir: true });
  const again = await startRedis({ port: redis.port, dir: redis.dir });
  redisServers = [again];
  let after = '';
  await until(async () => {
    try {
      after = await hub.publish('b', 'after');
      return true;
    } catch {
      return false; // ERR_BROKER_UNAVAILABLE until the command connection is back
    }
  }, 'publish after the restart');
  await s.waitFor((e) => e.id === after, 10000);
  const seen = s.events.map((e) => [e.event, e.id]);
  expect(seen[0]).toEqual(['message', before]);
  expect(seen[1]![0]).toBe('reset');
  expect(seen[seen.length - 1]).toEqual(['message', after]);
  expect(seen.filter(([ev]) => ev === 'reset')).toHaveLength(1);
  expect(after.split('.')[0]).not.toBe(before.split('.')[0]); // a new epoch
  // An old id after the restart: reset (never replayed as if complete).
  const old = await openStream({ server, path: '/events/a' }, { headers: { 'Last-Event-ID': before } });
  streams.push(old);
  await old.waitFor(1);
  expect(old.events[0]!.event).toBe('reset');
});

test('a stream over four partitions, Redis restarted without persistence: ONE reset (not one per partition), then every event published after the restart; its id resumes with no second reset', async () => {
  const redis = await startRedis();
  redisServers.push(redis);
  const broker = new RedisBroker({ url: redis.url, prefix: 't4:', partitions: 4 });
  const hub = createHub({ authorize: () => true, broker });
  hubs.push(hub);
  const server = await app(hub);
  const channels: string[] = [];
  for (let i = 0; channels.length < 4 && i < 1000; i++) {
    const c = `c${i}`;
    if (!channels.some((x) => broker.partitionOf(x) === broker.partitionOf(c))) channels.push(c);
  }
  expect(channels).toHaveLength(4);
  const path = '/events?' + channels.map((c) => `channel=${c}`).join('&');
  const s = await openStream({ server, path });
  streams.push(s);
  await until(() => hub.stats().connections === 1, 'a live stream');
  for (const c of channels) await hub.publish(c, `before ${c}`);
  await s.waitFor(4);

  await redis.stop({ keepDir: true });
  const again = await startRedis({ port: redis.port, dir: redis.dir });
  redisServers = [again];
  await until(async () => {
    try {
      await hub.publish(channels[0]!, 'probe');
      return true;
    } catch {
      return false; // ERR_BROKER_UNAVAILABLE until the command connection is back
    }
  }, 'publish after the restart');
  for (let i = 0; i < 3; i++) for (const c of channels) await hub.publish(c, `after${i} ${c}`);
  // (a stream over several partitions is sent cursors over all of them, not the events' own ids)
  await s.waitFor((e) => e.data === `after2 ${channels[3]}`, 10000);
  const tail = s.events.slice(4);
  expect(tail.filter((e) => e.event === 'reset')).toHaveLength(1);
  const reset = tail.find((e) => e.event === 'reset')!;
  // everything published after the restart arrives, once, in order per channel, after the reset
  const got = tail.slice(tail.indexOf(reset) + 1).filter((e) => e.data !== 'probe');
  for (const c of channels) {
    expect(got.filter((e) => e.data.endsWith(' ' + c)).map((e) => e.data)).toEqual(
      [0, 1, 2].map((i) => `after${i} ${c}`),
    );
  }
  // the reset's id resumes: no second reset, then live
  const resumed = await openStream({ server, path }, { headers: { 'Last-Event-ID': reset.id } });
  streams.push(resumed);
  await hub.publish(channels[3]!, 'live');
  await resumed.waitFor((e) => e.data === 'live', 10000);
  expect(resumed.events.filter((e) => e.event === 'reset')).toEqual([]);
});

test("a channel's stream deleted from outside (DEL, eviction): a resume over it gets one reset, a resume from the partition's head none", async () => {
  const redis = await startRedis();
  redisServers.push(redis);
  const admin = new Redis(redis.url);
  open.push({ close: () => admin.quit() });
  const broker = new RedisBroker({ url: redis.url, prefix: 't5:' });
  const hub = createHub({ authorize: () => true, broker });
  hubs.push(hub);
  const server = await app(hub);
  const first = await hub.publish('a', 'a1');
  await hub.publish('a', 'a2');
  await hub.publish('b', 'b1');
  expect(await admin.del(broker.keyOf('a'))).toBe(1);
  const over = await openStream(
    { server, path: '/events?channel=a&channel=b' },
    { headers: { 'Last-Event-ID': first } },
  );
  streams.push(over);
  await over.waitFor(1);
  const head = await hub.publish('b', 'b2');
  await over.waitFor((e) => e.data === 'b2', 10000);
  expect(over.events.map((e) => e.event)).toEqual(['reset', 'message']); // a2 and b1 are not replayed as if complete
  const fromHead = await openStream({ server, path: '/events/a' }, { headers: { 'Last-Event-ID': head } });
  streams.push(fromHead);
  await hub.publish('a', 'a3');
  await fromHead.waitFor((e) => e.data === 'a3', 10000);
  expect(fromHead.events.map((e) => [e.event, e.data])).toEqual([['message', 'a3']]);
});

test('Redis down: a new stream gets 200 + retry and ends; publish rejects with a clear error', async () => {
  const redis = await startRedis();
  redisServers.push(redis);
  const hub = createHub({
    authorize: () => true,
    broker: new RedisBroker({ url: redis.url, prefix: 't3:', commandTimeout: 300 }),
  });
  hubs.push(hub);
  const server = await app(hub);
  await redis.stop();
  redisServers = [];
  await expect(hub.publish('a', 'x')).rejects.toMatchObject({ code: 'ERR_BROKER_UNAVAILABLE' });
  const s = await openStream({ server, path: '/events/a' });
  streams.push(s);
  expect(s.status).toBe(200);
  await s.waitForEnd(10000);
  expect(s.raw()).toMatch(/^retry: \d+\n\n$/);
  expect(hub.stats()).toMatchObject({ connections: 0, channels: 0 });
});
