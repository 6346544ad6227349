/**
 * The layout record (`<prefix>layout`): processes on one Redis and prefix that
 * use different `partitions` would never see each other's events, so the
 * second layout refuses (ERR_BROKER_LAYOUT) instead of splitting silently.
 * Against real redis-servers of this file's own: on the broker's own
 * connection and on the caller's client (ioredis 5 and 6); the same layout
 * and another prefix unaffected; the record re-created after a restart
 * without persistence and after a FLUSHALL (no refusal for the same layout,
 * one for another that races for it); two layouts starting at once (exactly
 * one refuses); the refused broker going on once the record is deleted. The
 * same on the run's Redis Cluster with the caller's Cluster client.
 */
import Redis, { Cluster } from 'ioredis';
import Redis6 from 'ioredis6';
import type { BrokerEvent } from '../lib/brokers/broker';
import { RedisBroker } from '../lib/brokers/redis';
import { SseRelayError } from '../lib/errors';
import { Recorder } from '../lib/testing';
import { clusterNodes } from './helpers/cluster-env';
import { redisFixtures } from './helpers/redis-fixtures';
import type { RedisServer } from './helpers/redis-server';
import { until } from './helpers/wait';
import { watchWarnings } from './helpers/warnings';

jest.setTimeout(60_000);

const { prefix, broker, client, client6, server, untrack } = redisFixtures('lay', { maxRetriesPerRequest: 1 });

async function refusal(promise: Promise<unknown>): Promise<SseRelayError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SseRelayError);
  expect((err as SseRelayError).code).toBe('ERR_BROKER_LAYOUT');
  return err as SseRelayError;
}

const esc = (t: string): string => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The message names both counts, the prefix, the key, and the ways out. */
function expectNamesBoth(err: SseRelayError, p: string, mine: number, theirs: number): void {
  expect(err.message).toMatch(
    new RegExp(
      `^sse-relay: RedisBroker partitions ${mine} does not match the layout in use under prefix '${esc(p)}' ` +
        `\\(partitions ${theirs}, recorded in key '${esc(p)}layout'\\)`,
    ),
  );
  expect(err.message).toContain(`Use partitions: ${theirs} here, or start the new layout under a new prefix`);
  expect(err.message).toContain(`stop every process of the old layout and delete the key (DEL ${p}layout)`);
}

// every refusal is also a process warning: recorded here (and checked where it is the point), not printed
let warnings: ReturnType<typeof watchWarnings>;
beforeEach(() => (warnings = watchWarnings()));
afterEach(() => warnings.restore());

let s: RedisServer;
let admin: Redis;

beforeEach(async () => {
  s = await server();
  admin = client(s.url);
});

type Make = (p: string, partitions?: number) => RedisBroker;
const kinds: [string, () => Make][] = [
  ['its own connection', () => (p, partitions) => broker({ url: s.url, prefix: p, partitions })],
  ["the caller's client, ioredis 5", () => (p, partitions) => broker({ redis: client(s.url), prefix: p, partitions })],
  [
    "the caller's client, ioredis 6 (RESP3)",
    () => (p, partitions) => broker({ redis: client6(s.url), prefix: p, partitions }),
  ],
];

describe.each(kinds)('one Redis, %s', (_label, maker) => {
  test('partitions 1, then 4 on the same prefix: the second refuses publish and subscribe, stores nothing; the first goes on', async () => {
    const make = maker();
    const p = prefix();
    const one = make(p); // one Redis: 1 by default
    const rec = new Recorder();
    await one.subscribe('a', rec);
    const first = await one.publish('a', { data: 'one' }, 10);
    expect(await admin.get(`${p}layout`)).toBe('v1 partitions=1');

    const four = make(p, 4);
    // said once, even before anything is refused (a process that only serves streams shows it too)
    await until(() => warnings.withCode('SSE_RELAY_LAYOUT').length > 0, 'the layout warning');
    const keysBefore = (await admin.keys(`${p}*`)).sort();
    const err = await refusal(four.publish('a', { data: 'four' }, 10));
    expectNamesBoth(err, p, 4, 1);
    expect(err.outcome).toBe('not-published');
    const opened = async (): Promise<string> =>
      /total_connections_received:(\d+)/.exec((await admin.info('stats')) as string)![1]!;
    const before = await opened();
    expectNamesBoth(await refusal(four.subscribe('a', new Recorder())), p, 4, 1);
    expect(await opened()).toBe(before); // refused before a subscriber connection was opened for it
    expect(four.stats()).toMatchObject({ subscribed: 0, listeners: 0, connections: 0 });
    await refusal(four.replay(['a'], undefined));
    expect((await admin.keys(`${p}*`)).sort()).toEqual(keysBefore); // nothing of layout 4 written
    expect(await admin.get(`${p}layout`)).toBe('v1 partitions=1');
    const said = warnings.withCode('SSE_RELAY_LAYOUT');
    expect(said).toHaveLength(1);
    expectNamesBoth(said[0]! as SseRelayError, p, 4, 1);

    const second = await one.publish('a', { data: 'two' }, 10);
    await rec.has(second.id);
    expect(rec.events.map((e) => e.data)).toEqual(['one', 'two']);
    expect(rec.ids()).toEqual([first.id, second.id]);
  });

  test('the same partitions: both work, and see each other; another prefix with another layout: both work', async () => {
    const make = maker();
    const p = prefix();
    const a = make(p, 2);
    const b = make(p, 2);
    const recA = new Recorder();
    const recB = new Recorder();
    await a.subscribe('x', recA);
    await b.subscribe('x', recB);
    const e1 = await a.publish('x', { data: 'from a' }, 10);
    const e2 = await b.publish('x', { data: 'from b' }, 10);
    for (const rec of [recA, recB]) {
      await rec.has(e2.id);
      expect(rec.ids()).toEqual([e1.id, e2.id]);
    }
    const q = prefix();
    const c = make(q, 5);
    const recC = new Recorder();
    await c.subscribe('x', recC);
    const e3 = await c.publish('x', { data: 'from c' }, 10);
    await recC.has(e3.id);
    expect(await admin.get(`${p}layout`)).toBe('v1 partitions=2');
    expect(await admin.get(`${q}layout`)).toBe('v1 partitions=5');
    expect(await a.publish('x', { data: 'a again' }, 10)).toMatchObject({ epoch: e1.epoch });
  });
});

test('checked once per connection, not per publish: 200 publishes and 20 subscriptions, one SET of the record', async () => {
  const p = prefix();
  const monitor = await client(s.url).monitor();
  try {
    const checks: string[] = [];
    let sawLast = false;
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[1] === `${p}layout`) checks.push(args.join(' '));
      if (args[0]?.toUpperCase() === 'ECHO' && args[1] === `${p}done`) sawLast = true;
    });
    const b = broker({ url: s.url, prefix: p });
    for (let i = 0; i < 20; i++) await b.subscribe(`c${i}`, new Recorder());
    const all = Array.from({ length: 200 }, (_, i) => b.publish(`c${i % 20}`, { data: 'x' }, 10));
    expect(await Promise.all(all)).toHaveLength(200);
    await admin.echo(`${p}done`); // after every publish was answered: MONITOR shows it after them
    await until(() => sawLast, 'the marker seen by MONITOR');
    expect(checks).toEqual([`SET ${p}layout v1 partitions=1 NX GET`]);
  } finally {
    monitor.disconnect();
  }
});

test('Redis restarted without persistence: the record is written again, the same layout goes on, another still refuses', async () => {
  const p = prefix();
  const one = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
  const rec = new Recorder();
  await one.subscribe('a', rec);
  await one.publish('a', { data: 'before' }, 10);
  const { port } = s;
  await s.stop();
  untrack(s);
  s = await server({ port });
  admin = client(s.url);
  await rec.until(() => rec.resets.length === 1, 'the reset of the restart');
  // the broker's reconnect wrote the record again (nobody else touched this Redis)
  await until(async () => (await admin.get(`${p}layout`)) === 'v1 partitions=1', 'the record written again');
  const after = await one.publish('a', { data: 'after' }, 10);
  await rec.has(after.id);
  const four = broker({ url: s.url, prefix: p, partitions: 4 });
  expectNamesBoth(await refusal(four.publish('a', { data: 'x' }, 10)), p, 4, 1);
});

test('FLUSHALL: the same layout goes on, no refusal; another layout that writes the record first makes the old one refuse', async () => {
  const p = prefix();
  const one = broker({ url: s.url, prefix: p });
  await one.publish('a', { data: 'x' }, 10);
  await admin.flushall();
  // same layout: publishing goes on, and the new epoch it met put the record back
  await one.publish('a', { data: 'y' }, 10);
  await until(async () => (await admin.get(`${p}layout`)) === 'v1 partitions=1', 'the record written again');
  await one.publish('a', { data: 'z' }, 10);

  await admin.flushall();
  // another layout comes first now: it gets the record
  const four = broker({ url: s.url, prefix: p, partitions: 4 });
  await four.publish('a', { data: 'four' }, 10);
  expect(await admin.get(`${p}layout`)).toBe('v1 partitions=4');
  // the old one's next call meets a new epoch and checks again: from then on it refuses
  await one.publish('a', { data: 'stored before it knew' }, 10);
  expectNamesBoth(await refusal(one.publish('a', { data: 'refused' }, 10)), p, 1, 4);
  expectNamesBoth(await refusal(one.subscribe('b', new Recorder())), p, 1, 4);
});

test('checked again on every reconnect: a record another layout wrote meanwhile is refused after the connection comes back', async () => {
  const p = prefix();
  const one = broker({ url: s.url, prefix: p, commandTimeout: 1000 });
  await one.publish('a', { data: 'x' }, 10);
  // the record replaced behind the broker's back (someone deleted it, and another layout wrote it)
  await admin.set(`${p}layout`, 'v1 partitions=4');
  await one.publish('a', { data: 'not checked per publish' }, 10);
  expect(await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')).toBeGreaterThan(0);
  let err: unknown;
  await until(async () => {
    err = await one.publish('a', { data: 'y' }, 10).then(
      () => undefined,
      (e: unknown) => e,
    );
    return (err as SseRelayError | undefined)?.code === 'ERR_BROKER_LAYOUT';
  }, 'the refusal after the reconnect');
  expectNamesBoth(err as SseRelayError, p, 1, 4);
});

test('two layouts starting at once on an empty prefix: exactly one refuses', async () => {
  const p = prefix();
  const brokers = [1, 3].map((n) => broker({ url: s.url, prefix: p, partitions: n }));
  const results = await Promise.allSettled(brokers.map((b) => b.publish('a', { data: 'x' }, 10)));
  const refused = results.filter((r) => r.status === 'rejected');
  expect(refused).toHaveLength(1);
  expect(((refused[0] as PromiseRejectedResult).reason as SseRelayError).code).toBe('ERR_BROKER_LAYOUT');
  const won = results.findIndex((r) => r.status === 'fulfilled');
  expect(await admin.get(`${p}layout`)).toBe(`v1 partitions=${[1, 3][won]}`);
});

test('the refused broker goes on once the old layout is gone and the key is deleted, as the error says', async () => {
  const p = prefix();
  const one = broker({ url: s.url, prefix: p });
  await one.publish('a', { data: 'x' }, 10);
  const four = broker({ url: s.url, prefix: p, partitions: 4 });
  await refusal(four.publish('a', { data: 'x' }, 10));
  await one.close();
  expect(await admin.del(`${p}layout`)).toBe(1);
  let done: BrokerEvent | undefined;
  await until(async () => {
    done = await four.publish('a', { data: 'now' }, 10).catch(() => undefined);
    return done !== undefined;
  }, 'a publish of the new layout');
  expect(done!.id).toMatch(/^[A-Za-z0-9._-]{1,128}$/);
  expect(await admin.get(`${p}layout`)).toBe('v1 partitions=4');
});

test('a record this version cannot read (another id format, or not a string): refused, the value quoted', async () => {
  const p = prefix();
  await admin.set(`${p}layout`, 'v2 partitions=8 ids=x');
  const b = broker({ url: s.url, prefix: p });
  const err = await refusal(b.publish('a', { data: 'x' }, 10));
  expect(err.message).toContain(
    `(a record this version cannot read: 'v2 partitions=8 ids=x', recorded in key '${p}layout')`,
  );
  expect(err.message).toContain(
    `Use a new prefix, or stop every process under this one and delete the key (DEL ${p}layout)`,
  );
  const q = prefix();
  await admin.hset(`${q}layout`, 'partitions', '1');
  const c = broker({ url: s.url, prefix: q });
  expect((await refusal(c.publish('a', { data: 'x' }, 10))).message).toContain('cannot read: not a string');
});

describe("the run's Redis Cluster, the caller's Cluster client", () => {
  const clusterBrokers: RedisBroker[] = [];
  const clients: Cluster[] = [];
  afterEach(async () => {
    for (const b of clusterBrokers.splice(0)) await b.close();
    for (const c of clients.splice(0)) c.disconnect();
  });

  test.each([
    ['ioredis 5', Cluster],
    ['ioredis 6 (RESP3)', Redis6.Cluster],
  ] as const)('%s: 8 by default, then 4 on the same prefix: refused; 8 again: both work', async (_label, Ctor) => {
    const p = `lay-cl${process.pid}-${Ctor === Cluster ? 5 : 6}-${Date.now()}:`;
    const make = (partitions?: number): RedisBroker => {
      const c = new (Ctor as typeof Cluster)(clusterNodes());
      c.on('error', () => undefined);
      clients.push(c);
      const b = new RedisBroker({ redis: c, prefix: p, partitions });
      clusterBrokers.push(b);
      return b;
    };
    const eight = make();
    const rec = new Recorder();
    await eight.subscribe('a', rec);
    await eight.publish('a', { data: 'x' }, 10);
    const four = make(4);
    expectNamesBoth(await refusal(four.publish('a', { data: 'x' }, 10)), p, 4, 8);
    expectNamesBoth(await refusal(four.subscribe('a', new Recorder())), p, 4, 8);
    const other = make(8);
    const e = await other.publish('a', { data: 'y' }, 10);
    await rec.has(e.id);
    expect(rec.events.map((x) => x.data)).toEqual(['x', 'y']);
    const admin = clients[0]!;
    expect(await admin.get(`${p}layout`)).toBe('v1 partitions=8');
    await admin.del(`${p}layout`);
    for (const k of await Promise.all(admin.nodes('master').map((n) => n.keys(`${p}*`))))
      if (k.length > 0) for (const key of k) await admin.del(key);
  });
});
