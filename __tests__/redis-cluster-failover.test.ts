/**
 * CLUSTER FAILOVER on a real Redis Cluster of its own (3 masters, 3 replicas;
 * its nodes are left in a state other tests must not inherit), with the race
 * that once lost acknowledged events silently forced by two fences instead of
 * left to timing:
 * - this process' slot map is behind the failover: the broker's CLUSTER SLOTS
 *   gets the reply from before it, as from a node that has not heard of it
 *   yet (the test holds that one reply back; every other command is real);
 * - the new master does not know the demoted one as its replica yet: CLUSTER
 *   FORGET on the new master (for 60 s it neither knows that node nor sends it
 *   the shard's messages, which is how every new master starts, for a moment).
 * The demoted master, now a replica, drops the listener's channels and accepts
 * them again, but gets nothing that is published: a subscription there would
 * wait for events that never come, and no catch-up would notice (reads follow
 * MOVED to the new master). What a user relies on: every acknowledged event of
 * the channel once, in order, or one reset and then every event of the new
 * epoch.
 */
import { Cluster } from 'ioredis';
import type { BrokerEvent } from '../lib/brokers/broker';
import { RedisBroker } from '../lib/brokers/redis';
import { keySlot } from '../lib/brokers/redis/partitions';
import { Recorder } from '../lib/testing';
import { startCluster, type RedisCluster } from './helpers/redis-cluster';
import { until } from './helpers/wait';

jest.setTimeout(120_000);

let cluster: RedisCluster;
const brokers: RedisBroker[] = [];
const clients: Cluster[] = [];

beforeAll(async () => {
  cluster = await startCluster();
});

afterAll(async () => {
  for (const b of brokers.splice(0)) await b.close();
  for (const c of clients.splice(0)) c.disconnect();
  await cluster?.stop();
});

type Call = (command: string, ...args: unknown[]) => Promise<unknown>;

/** A Cluster client whose CLUSTER SLOTS calls get `held()` when it is set (the slot map of a node behind), the real reply otherwise. */
function heldBackClient(held: () => unknown): { client: Cluster; realCall: Call } {
  const client = new Cluster(cluster.startup);
  clients.push(client);
  const target = client as unknown as { call: Call };
  const realCall = target.call.bind(client) as Call;
  target.call = (command, ...args) => {
    const sub = String(args.flat()[0] ?? '').toUpperCase();
    const reply = held();
    if (reply !== undefined && command.toUpperCase() === 'CLUSTER' && sub === 'SLOTS') return Promise.resolve(reply);
    return realCall(command, ...args);
  };
  return { client, realCall };
}

function subscribers(list: string): number {
  return list.split('\n').filter((l) => l.includes('name=sse-relay:sub')).length;
}

/** The ids of this process' subscriber connections on `port`, subscribed to anything yet or not. */
async function subscriberIds(port: number): Promise<string[]> {
  const list = (await cluster.client(port).call('CLIENT', 'LIST')) as string;
  return list
    .split('\n')
    .filter((l) => l.includes('name=sse-relay:sub'))
    .map((l) => /\bid=(\d+)/.exec(l)![1]!);
}

/** The one subscriber connection on `port` that is not `old`, once there is one. */
async function nextSubscriber(port: number, old: string): Promise<string> {
  let id = '';
  await until(
    async () => {
      const ids = await subscriberIds(port);
      id = ids.length === 1 && ids[0] !== old ? ids[0]! : '';
      return id !== '';
    },
    'the subscriber connection opened again',
    10_000,
  );
  return id;
}

test('the subscriber connection lost while its node is asked which node serves the slot: the channel is subscribed again, nothing missed', async () => {
  const prefix = `ask${process.pid}:`;
  const client = new Cluster(cluster.startup);
  clients.push(client);
  const sub = new RedisBroker({ redis: client, prefix, commandTimeout: 2000, healthCheckInterval: 500 });
  const pub = new RedisBroker({ cluster: cluster.startup, prefix, commandTimeout: 2000, healthCheckInterval: 500 });
  brokers.push(sub, pub);
  const ch = 'asked:0';
  const master = await cluster.masterOf(keySlot(sub.keyOf(ch)));
  const rec = new Recorder();
  await sub.subscribe(ch, rec);
  const acked: BrokerEvent[] = [await pub.publish(ch, { data: 'before' }, 10)];
  await rec.has(acked[0]!.id);

  // the fence: once the connection is cut, the first CLUSTER SLOTS the listener's client sends
  // while the channel is subscribed again on the master (the broker asking the node itself,
  // after SSUBSCRIBE) waits until released
  let entered!: () => void;
  const asked = new Promise<void>((resolve) => (entered = resolve));
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let armed = false;
  const subscribedAgain = async (): Promise<boolean> => {
    const reply = (await cluster.client(master).call('PUBSUB', 'SHARDNUMSUB', sub.keyOf(ch))) as unknown[];
    return Number(reply[1]) > 0;
  };
  for (const node of client.nodes('all')) {
    const n = node as unknown as { call: Call };
    const real = n.call.bind(node) as Call;
    n.call = async (command, ...args) => {
      const slots = command.toUpperCase() === 'CLUSTER' && String(args.flat()[0]).toUpperCase() === 'SLOTS';
      if (slots && armed && (await subscribedAgain())) {
        armed = false;
        entered();
        await gate;
      }
      return real(command, ...args);
    };
  }

  // the connection cut: the broker subscribes again and asks; cut again while it waits for the answer
  const recoveries = sub.stats().recoveries;
  const first = await nextSubscriber(master, '');
  armed = true;
  await cluster.client(master).call('CLIENT', 'KILL', 'ID', first);
  await asked;
  const second = await nextSubscriber(master, first);
  await cluster.client(master).call('CLIENT', 'KILL', 'ID', second);
  await nextSubscriber(master, second);
  release();

  await until(() => sub.stats().recoveries > recoveries, 'the catch-up', 20_000);
  for (let i = 0; i < 3; i++) acked.push(await pub.publish(ch, { data: `after-${i}` }, 10));
  await rec.has(acked[acked.length - 1]!.id, 10_000);
  expect(rec.events.filter((e) => e.channel === ch).map((e) => e.id)).toEqual(acked.map((e) => e.id));
  expect(rec.resets).toEqual([]);
});

test('a slot map behind a CLUSTER FAILOVER and a new master that does not know the demoted one yet: every acknowledged event once in order, or one reset', async () => {
  const prefix = `fo${process.pid}:`;
  let held: unknown = undefined;
  const { client, realCall } = heldBackClient(() => held);
  const sub = new RedisBroker({ redis: client, prefix, commandTimeout: 2000, healthCheckInterval: 500 });
  const pub = new RedisBroker({ cluster: cluster.startup, prefix, commandTimeout: 2000, healthCheckInterval: 500 });
  brokers.push(sub, pub);
  const ch = 'failover:0';
  const slot = keySlot(sub.keyOf(ch));
  const demoted = await cluster.masterOf(slot);
  const [promoted] = await cluster.replicasOf(demoted);
  expect(promoted).toBeDefined();

  const rec = new Recorder();
  await sub.subscribe(ch, rec);
  const acked: BrokerEvent[] = [await pub.publish(ch, { data: 'before' }, 10)];
  await rec.has(acked[0]!.id);
  expect(subscribers((await cluster.client(demoted).call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string)).toBe(1);

  // fence 1: from here on this process' CLUSTER SLOTS names the demoted master
  held = await realCall('CLUSTER', 'SLOTS');
  const recoveries = sub.stats().recoveries;
  await cluster.client(promoted!).call('CLUSTER', 'FAILOVER');
  await until(
    async () => ((await cluster.client(demoted).call('ROLE')) as unknown[])[0] === 'slave',
    'the old master demoted',
    20_000,
  );
  // fence 2: the new master forgets the demoted one (and sends it none of the shard's messages)
  const demotedId = (await cluster.client(demoted).call('CLUSTER', 'MYID')) as string;
  expect(await cluster.client(promoted!).call('CLUSTER', 'FORGET', demotedId)).toBe('OK');
  expect(await cluster.client(promoted!).call('CLUSTER', 'NODES')).not.toContain(demotedId);
  // (the node the helper asks may hear of the failover a moment later)
  await until(async () => (await cluster.masterOf(slot)) === promoted, 'the cluster naming the new master', 10_000);

  // the demoted master dropped the listener's channels: the broker subscribed again and caught up
  await until(() => sub.stats().recoveries > recoveries, 'the catch-up after the failover', 20_000);
  for (let i = 0; i < 5; i++) acked.push(await pub.publish(ch, { data: `after-${i}` }, 10));
  await rec.has(acked[acked.length - 1]!.id, 10_000);

  // on the node that serves the slot, not on the one the held-back map names
  expect(subscribers((await cluster.client(promoted!).call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string)).toBe(1);
  const got = rec.events.filter((e) => e.channel === ch);
  expect(new Set(got.map((e) => e.id)).size).toBe(got.length);
  expect(rec.resets.length).toBeLessThanOrEqual(1);
  const finalEpoch = acked[acked.length - 1]!.epoch;
  const expected = acked.filter((e) => rec.resets.length === 0 || e.epoch === finalEpoch).map((e) => e.id);
  expect(got.filter((e) => rec.resets.length === 0 || e.epoch === finalEpoch).map((e) => e.id)).toEqual(expected);
  expect(sub.stats().invalid).toBe(0);
});
