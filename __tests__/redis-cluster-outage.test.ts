/**
 * One Redis Cluster master down for a while, no failover, on a real cluster of
 * its own (3 masters, 3 replicas, `cluster-require-full-coverage no` on every
 * node, as real deployments set it so the healthy masters keep answering while
 * one shard is down): the master SIGKILLed with its replica held back from
 * taking over, then started again on its own dir. What a user relies on while
 * it is down: publishes to the healthy masters' channels resolve and are
 * delivered exactly once, in order, with no reset; publishes to the dead
 * master's channels reject within about commandTimeout (ERR_BROKER_UNAVAILABLE),
 * and do not hold up the others; a new subscription on a healthy master (a new
 * channel, a new listener) goes live, and a catch-up there (its subscriber
 * connection dropped) completes; a process started meanwhile publishes and
 * subscribes there; at most one subscriber connection per master, no listener
 * piling up, reconnects paced. Once it is back: the dead master's channels get
 * what was acknowledged before the crash once, then at most one reset (a master
 * with replicas restarted from an RDB dump resets by design), never a silent
 * gap; a publish that failed 'unknown' is there at most once, a 'not-published'
 * one never; later publishes on every channel arrive exactly once. Twice: the
 * listener straight to the nodes (the dead master's port refuses connections),
 * and through a proxy per node (the dead host's connections are accepted and
 * closed at once). And the layout record (`<prefix>layout`) on the dead master: a process
 * started meanwhile is held up by it for at most half of commandTimeout, not refused, and checks
 * it once the master is back.
 */
import type { EventEmitter } from 'node:events';
import type { BrokerEvent, PartitionPosition } from '../lib/brokers/broker';
import { RedisBroker } from '../lib/brokers/redis';
import { keySlot } from '../lib/brokers/redis/partitions';
import type { SseRelayError } from '../lib/errors';
import { startCluster, type CrashedNode, type RedisCluster } from './helpers/redis-cluster';
import { startProxy, type TcpProxy } from './helpers/tcp-proxy';
import { hasAll, onePerPartition, publishRounds, show, throughProxies, Timeline } from './helpers/timeline';
import { commandClient, peakListeners } from './helpers/warnings';

jest.setTimeout(120_000);

const TIMEOUT = 1000;

let cluster: RedisCluster;
const proxies = new Map<number, TcpProxy>();
const brokers: RedisBroker[] = [];
/** Nodes a test SIGKILLed: started again after it (once restarted, at once), whatever happened. */
const crashed: CrashedNode[] = [];

beforeAll(async () => {
  cluster = await startCluster();
  // the healthy masters answer while a shard is down (the default, yes, fails every node's commands)
  for (const { port } of cluster.nodes)
    expect(await cluster.client(port).call('CONFIG', 'SET', 'cluster-require-full-coverage', 'no')).toBe('OK');
});

afterAll(async () => {
  await cluster?.stop();
});

afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
  for (const px of proxies.values()) await px.close();
  proxies.clear();
  for (const node of crashed.splice(0)) await node.restart();
});

function broker(prefix: string, proxied: boolean): RedisBroker {
  const options = { prefix, commandTimeout: TIMEOUT, healthCheckInterval: 500 };
  let b: RedisBroker;
  if (proxied) {
    b = new RedisBroker({ ...throughProxies(proxies), ...options });
  } else {
    b = new RedisBroker({ cluster: cluster.startup, ...options });
  }
  brokers.push(b);
  return b;
}

/** The subscriber connections' clients of `b` (one per master node it has listeners on). */
function subscriberClients(b: RedisBroker): EventEmitter[] {
  const subs = (b as unknown as { live: { subs: Map<string, { client: EventEmitter }> } }).live.subs;
  return [...subs.values()].map((s) => s.client);
}

/** A publish that must fail: its error, and how long it took. */
async function rejected(p: Promise<unknown>): Promise<{ err: SseRelayError; ms: number }> {
  const t0 = Date.now();
  const err = await p.then(
    () => new Error('resolved') as SseRelayError,
    (e: SseRelayError) => e,
  );
  return { err, ms: Date.now() - t0 };
}

describe('one master down for a while, no failover (cluster-require-full-coverage no)', () => {
  test.each<[string, boolean]>([
    ['the listener straight to the nodes', false],
    ['the listener through a proxy per node', true],
  ])(
    'the healthy masters keep serving, the dead one fails in bounded time, and it catches up once back (%s)',
    async (_kind, proxied) => {
      const p = `clo${process.pid}-${proxied ? 1 : 2}:`;
      if (proxied) for (const { port } of cluster.nodes) proxies.set(port, await startProxy(port));
      const sub = broker(p, proxied);
      const pub = broker(p, false);
      const masterOf = (c: string): Promise<number> => cluster.masterOf(keySlot(sub.keyOf(c)));
      const channels = onePerPartition(sub, 'o');
      const victim = await masterOf(channels[0]!);
      const onVictim = new Set<string>();
      for (const c of channels) if ((await masterOf(c)) === victim) onVictim.add(c);
      const healthy = channels.filter((c) => !onVictim.has(c));
      const other = await masterOf(healthy[0]!);
      const onOther: string[] = [];
      for (const c of healthy) if ((await masterOf(c)) === other) onOther.push(c);
      // new channels: one on a healthy master, one on the victim
      let [freshHealthy, freshDead] = ['', ''];
      for (const c of onePerPartition(sub, 'f'))
        if ((await masterOf(c)) === victim) freshDead ||= c;
        else freshHealthy ||= c;
      expect([onVictim.size >= 1, healthy.length >= 2, freshHealthy !== '', freshDead !== '']).toEqual([
        true,
        true,
        true,
        true,
      ]);
      const masters = [...(await cluster.roles()).values()].filter((r) => r === 'master').length;

      const rec = new Timeline();
      for (const c of channels) await sub.subscribe(c, rec);
      const before = await publishRounds(pub, channels, 'before', 2);
      await rec.until(hasAll(rec, before), 'everything before the crash');
      expect(await cluster.client(victim).call('SAVE')).toBe('OK'); // the dump holds every event acknowledged
      expect(sub.stats().connections).toBe(masters);

      // (d) connections and listeners, watched all along the outage
      let peakConnections = 0;
      const sampler = setInterval(() => {
        peakConnections = Math.max(peakConnections, sub.stats().connections);
      }, 5);
      const peaks = [commandClient(sub), commandClient(pub), ...subscriberClients(sub)].map((e) => peakListeners(e));
      const attempts = proxied ? proxies.get(victim)!.connections.length : 0;
      const startedAt = Date.now();
      const down = await cluster.crash(victim);
      crashed.push(down);
      try {
        // (a) the healthy masters' channels: acknowledged, delivered once in order
        const during = await publishRounds(pub, healthy, 'during', 2);
        await rec.until(hasAll(rec, during), "the healthy masters' events while one master is down");

        // (b) the dead master's channels: rejected within about commandTimeout
        const failed: { data: string; err: SseRelayError; ms: number }[] = [];
        for (let i = 0; i < 2; i++) {
          for (const c of onVictim) {
            const data = `down${i} ${c}`;
            failed.push({ data, ...(await rejected(pub.publish(c, { data }, 1000))) });
          }
        }
        // and one while the healthy masters are asked: they are not held up behind it
        const late = rejected(pub.publish([...onVictim][0]!, { data: 'down-mixed' }, 1000));
        let lateSettled = false;
        void late.then(() => (lateSettled = true));
        const mixed = await Promise.all(healthy.map((c) => pub.publish(c, { data: `mixed ${c}` }, 1000)));
        expect(lateSettled).toBe(false);
        failed.push({ data: 'down-mixed', ...(await late) });
        for (const f of failed) {
          expect([f.data, f.err.code]).toEqual([f.data, 'ERR_BROKER_UNAVAILABLE']);
          expect([f.data, ['not-published', 'unknown'].includes(f.err.outcome!)]).toEqual([f.data, true]);
          expect([f.data, f.ms < 2 * TIMEOUT]).toEqual([f.data, true]);
        }

        // (c) new subscriptions on a healthy master while the dead one is unreachable: a new
        // channel and a new listener go live, not held up behind a subscription on the dead master
        // (through the proxy, that one waits commandTimeout for a connection; straight, it is
        // refused at once, so there is no race to lose there)
        const rec2 = new Timeline();
        const dead = rejected(sub.subscribe(freshDead, rec2));
        let deadSettled = false;
        void dead.then(() => (deadSettled = true));
        await sub.subscribe(freshHealthy, rec2);
        await sub.subscribe(healthy[0]!, rec2);
        if (proxied) expect(deadSettled).toBe(false);
        const { err: subErr, ms: subMs } = await dead;
        expect([subErr.code, subMs < 2 * TIMEOUT]).toEqual(['ERR_BROKER_UNAVAILABLE', true]);
        const onNew = [
          await pub.publish(freshHealthy, { data: 'new channel' }, 1000),
          await pub.publish(healthy[0]!, { data: 'new listener' }, 1000),
        ];
        await rec2.until(hasAll(rec2, onNew), 'the new subscriptions live');
        expect(rec2.events.map(show)).toEqual(onNew.map(show));

        // ... and a catch-up on a healthy master: its subscriber connection dropped, the events
        // published meanwhile arrive once in order, from history, while the dead one is still down
        const recoveries = sub.stats().recoveries;
        await cluster.client(other).call('CLIENT', 'KILL', 'TYPE', 'pubsub');
        const blip = await publishRounds(pub, onOther, 'blip', 2);
        await rec.until(hasAll(rec, [...mixed, onNew[1]!, ...blip]), "a healthy master's channels caught up");
        expect(sub.stats().recoveries - recoveries).toBeGreaterThanOrEqual(onOther.length);
        expect(rec.resets).toEqual([]);
        expect(rec2.resets).toEqual([]);

        // (e) a process started while the master is down: its first publish and subscription on the
        // healthy masters go through
        const newcomer = broker(p, proxied);
        const rec3 = new Timeline();
        const first = await newcomer.publish(healthy[1]!, { data: 'newcomer' }, 1000);
        await newcomer.subscribe(freshHealthy, rec3);
        const seen = await pub.publish(freshHealthy, { data: 'to the newcomer' }, 1000);
        await rec3.until(hasAll(rec3, [seen]), "the newcomer's subscription live");
        await rec.until(hasAll(rec, [first]), "the newcomer's publish delivered");
        expect(rec3.events.map(show)).toEqual([show(seen)]);

        // (d) one subscriber connection per master at most, no listener piling up, reconnects paced
        expect(peakConnections).toBeLessThanOrEqual(masters);
        for (const peak of peaks) expect(peak()).toBeLessThan(10); // Node's MaxListeners warning
        if (proxied) {
          const outage = Date.now() - startedAt;
          expect(proxies.get(victim)!.connections.length - attempts).toBeLessThan(outage / 50);
        }

        // Back: the dead master's channels catch up; every channel goes on
        await down.restart();
        const after = await publishRounds(pub, channels, 'after', 1);
        await rec.until(hasAll(rec, after), 'every channel live again', 20_000);
        expect(await sub.subscribe(freshDead, rec2)).toBeUndefined(); // and its new channels subscribe
        const last = await pub.publish(freshDead, { data: 'back' }, 1000);
        await rec2.until(hasAll(rec2, [last]), 'a new channel on the restarted master');
        expect(peakConnections).toBeLessThanOrEqual(masters);

        const acked = [...before, ...during, ...mixed, onNew[1]!, ...blip, first, ...after];
        const on = (c: string, evs: readonly BrokerEvent[]) => evs.filter((e) => e.channel === c);
        for (const c of healthy) expect([c, rec.of(c).map(show)]).toEqual([c, on(c, acked).map(show)]);
        const unknown = new Set(failed.filter((f) => f.err.outcome === 'unknown').map((f) => f.data));
        for (const c of onVictim) {
          // an 'unknown' publish there at most once (stored or not), a 'not-published' one never
          const got = rec.of(c);
          const maybe = got.filter((x) => !('reset' in x) && unknown.has(x.data));
          expect(new Set(maybe.map((x) => (x as BrokerEvent).data)).size).toBe(maybe.length);
          // what was acknowledged before the crash once, at most one reset, then what came after it
          const rest = got.filter((x) => !maybe.includes(x));
          const head = rest.find((x): x is { reset: PartitionPosition } => 'reset' in x)?.reset;
          const next = on(c, after).filter((e) => head === undefined || (e.epoch === head.epoch && e.seq > head.seq));
          expect([c, rest.map(show)]).toEqual([
            c,
            [...on(c, before).map(show), ...(head === undefined ? [] : [show({ reset: head })]), ...next.map(show)],
          ]);
          expect(on(c, after).filter((e) => !next.includes(e))).toEqual([]); // nothing after it left out
        }
        const second = [onNew[0]!, seen, ...on(healthy[0]!, [onNew[1]!, ...blip, ...after]), last];
        for (const c of [freshHealthy, healthy[0]!, freshDead])
          expect([c, rec2.of(c).map(show)]).toEqual([c, on(c, second).map(show)]);
        expect(sub.stats()).toMatchObject({ subscribed: channels.length + 2, listeners: channels.length + 3 });
      } finally {
        clearInterval(sampler);
      }
    },
  );
});

describe('the layout record (<prefix>layout) on the master that is down', () => {
  test('a process started meanwhile publishes and subscribes on the healthy masters; once the master is back its layout is checked, and another layout refused', async () => {
    // a prefix whose layout record lives on the master crashed below
    const p = `cll${process.pid}:`;
    const victim = await cluster.masterOf(keySlot(`${p}layout`));
    const first = broker(p, false);
    const masterOf = (c: string): Promise<number> => cluster.masterOf(keySlot(first.keyOf(c)));
    let healthy = '';
    for (const c of onePerPartition(first, 'h')) if ((await masterOf(c)) !== victim) healthy ||= c;
    expect(healthy).not.toBe('');
    await first.publish(healthy, { data: 'before' }, 10); // the record written
    expect(await cluster.client(victim).get(`${p}layout`)).toBe('v1 partitions=8');
    expect(await cluster.client(victim).call('SAVE')).toBe('OK');

    const down = await cluster.crash(victim);
    crashed.push(down);
    const late = broker(p, false);
    const rec = new Timeline();
    const t0 = Date.now();
    await late.subscribe(healthy, rec);
    const e = await late.publish(healthy, { data: 'while down' }, 10);
    // held up by the unreadable record for at most half of commandTimeout, not refused
    expect(Date.now() - t0).toBeLessThan(3 * TIMEOUT);
    await rec.has(e.id);
    const more = await late.publish(healthy, { data: 'again' }, 10);
    await rec.has(more.id);

    await down.restart();
    const four = new RedisBroker({ cluster: cluster.startup, prefix: p, partitions: 4, commandTimeout: TIMEOUT });
    brokers.push(four);
    const err = await four.publish(healthy, { data: 'x' }, 10).then(
      () => undefined,
      (x: unknown) => x as SseRelayError,
    );
    expect(err?.code).toBe('ERR_BROKER_LAYOUT');
    expect(err?.message).toContain('partitions 4 does not match');
    expect(err?.message).toContain('(partitions 8, recorded in key');
    const last = await late.publish(healthy, { data: 'after' }, 10);
    await rec.has(last.id);
    expect(rec.events.map((x) => x.data)).toEqual(['while down', 'again', 'after']);
  });
});
