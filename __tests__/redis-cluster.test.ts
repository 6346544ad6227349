/**
 * RedisBroker on a real Redis Cluster of its own (3 masters, 3 replicas, so
 * stats and faults concern this file only): one subscriber connection per
 * master and none on replicas, subscriptions batched per slot, each publish
 * handled by the master of its channel's slot alone, two brokers delivering
 * exactly once in order; behind NAT, a reply lost (also with its slot
 * migrated before the call is asked again) and half-open command and
 * subscriber connections to one master; then CLUSTER FAILOVER, a master
 * SIGKILLed with its replica promoted, and a slot migrated while streams are live.
 */
import { Cluster } from 'ioredis';
import type { BrokerEvent } from '../lib/brokers/broker';
import { RedisBroker } from '../lib/brokers/redis';
import type { SseRelayError } from '../lib/errors';
import { keySlot } from '../lib/brokers/redis/partitions';
import { Recorder } from '../lib/testing';
import { killAll, run, start } from './helpers/cli-run';
import { startCluster, type RedisCluster } from './helpers/redis-cluster';
import { freePort } from './helpers/redis-server';
import { startProxy, type ProxyConnection, type TcpProxy } from './helpers/tcp-proxy';
import { onePerPartition, throughProxies } from './helpers/timeline';
import { sleep, until } from './helpers/wait';

jest.setTimeout(120_000);

let cluster: RedisCluster;
const brokers: RedisBroker[] = [];
const clients: Cluster[] = [];
let n = 0;
const prefix = (): string => `cl${process.pid}-${++n}:`;

beforeAll(async () => {
  cluster = await startCluster();
});

afterAll(async () => {
  await cluster?.stop();
});

afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
  for (const c of clients.splice(0)) c.disconnect();
  await cluster.waitHealthy();
});

function broker(options: Omit<NonNullable<ConstructorParameters<typeof RedisBroker>[0]>, 'cluster'> = {}): RedisBroker {
  const b = new RedisBroker({ cluster: cluster.startup, commandTimeout: 2000, healthCheckInterval: 500, ...options });
  brokers.push(b);
  return b;
}

async function eachNode<T>(fn: (port: number, role: 'master' | 'replica') => Promise<T>): Promise<Map<number, T>> {
  const out = new Map<number, T>();
  for (const [port, role] of await cluster.roles()) out.set(port, await fn(port, role));
  return out;
}

async function commandCalls(port: number, command: string): Promise<number> {
  const info = (await cluster.client(port).call('INFO', 'commandstats')) as string;
  const m = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info);
  return m === null ? 0 : Number(m[1]);
}

interface Migration {
  readonly dst: ReturnType<RedisCluster['client']>;
  /** MIGRATE `keys` (all still in the slot when omitted) to the new master. */
  move(keys?: readonly string[]): Promise<void>;
  /** Moves what is left and gives the slot to the new master, on every master. */
  finish(): Promise<void>;
}

/** Starts moving `slot` from its master to another master (IMPORTING there, MIGRATING here). */
async function startMigration(slot: number): Promise<Migration> {
  const from = await cluster.masterOf(slot);
  const roles = await cluster.roles();
  const to = [...roles].find(([port, r]) => r === 'master' && port !== from)![0];
  const src = cluster.client(from);
  const dst = cluster.client(to);
  const srcId = (await src.call('CLUSTER', 'MYID')) as string;
  const dstId = (await dst.call('CLUSTER', 'MYID')) as string;
  await dst.call('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', srcId);
  await src.call('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', dstId);
  const move = async (keys?: readonly string[]): Promise<void> => {
    if (keys !== undefined) {
      await src.call('MIGRATE', '127.0.0.1', String(to), '', '0', '5000', 'REPLACE', 'KEYS', ...keys);
      return;
    }
    for (let i = 0; i < 1000; i++) {
      const left = (await src.call('CLUSTER', 'GETKEYSINSLOT', String(slot), '100')) as string[];
      if (left.length === 0) return;
      await src.call('MIGRATE', '127.0.0.1', String(to), '', '0', '5000', 'REPLACE', 'KEYS', ...left);
    }
  };
  return {
    dst,
    move,
    async finish() {
      await move();
      for (const [port, r] of roles)
        if (r === 'master') await cluster.client(port).call('CLUSTER', 'SETSLOT', String(slot), 'NODE', dstId);
      await until(async () => (await cluster.masterOf(slot)) === to, 'the slot owned by its new master', 10_000);
    },
  };
}

describe('topology', () => {
  test('one subscriber connection per master, none on replicas; 10,000 channels in one SSUBSCRIBE per partition', async () => {
    const b = broker({ prefix: prefix() });
    expect(b.partitions).toBe(8);
    await eachNode((port) => cluster.client(port).call('CONFIG', 'RESETSTAT'));
    const rec = new Recorder();
    const channels = Array.from({ length: 10_000 }, (_, i) => `many:${i}`);
    await Promise.all(channels.map((c) => b.subscribe(c, rec)));
    const pubsub = await eachNode(async (port) => {
      const list = (await cluster.client(port).call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string;
      return list.split('\n').filter((l) => l.includes('name=sse-relay:sub')).length;
    });
    const roles = await cluster.roles();
    for (const [port, count] of pubsub) expect([port, count]).toEqual([port, roles.get(port) === 'master' ? 1 : 0]);
    let ssubscribes = 0;
    for (const port of roles.keys()) ssubscribes += await commandCalls(port, 'ssubscribe');
    expect(ssubscribes).toBe(8);
    expect(b.stats()).toMatchObject({ subscribed: 10_000, connections: 3 });
    const sample = channels.filter((_, i) => i % 100 === 0);
    const evs = await Promise.all(sample.map((c) => b.publish(c, { data: c }, 10)));
    await rec.count(evs.length);
    expect(rec.events.map((e) => e.id).sort()).toEqual(evs.map((e) => e.id).sort());
    await Promise.all(channels.map((c) => b.unsubscribe(c, rec)));
    for (const port of roles.keys()) {
      expect(await cluster.client(port).call('PUBSUB', 'SHARDCHANNELS', '*')).toEqual([]);
    }
    await until(
      async () =>
        [
          ...(
            await eachNode(
              async (port) => (await cluster.client(port).call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string,
            )
          ).values(),
        ].every((l) => !l.includes('sse-relay:sub')),
      'no subscriber connection left',
    );
  });

  test("each master handles only its own channels' publishes (INFO commandstats); replicas none", async () => {
    const b = broker({ prefix: prefix() });
    await b.publish('warm', { data: 'x' }, 10);
    await eachNode((port) => cluster.client(port).call('CONFIG', 'RESETSTAT'));
    const expected = new Map<number, number>();
    const channels = Array.from({ length: 60 }, (_, i) => `spread:${i}`);
    for (const c of channels) {
      const ev = await b.publish(c, { data: c }, 10); // one FCALL each (awaited one by one)
      const owner = await cluster.masterOf(keySlot(b.keyOf(c)));
      expect(ev.partition).toBe(b.partitionOf(c));
      expected.set(owner, (expected.get(owner) ?? 0) + 1);
    }
    const roles = await cluster.roles();
    for (const [port, role] of roles) {
      const calls = await commandCalls(port, 'fcall');
      expect([port, role, calls]).toEqual([port, role, role === 'master' ? (expected.get(port) ?? 0) : 0]);
    }
    expect([...expected.values()].filter((v) => v > 0)).toHaveLength(3); // channels spread over all masters
  });

  test("one turn's publishes over every partition: one call per partition, one socket write per master", async () => {
    const c = new Cluster(cluster.startup, { enableReadyCheck: true });
    clients.push(c);
    const b = new RedisBroker({ redis: c, prefix: prefix(), commandTimeout: 2000 });
    brokers.push(b);
    const channels = onePerPartition(b, 'turn');
    await Promise.all(channels.map((ch) => b.publish(ch, { data: 'warm' }, 10))); // connected, library loaded
    const writes = new Map<string, number>();
    const restore: (() => void)[] = [];
    for (const node of c.nodes('master')) {
      const socket = (node as unknown as { stream: { _write: unknown; _writev: unknown } }).stream;
      const name = `${node.options.host}:${node.options.port}`;
      writes.set(name, 0);
      for (const method of ['_write', '_writev'] as const) {
        const original = socket[method] as (...args: unknown[]) => unknown;
        socket[method] = function (this: unknown, ...args: unknown[]) {
          writes.set(name, writes.get(name)! + 1);
          return original.apply(this, args);
        };
        restore.push(() => (socket[method] = original));
      }
    }
    await eachNode((port) => cluster.client(port).call('CONFIG', 'RESETSTAT'));
    try {
      const events = await Promise.all(channels.map((ch) => b.publish(ch, { data: ch }, 10)));
      expect(events.map((e) => e.partition)).toEqual(channels.map((_, p) => p));
    } finally {
      for (const r of restore) r();
    }
    expect([...writes.values()]).toEqual([1, 1, 1]);
    let fcalls = 0;
    for (const [port, role] of await cluster.roles())
      if (role === 'master') fcalls += await commandCalls(port, 'fcall');
    expect(fcalls).toBe(b.partitions);
  });

  test('two brokers publishing on channels over all masters: each listener gets every event once, in order per partition; one id resumes across shards', async () => {
    const p = prefix();
    const a = broker({ prefix: p });
    const b = broker({ prefix: p });
    const channels = onePerPartition(a, 'two');
    const ra = new Recorder();
    const rb = new Recorder();
    for (const c of channels) {
      await a.subscribe(c, ra);
      await b.subscribe(c, rb);
    }
    const start = (await a.replay(channels, undefined)).heads;
    const acked = await Promise.all(
      Array.from({ length: 400 }, (_, i) => (i % 2 ? a : b).publish(channels[i % 8]!, { data: String(i) }, 1000)),
    );
    for (const r of [ra, rb]) {
      await r.count(400);
      for (let part = 0; part < 8; part++) {
        const got = r.events.filter((e) => e.partition === part);
        expect(got.map((e) => e.seq)).toEqual(
          acked
            .filter((e) => e.partition === part)
            .map((e) => e.seq)
            .sort((x, y) => x - y),
        );
      }
    }
    const after = new Map([...start].map(([part, pos]) => [part, pos.seq]));
    const r = await b.replay(channels, after);
    expect(r.complete).toBe(true);
    expect(r.events.map((e) => e.id).sort()).toEqual(acked.map((e) => e.id).sort());
  });
});

/**
 * Publishes from two brokers on one channel per partition while `fault` runs; returns what
 * was acknowledged and the listeners of a third broker (and of the publishers).
 */
async function underFault(
  fault: (channels: string[]) => Promise<void>,
): Promise<{ acked: BrokerEvent[]; recs: Recorder[]; channels: string[] }> {
  const p = prefix();
  const pubs = [broker({ prefix: p }), broker({ prefix: p })];
  const watcher = broker({ prefix: p });
  const channels = onePerPartition(watcher, 'f');
  const recs = [new Recorder(), new Recorder()];
  for (const c of channels) {
    await watcher.subscribe(c, recs[0]!);
    await pubs[0]!.subscribe(c, recs[1]!);
  }
  const acked: BrokerEvent[] = [];
  let stop = false;
  const loops = pubs.map(async (b, bi) => {
    for (let i = 0; !stop && i < 5000; i++) {
      try {
        acked.push(await b.publish(channels[i % channels.length]!, { data: `${bi}-${i}` }, 5000));
      } catch {
        await sleep(20); // not acknowledged: not expected anywhere
      }
      await sleep(3);
    }
  });
  // a fence, not a sleep: on a loaded machine 300 ms once gave too few acknowledged events to judge
  await until(() => acked.length >= 120, 'publishing before the fault', 20_000);
  await fault(channels);
  await cluster.waitHealthy();
  await sleep(1500);
  stop = true;
  await Promise.all(loops);
  // one more acknowledged event per channel, after everything settled
  for (const c of channels) {
    for (let i = 0; i < 100; i++) {
      const ev = await pubs[0]!.publish(c, { data: 'last' }, 5000).catch(() => undefined);
      if (ev !== undefined) {
        acked.push(ev);
        break;
      }
      await sleep(100);
    }
  }
  for (const r of recs) {
    await r.until(
      () => {
        const got = new Set(r.ids());
        const lasts = acked.filter((e) => e.data === 'last');
        return lasts.length === channels.length && lasts.every((e) => got.has(e.id));
      },
      'the last event of every channel',
      30_000,
    );
  }
  return { acked, recs, channels };
}

/** Per channel: no duplicate, seq order within an epoch; every acked event of the channel's final epoch delivered, and of the old one too unless the channel got (exactly one) reset. */
function expectOutcome(acked: BrokerEvent[], rec: Recorder, channels: string[], resetsAllowed: boolean): number {
  let resetChannels = 0;
  for (const c of channels) {
    const got = rec.events.filter((e) => e.channel === c);
    expect(new Set(got.map((e) => e.id)).size).toBe(got.length);
    for (let i = 1; i < got.length; i++)
      if (got[i]!.epoch === got[i - 1]!.epoch) expect(got[i]!.seq).toBeGreaterThan(got[i - 1]!.seq);
    const resets = rec.resets.filter((r) => r.channel === c);
    expect(resets.length).toBeLessThanOrEqual(resetsAllowed ? 1 : 0);
    const mine = acked.filter((e) => e.channel === c);
    const finalEpoch = mine[mine.length - 1]!.epoch;
    const ids = new Set(got.map((e) => e.id));
    const missing = mine.filter((e) => !ids.has(e.id));
    if (resets.length === 0) expect(missing.map((e) => e.id)).toEqual([]);
    else {
      resetChannels++;
      expect(missing.filter((e) => e.epoch === finalEpoch).map((e) => e.id)).toEqual([]);
      // after the reset: only events of its epoch
      const at = rec.events.indexOf(got.find((e) => e.epoch === resets[0]!.head.epoch)!);
      expect(at).toBeGreaterThanOrEqual(0);
    }
    // nothing that was not acknowledged (everything published was acknowledged or rejected)
    const ackedIds = new Set(mine.map((e) => e.id));
    expect(got.filter((e) => !ackedIds.has(e.id)).map((e) => e.data)).toEqual([]);
  }
  return resetChannels;
}

describe('behind NAT (a proxy per node, the Cluster client told by natMap)', () => {
  const proxies = new Map<number, TcpProxy>();
  beforeEach(async () => {
    for (const { port } of cluster.nodes) proxies.set(port, await startProxy(port));
  });
  afterEach(async () => {
    for (const px of proxies.values()) await px.close();
    proxies.clear();
  });
  /** A broker that opens its cluster through the proxies only. */
  function natBroker(p: string): RedisBroker {
    const b = new RedisBroker({
      ...throughProxies(proxies),
      prefix: p,
      commandTimeout: 1000,
      healthCheckInterval: 500,
    });
    brokers.push(b);
    return b;
  }
  /** A NAT broker on a fresh prefix and a direct watcher listening to one channel per partition. */
  async function natWatched(
    tag: string,
  ): Promise<{ b: RedisBroker; watcher: RedisBroker; rec: Recorder; channels: string[] }> {
    const p = prefix();
    const b = natBroker(p);
    const watcher = broker({ prefix: p });
    const rec = new Recorder();
    const channels = onePerPartition(b, tag);
    for (const c of channels) await watcher.subscribe(c, rec);
    return { b, watcher, rec, channels };
  }
  /** The connections named `name` through node `port`'s proxy that still work (neither stalled nor closed). */
  const working = (port: number, name: string): ProxyConnection[] =>
    proxies
      .get(port)!
      .find(name)
      .filter((c) => !c.stalled && !c.closed);
  const through = (name: string): number =>
    [...proxies.values()].reduce((n, px) => n + px.find(name).filter((c) => !c.stalled).length, 0);

  test('commands and subscriber connections all go to the mapped addresses', async () => {
    const b = natBroker(prefix());
    const rec = new Recorder();
    const channels = onePerPartition(b, 'nat');
    for (const c of channels) await b.subscribe(c, rec);
    const evs: BrokerEvent[] = [];
    for (const c of channels) evs.push(await b.publish(c, { data: c }, 10));
    await rec.count(evs.length);
    expect(rec.ids()).toEqual(evs.map((e) => e.id));
    expect(through('sse-relay:sub')).toBe(3); // one per master, each through its proxy
    expect(through('sse-relay')).toBeGreaterThanOrEqual(3);
    expect(b.stats()).toMatchObject({ connections: 3 });
  });

  test('a reply lost with the connection to one master: the publish is asked again under its call id, stored and delivered once', async () => {
    const { b, watcher, rec, channels } = await natWatched('lost');
    const warm = await b.publish(channels[0]!, { data: 'warm' }, 100);
    await rec.has(warm.id);
    const port = await cluster.masterOf(keySlot(b.keyOf(channels[0]!)));
    const [cmd] = proxies.get(port)!.find('sse-relay');
    const dropped = cmd!.dropReplyTo('sse_relay_batch_v2');
    const once = await b.publish(channels[0]!, { data: 'once' }, 100);
    await dropped;
    expect(cmd!.closed).toBe(true); // the reply really was lost with its connection
    const next = await b.publish(channels[0]!, { data: 'next' }, 100);
    await rec.has(next.id);
    expect(once.seq).toBe(warm.seq + 1);
    expect(rec.events.map((e) => e.data)).toEqual(['warm', 'once', 'next']);
    const r = await watcher.replay([channels[0]!], new Map([[warm.partition, 0]]));
    expect(r.events.map((e) => e.data)).toEqual(['warm', 'once', 'next']);
  });

  test('a half-open command connection to one master: its publishes fail within commandTimeout, then a new connection carries on; every acknowledged event once, nothing that failed', async () => {
    const { b, rec, channels } = await natWatched('half');
    const acked: BrokerEvent[] = [];
    for (const c of channels) acked.push(await b.publish(c, { data: c }, 1000));
    await rec.count(acked.length);
    const victim = channels[0]!;
    const port = await cluster.masterOf(keySlot(b.keyOf(victim)));
    const cmd = proxies.get(port)!.find('sse-relay');
    expect(cmd).toHaveLength(1);
    cmd[0]!.stall();
    const failed: string[] = [];
    const started = Date.now();
    const err = await b.publish(victim, { data: 'stalled' }, 1000).then(
      () => undefined,
      (e: unknown) => e as SseRelayError,
    );
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(err).toMatchObject({ code: 'ERR_BROKER_UNAVAILABLE' });
    expect(['unknown', 'not-published']).toContain(err!.outcome);
    failed.push('stalled');
    // the stalled connection was given up: a publish to that master soon goes through a new one
    let next: BrokerEvent | undefined;
    for (let i = 0; next === undefined && i < 50; i++) {
      next = await b.publish(victim, { data: `after ${i}` }, 1000).catch(() => {
        failed.push(`after ${i}`);
        return undefined;
      });
    }
    expect(next).toBeDefined();
    acked.push(next!);
    for (const c of channels.slice(1)) acked.push(await b.publish(c, { data: 'more ' + c }, 1000));
    await rec.until(() => acked.every((e) => rec.ids().includes(e.id)), 'every acknowledged event');
    expect(rec.events.map((e) => e.id)).toEqual([...new Set(rec.ids())]); // each once
    expect(rec.events.filter((e) => failed.includes(e.data))).toEqual([]); // nothing that failed
    expect(rec.events).toHaveLength(acked.length);
    expect(rec.resets).toEqual([]);
    expect(working(port, 'sse-relay')).toHaveLength(1);
  });

  test('a reply lost, then its slot migrated before the call is asked again: answered from its at-most-once mark on the new master, stored and delivered once', async () => {
    const { b, watcher, rec, channels } = await natWatched('lostmoved');
    const ch = channels[0]!;
    const warm = await b.publish(ch, { data: 'warm' }, 100);
    await rec.has(warm.id);
    const slot = keySlot(b.keyOf(ch));
    const port = await cluster.masterOf(slot);
    const px = proxies.get(port)!;
    const [cmd] = px.find('sse-relay');
    const dropped = cmd!.dropReplyTo('sse_relay_batch_v2');
    px.retarget(await freePort()); // the call cannot be asked again until the slot has moved
    const once = b.publish(ch, { data: 'once' }, 100);
    await dropped;
    const migration = await startMigration(slot);
    await migration.finish(); // the call's mark moves with the partition's keys: one hash slot
    px.retarget(port);
    const ev = await once;
    expect(ev.seq).toBe(warm.seq + 1);
    const next = await b.publish(ch, { data: 'next' }, 100);
    expect(next.seq).toBe(warm.seq + 2); // "once" was stored once
    await rec.has(next.id);
    expect(rec.events.map((e) => e.data)).toEqual(['warm', 'once', 'next']);
    const r = await watcher.replay([ch], new Map([[warm.partition, 0]]));
    expect(r.events.map((e) => e.data)).toEqual(['warm', 'once', 'next']);
    expect(rec.resets).toEqual([]);
  });

  test("a half-open subscriber connection to one master: noticed by its health check, reconnected and caught up exactly; the other masters' stay", async () => {
    const p = prefix();
    const sub = natBroker(p);
    const pub = broker({ prefix: p });
    const rec = new Recorder();
    const channels = onePerPartition(sub, 'hsub');
    for (const c of channels) await sub.subscribe(c, rec);
    const acked: BrokerEvent[] = [];
    for (const c of channels) acked.push(await pub.publish(c, { data: 'before ' + c }, 1000));
    await rec.count(acked.length);
    const port = await cluster.masterOf(keySlot(sub.keyOf(channels[0]!)));
    const stalled = proxies.get(port)!.find('sse-relay:sub');
    expect(stalled).toHaveLength(1);
    const others = [...proxies].filter(([q]) => q !== port).flatMap(([, px]) => px.find('sse-relay:sub'));
    expect(others).toHaveLength(2);
    const recoveries = sub.stats().recoveries;
    stalled[0]!.stall();
    for (let i = 0; i < 5; i++) {
      for (const c of channels) acked.push(await pub.publish(c, { data: `during ${i} ${c}` }, 1000));
      await sleep(100);
    }
    await rec.until(
      () => acked.every((e) => rec.ids().includes(e.id)),
      'every event published during the stall',
      15_000,
    );
    const last = await pub.publish(channels[0]!, { data: 'last' }, 1000);
    await rec.has(last.id);
    acked.push(last);
    expect(sub.stats().recoveries).toBeGreaterThan(recoveries);
    for (const c of channels) {
      expect(rec.events.filter((e) => e.channel === c).map((e) => e.id)).toEqual(
        acked.filter((e) => e.channel === c).map((e) => e.id),
      ); // each once, in order
    }
    expect(rec.resets).toEqual([]);
    // the stalled one given up for a new one through the same proxy; the other masters' untouched
    expect(working(port, 'sse-relay:sub')).toHaveLength(1);
    expect(others.filter((c) => c.stalled || c.closed)).toEqual([]);
    expect(sub.stats().connections).toBe(3);
  });
});

describe('the sse-relay command on a cluster (--cluster startup nodes)', () => {
  afterAll(killAll);
  const nodes = (): string => cluster.startup.map((n) => `${n.host}:${n.port}`).join(',');

  test('publish prints the id a listener gets the event with; tail prints the live events of a channel', async () => {
    const p = prefix();
    const b = broker({ prefix: p });
    const rec = new Recorder();
    const [first, second] = onePerPartition(b, 'cli');
    await b.subscribe(first!, rec);
    const r = await run(['publish', first!, '<b>hi</b>', '--event', 'note', '--cluster', nodes(), '--prefix', p]);
    expect(r.code).toBe(0);
    const id = r.stdout.trim();
    await rec.has(id);
    expect(rec.events.map((e) => [e.id, e.event, e.data])).toEqual([[id, 'note', '<b>hi</b>']]);

    const tail = start(['tail', second!, '--cluster', nodes(), '--prefix', p]);
    let out = '';
    let err = '';
    tail.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    tail.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    await until(() => err.includes('tailing'), 'tail to be subscribed');
    const ev = await b.publish(second!, { data: 'live' }, 10);
    await until(() => out.includes('\n'), 'a line from tail');
    expect(JSON.parse(out.trim())).toEqual({ id: ev.id, event: 'message', data: 'live' });
    const ended = new Promise<number | null>((resolve) => tail.once('exit', (code) => resolve(code)));
    tail.kill('SIGINT');
    expect(await ended).toBe(0);
  });
});

describe('faults', () => {
  test('CLUSTER FAILOVER of a master: every acknowledged event exactly once in order, or one reset only for the channels the promoted replica now serves', async () => {
    let promoted = 0;
    const { acked, recs, channels } = await underFault(async () => {
      const roles = await cluster.roles();
      promoted = [...roles].find(([, r]) => r === 'replica')![0];
      await cluster.client(promoted).call('CLUSTER', 'FAILOVER');
      await until(async () => (await cluster.roles()).get(promoted) === 'master', 'the replica promoted', 20_000);
    });
    expect(acked.length).toBeGreaterThan(100);
    // A promoted replica cannot tell whether its old master acknowledged writes it never got
    // (a forced or crash failover loses them; see the SIGKILL test and redis-faults), so its
    // partitions start a new epoch: their channels may get one reset, the others none.
    const b = brokers[brokers.length - 1]!;
    const onPromoted = new Set<string>();
    for (const c of channels) if ((await cluster.masterOf(keySlot(b.keyOf(c)))) === promoted) onPromoted.add(c);
    for (const r of recs) {
      expectOutcome(acked, r, channels, true);
      expect(r.resets.filter((x) => !onPromoted.has(x.channel)).map((x) => x.channel)).toEqual([]);
    }
  });

  test('SIGKILL of a master, replica promoted: exactly once in order, or one reset for the channels whose history is gone', async () => {
    let killed = 0;
    const { acked, recs, channels } = await underFault(async () => {
      const roles = await cluster.roles();
      const master = [...roles].find(([, r]) => r === 'master')![0];
      killed = master;
      await cluster.nodes.find((x) => x.port === master)!.server.kill();
      await until(
        async () => [...(await cluster.roles()).values()].filter((r) => r === 'master').length === 3,
        'a replica promoted',
        30_000,
      );
    });
    expect(killed).toBeGreaterThan(0);
    expect(acked.length).toBeGreaterThan(100);
    for (const r of recs) expectOutcome(acked, r, channels, true);
  });

  test("the one-key FCALL while its slot migrates: refused whole (TRYAGAIN) once the partition's B!d has moved, nothing half-written", async () => {
    const b = broker({ prefix: prefix() });
    const [ch] = onePerPartition(b, 'mig1');
    const key = b.keyOf(ch!);
    const base = key.slice(0, key.indexOf('}') + 1);
    const slot = keySlot(key);
    await b.publish('warm', { data: 'x' }, 10); // the library is loaded on every master
    const src = cluster.client(await cluster.masterOf(slot));
    // history 1: the stream is trimmed past 9 entries, and a trim writes B!d
    for (let i = 0; i < 9; i++) await src.call('FCALL', 'sse_relay_publish_v1', '1', key, `e${i}`, '', '', '1');
    expect(await src.call('XLEN', key)).toBe(9);
    const headBefore = await src.call('HGET', base, 's');
    const m = await startMigration(slot);
    try {
      await m.move([`${base}!d`]);
      await expect(src.call('FCALL', 'sse_relay_publish_v1', '1', key, 'e9', '', '', '1')).rejects.toThrow(
        /TRYAGAIN sse-relay: the partition is moving/,
      );
      expect(await src.call('XLEN', key)).toBe(9); // nothing stored, nothing sent
      expect(await src.call('HGET', base, 's')).toBe(headBefore);
    } finally {
      await m.finish(); // so the cluster is whole for what follows
    }
    // moved: the same call goes through on the new master, after the nine
    expect(await m.dst.call('FCALL', 'sse_relay_publish_v1', '1', key, 'e9', '', '', '1')).toEqual([
      expect.any(String),
      String(Number(headBefore) + 1),
    ]);
  });

  test("the one-key FCALL with another partition's tag: refused, naming the channel's key, which then goes through", async () => {
    const b = broker({ prefix: prefix() });
    const [ch0, ch1] = onePerPartition(b, 'tag');
    const right = b.keyOf(ch0!);
    const other = b.keyOf(ch1!);
    const wrong = other.slice(0, other.indexOf('}') + 1) + ':' + ch0;
    await b.publish('warm', { data: 'x' }, 10);
    const node = cluster.client(await cluster.masterOf(keySlot(wrong)));
    await expect(node.call('FCALL', 'sse_relay_publish_v1', '1', wrong, 'x')).rejects.toThrow(
      new RegExp(`^ERR sse-relay: channel ${ch0} belongs to key ${right.replace(/[.{}]/g, '\\$&')}$`),
    );
    const own = cluster.client(await cluster.masterOf(keySlot(right)));
    expect(await own.call('FCALL', 'sse_relay_publish_v1', '1', right, 'x')).toEqual([
      expect.any(String),
      expect.stringMatching(/^[1-9]\d*$/),
    ]);
  });

  test('the one-key FCALL sent on by ASK to the importing master before the partition has moved: refused whole (TRYAGAIN), nothing created there', async () => {
    const b = broker({ prefix: prefix() });
    const [ch] = onePerPartition(b, 'mig2');
    const key = b.keyOf(ch!);
    const base = key.slice(0, key.indexOf('}') + 1);
    const slot = keySlot(key);
    await b.publish('warm', { data: 'x' }, 10);
    const src = cluster.client(await cluster.masterOf(slot));
    for (let i = 0; i < 5; i++) await src.call('FCALL', 'sse_relay_publish_v1', '1', key, `e${i}`);
    const [epochBefore, headBefore] = (await src.call('HMGET', base, 'e', 's')) as [string, string];
    const m = await startMigration(slot);
    /** What a cluster client does after an ASK: ASKING, then the command, on the importing master. */
    const asking = async (...args: string[]): Promise<unknown> => {
      const replies = (await m.dst
        .pipeline()
        .call('ASKING')
        .call(args[0]!, ...args.slice(1))
        .exec())!;
      expect(replies[0]).toEqual([null, 'OK']);
      const [err, reply] = replies[1]!;
      if (err !== null) throw err;
      return reply;
    };
    try {
      // The channel's stream has moved, the partition's state (B, B!d) has not: the source asks
      // the caller to go on to the importing master, which must not start a partition of its own.
      await m.move([key]);
      await expect(src.call('FCALL', 'sse_relay_publish_v1', '1', key, 'e5')).rejects.toThrow(/^ASK /);
      await expect(asking('FCALL', 'sse_relay_publish_v1', '1', key, 'e5')).rejects.toThrow(
        /TRYAGAIN sse-relay: the partition is moving/,
      );
      expect(await asking('EXISTS', base)).toBe(0);
      expect(await asking('XLEN', key)).toBe(5);
    } finally {
      await m.finish();
    }
    // moved whole: the call goes through on the new master, in the same epoch, after the five
    expect(await m.dst.call('FCALL', 'sse_relay_publish_v1', '1', key, 'e5')).toEqual([
      epochBefore,
      String(Number(headBefore) + 1),
    ]);
    expect(await m.dst.call('XLEN', key)).toBe(6);
  });

  test('a publish held by TRYAGAIN while its slot migrates, then one published once the client knows the new master: stored and delivered in publish order', async () => {
    // ioredis sends a TRYAGAIN'd call again after retryDelayOnTryAgain (3 s here): a window in which
    // the client learns the slot's new master, and the partition's next call must still wait its turn.
    const b = broker({ prefix: prefix(), commandTimeout: 10_000, clusterOptions: { retryDelayOnTryAgain: 3000 } });
    const [ch] = onePerPartition(b, 'order');
    const key = b.keyOf(ch!);
    const slot = keySlot(key);
    const rec = new Recorder();
    await b.subscribe(ch!, rec);
    const e0 = await b.publish(ch!, { data: 'e0' }, 100);
    /** FCALLs the slot's master ran or refused (a TRYAGAIN before the call runs is a rejected call). */
    const fcalls = async (): Promise<number> => {
      const info = (await cluster.client(await cluster.masterOf(slot)).call('INFO', 'commandstats')) as string;
      const m = /cmdstat_fcall:calls=(\d+).*?rejected_calls=(\d+)/.exec(info);
      return m === null ? 0 : Number(m[1]) + Number(m[2]);
    };
    const before = await fcalls();
    const m = await startMigration(slot);
    let e1: Promise<BrokerEvent>;
    try {
      await m.move([key]); // the stream has moved, the partition's state has not: the call is refused with TRYAGAIN
      e1 = b.publish(ch!, { data: 'e1' }, 100);
      await until(async () => (await fcalls()) > before, 'the first call tried on the old master');
    } finally {
      await m.finish();
    }
    const client = (b as unknown as { conn: { client: Cluster } }).conn.client;
    const to = String(await cluster.masterOf(slot));
    await until(async () => {
      await new Promise<void>((resolve) => client.refreshSlotsCache(() => resolve()));
      return client.slots[slot]?.[0]?.endsWith(`:${to}`) === true;
    }, 'the client to know the new master');
    const e2 = b.publish(ch!, { data: 'e2' }, 100);
    const [r1, r2] = await Promise.all([e1, e2]);
    expect(r1.seq).toBeLessThan(r2.seq); // stored in publish order
    await rec.has(r2.id);
    await rec.has(r1.id);
    expect(rec.events.map((e) => e.data)).toEqual(['e0', 'e1', 'e2']);
    expect(rec.ids()[0]).toBe(e0.id);
  });

  test('a slot migrated to another master while streams are live: exactly once in order, no reset', async () => {
    const { acked, recs, channels } = await underFault(async (chans) => {
      const b = brokers[brokers.length - 1]!;
      const m = await startMigration(keySlot(b.keyOf(chans[0]!)));
      await m.finish();
    });
    expect(acked.length).toBeGreaterThan(100);
    for (const r of recs) expect(expectOutcome(acked, r, channels, false)).toBe(0);
  });
});
