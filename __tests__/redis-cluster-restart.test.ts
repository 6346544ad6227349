/**
 * A Redis Cluster master restarted from an older snapshot, without a failover,
 * on a real cluster of its own (3 masters, 3 replicas): SAVE on the master, more
 * publishes (acknowledged and delivered), SIGKILL, the master started again on its
 * own dir (nodes.conf and that dump) while its replica is held back from taking
 * over; then a writer that never saw the lost events (a new process) writes past
 * them before the listener is back. What a user relies on: on that master's
 * channels, every acknowledged event the listener got exactly once, then exactly
 * one reset, then what was published after it (never a silent gap, never a
 * duplicate); on the other masters' channels every event exactly once in order
 * and no reset; bounded time. Twice: with the master's replica there (Redis 7
 * restores the old replication id from the dump as master_replid2, which the
 * library takes for a promotion: a new epoch at the first call), and with none
 * (it died and the backlog expired: the dump carries no replication id, the lost
 * ids are given out again as they were, and the listener's catch-up check of
 * the positions it delivered is what tells).
 */
import { Cluster } from 'ioredis';
import type { BrokerEvent } from '../lib/brokers/broker';
import { RedisBroker } from '../lib/brokers/redis';
import { keySlot } from '../lib/brokers/redis/partitions';
import { startCluster, type CrashedNode, type RedisCluster } from './helpers/redis-cluster';
import { freePort } from './helpers/redis-server';
import { startProxy, type TcpProxy } from './helpers/tcp-proxy';
import { hasAll, onePerPartition, publishRounds, show, throughProxies, Timeline } from './helpers/timeline';
import { until } from './helpers/wait';

jest.setTimeout(120_000);

let cluster: RedisCluster;
const proxies = new Map<number, TcpProxy>();
const brokers: RedisBroker[] = [];
const clients: Cluster[] = [];
/** Nodes a test SIGKILLed: started again after it (once restarted, at once), whatever happened. */
const crashed: CrashedNode[] = [];

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
  for (const b of brokers.splice(0)) await b.close();
  for (const c of clients.splice(0)) c.disconnect();
  for (const px of proxies.values()) await px.close();
  proxies.clear();
  for (const node of crashed.splice(0)) await node.restart();
});

/** A broker that reaches the cluster through the proxies only (natMap), so a test can hold it off one node. */
function natBroker(prefix: string): RedisBroker {
  const b = new RedisBroker({
    ...throughProxies(proxies),
    prefix,
    commandTimeout: 1000,
    healthCheckInterval: 500,
  });
  brokers.push(b);
  return b;
}

describe('a master restarted from an older snapshot, no failover (SAVE, more publishes, SIGKILL, restart from the dump)', () => {
  test.each<[string, boolean]>([
    ['its replica kept from taking over', true],
    ["no replica: it died, and the master's replication backlog expired", false],
  ])(
    "a writer that never saw the lost events writes past them before the listener is back: that master's channels get every event they had once, one reset, then what came after; the others' stay exact (%s)",
    async (_kind, replica) => {
      const p = `clr${process.pid}-${replica ? 1 : 2}:`;
      const sub = natBroker(p);
      const pub = new RedisBroker({ cluster: cluster.startup, prefix: p, commandTimeout: 2000 });
      brokers.push(pub);
      const channels = [...onePerPartition(sub, 'x'), ...onePerPartition(sub, 'y')]; // two per partition
      const victim = await cluster.masterOf(keySlot(sub.keyOf(channels[0]!)));
      const onVictim = new Set<string>();
      for (const c of channels) if ((await cluster.masterOf(keySlot(sub.keyOf(c)))) === victim) onVictim.add(c);
      const others = channels.filter((c) => !onVictim.has(c));
      expect(onVictim.size).toBeGreaterThanOrEqual(2);
      expect(others.length).toBeGreaterThanOrEqual(2);
      if (!replica) {
        const [r] = await cluster.replicasOf(victim);
        crashed.push(await cluster.crash(r!));
        const admin = cluster.client(victim);
        await admin.call('CONFIG', 'SET', 'repl-backlog-ttl', '1'); // (default: an hour)
        await until(
          async () => /repl_backlog_active:0/.test((await admin.call('INFO', 'replication')) as string),
          "the victim's replication backlog freed",
        );
      }
      const rec = new Timeline();
      for (const c of channels) await sub.subscribe(c, rec);

      // 6 events per partition in the dump, 2 more acknowledged and delivered after it
      const saved = await publishRounds(pub, channels, 'saved', 3);
      expect(await cluster.client(victim).call('SAVE')).toBe('OK');
      const lost = await publishRounds(pub, channels, 'lost', 1);
      await rec.until(hasAll(rec, [...saved, ...lost]), 'everything before the crash');
      const before = rec.events.length;

      // the listener cannot reach the victim again until back() (its connections there die with it)
      const px = proxies.get(victim)!;
      px.retarget(await freePort());
      const down = await cluster.crash(victim);
      crashed.push(down);
      await down.restart(); // its slots are its own again, with the dump's data; no failover
      expect(await cluster.masterOf(keySlot(sub.keyOf([...onVictim][0]!)))).toBe(victim);

      // A new process on its own Cluster client (no floor: it never saw the lost seqs) writes past
      // them on every partition: 6 per partition, over the listener's floor of 8.
      const own = new Cluster(cluster.startup);
      clients.push(own);
      const fresh = new RedisBroker({ redis: own, prefix: p, commandTimeout: 2000 });
      brokers.push(fresh);
      const reused = await publishRounds(fresh, channels, 'reused', 3);
      for (const part of new Set(lost.filter((e) => onVictim.has(e.channel)).map((e) => e.partition))) {
        const first = reused.filter((e) => e.partition === part).slice(0, 2);
        const gone = lost.filter((e) => e.partition === part);
        expect(first.map((e) => e.seq)).toEqual(gone.map((e) => e.seq)); // the lost positions, given out again
        // Without the replica nothing told Redis: the lost events' very ids name other events now.
        // (With it, the restart was taken for a promotion and these are in a new epoch already.)
        if (!replica) expect(first.map((e) => e.id)).toEqual(gone.map((e) => e.id));
      }
      // held off: nothing from the victim reached the listener since the crash
      expect(rec.resets).toEqual([]);
      expect(rec.events.slice(before).filter((e) => onVictim.has(e.channel))).toEqual([]);

      // Back: the listener reconnects, and its catch-up of each of the victim's partitions hands
      // each of their channels something (a reset, or the events written meanwhile) in one go.
      const had = new Map([...onVictim].map((c) => [c, rec.of(c).length]));
      px.retarget(victim);
      await rec.until(
        () => [...onVictim].every((c) => rec.of(c).length > had.get(c)!),
        "the listener back and caught up on the victim's channels",
        20_000,
      );
      const after = await publishRounds(fresh, channels, 'after', 1);
      await rec.until(hasAll(rec, after), 'the events published after the listener is back', 20_000);

      const acked = [...saved, ...lost, ...reused, ...after];
      const on = (c: string, evs: readonly BrokerEvent[]) => evs.filter((e) => e.channel === c);
      for (const c of others) expect([c, rec.of(c).map(show)]).toEqual([c, on(c, acked).map(show)]);
      for (const c of onVictim) {
        const resets = rec.resets.filter((r) => r.channel === c);
        const head = resets[0]?.head;
        // what follows the reset is what was published after its head, in its epoch
        const next = on(c, [...reused, ...after]).filter((e) => e.epoch === head?.epoch && e.seq > head.seq);
        expect([c, rec.of(c).map(show)]).toEqual([
          c,
          [
            ...on(c, [...saved, ...lost]).map(show),
            head === undefined ? 'exactly one reset' : show({ reset: head }),
            ...next.map(show),
          ],
        ]);
        expect([c, resets.length]).toEqual([c, 1]);
        expect(head!.epoch === on(c, lost)[0]!.epoch).toBe(false); // a new numbering: no old id resumes
        expect(on(c, after).filter((e) => !next.includes(e))).toEqual([]); // all published after it
      }
      expect(rec.resets).toHaveLength(onVictim.size);
      // which mechanism told: the positions' check only where the epoch had not changed already
      const victimParts = new Set([...onVictim].map((c) => sub.partitionOf(c)));
      expect(sub.stats().reused).toBe(replica ? 0 : victimParts.size);
    },
  );
});
