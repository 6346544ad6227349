/**
 * RedisBroker: the Broker contract over one Redis or a Redis Cluster, for many
 * processes. Facade: wires the command connection (client.ts), the Function
 * library calls (store.ts), the partitions' delivery state (partition.ts) and
 * the subscriber connections (subscriber.ts, at most one per master node).
 *
 * Subscriptions go through one serial queue of passes, so concurrent subscribe
 * and unsubscribe calls always leave Redis in the state the listeners ask for;
 * SSUBSCRIBE/SUNSUBSCRIBE are batched per partition (one slot each).
 */
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { Broker, BrokerEvent, BrokerListener, PartitionPosition, Position, PublishInput, ReplayResult } from '../broker';
import { CommandConnection, closedError, loadIORedis, unavailable, type AnyClient } from './client';
import { checkChannel, checkPublish, decodeMessage } from './codec';
import { resolveOptions, type RedisBrokerOptions } from './options';
import { Chan, Partition, type Counters } from './partition';
import { PartitionKeys, partitionOf } from './partitions';
import { Store } from './store';
import { Subscriber } from './subscriber';
import { Topology } from './topology';

export type { RedisBrokerOptions, RedisClientLike, ClusterNode } from './options';
export { LIBRARY, FN_PUBLISH } from './scripts';

export interface RedisBrokerStats {
  /** Redis channels this broker is subscribed to. */
  subscribed: number;
  /** Local listeners, over all channels. */
  listeners: number;
  /** Subscriber connections open (at most one per master node). */
  connections: number;
  /** Messages and history entries read from Redis that were malformed, or above what Redis holds, and dropped. */
  invalid: number;
  /** Live messages dropped because their seq was already delivered. */
  duplicates: number;
  /** Catch-ups done after a lost connection or a new epoch. */
  recoveries: number;
  /** `onReset` calls made (per listener and channel). */
  resets: number;
}

const RECOVERY_RETRY_MS = 1000;
const SUB_OPTIONS: RedisOptions = {
  autoResubscribe: false,
  autoResendUnfulfilledCommands: false,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  lazyConnect: false,
  connectionName: 'sse-relay:sub',
};

function noop(): void {}

export class RedisBroker implements Broker {
  readonly partitions: number;
  private readonly conn: CommandConnection;
  private readonly store: Store;
  private readonly parts: Partition[] = [];
  private readonly byTopic = new Map<string, { part: Partition; chan: Chan }>();
  private readonly subs = new Map<string, Subscriber>();
  private readonly topology: Topology | undefined;
  private readonly counters: Counters = { invalid: 0, duplicates: 0, recoveries: 0, resets: 0 };
  private readonly prefix: string;
  private readonly timeout: number;
  private readonly health: number;
  private readonly maxData: number;
  private closed = false;
  private closing: Promise<void> | undefined = undefined;
  private chain: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined = undefined;
  private retryTimer: NodeJS.Timeout | undefined = undefined;
  private topologyTimer: NodeJS.Timeout | undefined = undefined;

  private readonly onCmdReady = (): void => {
    // (Re)connected: maybe to a Redis without our functions (a restart, a failover), so load them now.
    this.conn.ensureLibrary().catch(noop);
    // A reconnect may be to a Redis that went back: check every partition we serve (fence) first.
    for (const part of this.parts) {
      if (part.hasListeners()) this.store.read(part.index, [], '').catch(() => part.startRecovery());
    }
  };

  constructor(options?: RedisBrokerOptions) {
    const o = resolveOptions(options);
    this.prefix = o.prefix;
    this.timeout = o.commandTimeout;
    this.health = o.healthCheckInterval;
    this.maxData = o.maxDataBytes;
    let client: AnyClient;
    if (o.redis !== undefined) {
      client = o.redis as unknown as AnyClient;
    } else if (o.cluster !== undefined) {
      const { Cluster } = loadIORedis();
      client = new Cluster(o.cluster, {
        redisOptions: { ...o.redisOptions, connectionName: 'sse-relay', autoResendUnfulfilledCommands: false },
        enableOfflineQueue: true,
      }) as Cluster;
    } else {
      const { Redis } = loadIORedis();
      const opts = { ...o.redisOptions, enableOfflineQueue: false, maxRetriesPerRequest: 1, autoResendUnfulfilledCommands: false, connectionName: 'sse-relay' };
      client = (o.url === undefined ? new Redis(opts) : new Redis(o.url, opts)) as Redis;
    }
    this.conn = new CommandConnection(client, o.redis === undefined, this.timeout);
    this.partitions = o.partitions ?? (this.conn.cluster ? 8 : 1);
    const keys: PartitionKeys[] = [];
    for (let p = 0; p < this.partitions; p++) keys.push(new PartitionKeys(this.prefix, p, this.partitions));
    this.store = new Store(this.conn, keys, this.timeout, {
      floor: (p) => this.parts[p]!.known,
      seen: (p, epoch, seq) => this.parts[p]!.seen(epoch, seq),
    });
    const io = {
      read: this.store.read.bind(this.store),
      requestRecovery: () => this.requestRecovery(),
    };
    for (const k of keys) this.parts.push(new Partition(k, this.partitions, io, this.counters));
    client.on('ready', this.onCmdReady);
    if (client.status === 'ready') this.conn.ensureLibrary().catch(noop);
    if (this.conn.cluster) {
      this.topology = new Topology(this.conn, this.timeout);
      this.topologyTimer = setInterval(() => this.checkTopology(), this.health);
      this.topologyTimer.unref();
    }
  }

  partitionOf(channel: string): number {
    return partitionOf(channel, this.partitions);
  }

  /**
   * The one key of `FCALL sse_relay_publish_v1 1 <key> ...` for `channel` (see the README):
   * `<prefix>{<partition tag>}:<channel>`, e.g. `sse-relay:{0}:order:123` on one Redis.
   */
  keyOf(channel: string): string {
    checkChannel('keyOf', channel);
    return this.parts[this.partitionOf(channel)]!.keys.channel(channel);
  }

  // ---- publish / replay / fence -------------------------------------------

  async publish(channel: string, input: PublishInput, history: number): Promise<BrokerEvent> {
    if (this.closed) throw closedError();
    checkChannel('publish', channel);
    checkPublish(input, history, this.maxData);
    return this.store.publish(this.partitionOf(channel), channel, input, history);
  }

  async replay(channels: readonly string[], after: ReadonlyMap<number, number> | undefined): Promise<ReplayResult> {
    if (this.closed) throw closedError();
    if (!Array.isArray(channels)) throw new TypeError('sse-relay: RedisBroker.replay channels must be an array');
    for (const c of channels) checkChannel('replay', c);
    if (after !== undefined && !(after instanceof Map)) throw new TypeError('sse-relay: RedisBroker.replay after must be a Map or undefined');
    const groups = new Map<number, string[]>();
    for (const c of new Set(channels)) {
      const p = this.partitionOf(c);
      const g = groups.get(p);
      if (g === undefined) groups.set(p, [c]);
      else g.push(c);
    }
    const order = [...groups.keys()].sort((a, b) => a - b);
    const replies = await Promise.all(
      order.map((p) => {
        const seq = after?.get(p);
        const list = after === undefined || seq === undefined ? [] : groups.get(p)!.map((name) => ({ name, after: seq }));
        return this.store.read(p, list, '');
      }),
    );
    const heads = new Map<number, Position>();
    const events: BrokerEvent[] = [];
    let complete = true;
    order.forEach((p, i) => {
      const r = replies[i]!;
      heads.set(p, { epoch: r.epoch, seq: r.head });
      if (after === undefined) return;
      const seq = after.get(p);
      if (seq === undefined || seq > r.head || seq < r.base) {
        complete = false;
        return;
      }
      const list = groups.get(p)!;
      const part: BrokerEvent[] = [];
      r.streams.forEach((s, j) => {
        if (!s.complete) complete = false;
        else this.parts[p]!.entries(list[j]!, r.epoch, seq, r.head, s.entries, part);
      });
      part.sort((a, b) => a.seq - b.seq);
      events.push(...part);
    });
    return complete ? { complete, events, heads } : { complete, events: [], heads };
  }

  async fence(seen: PartitionPosition): Promise<void> {
    if (this.closed) throw closedError();
    const p = seen?.partition;
    if (!Number.isSafeInteger(p) || p < 0 || p >= this.partitions || typeof seen.epoch !== 'string' || !Number.isSafeInteger(seen.seq)) {
      throw new TypeError('sse-relay: RedisBroker.fence expects { partition, epoch, seq }');
    }
    await this.store.read(p, [], '', { epoch: seen.epoch, seq: seen.seq });
  }

  // ---- subscriptions ------------------------------------------------------

  async subscribe(channel: string, listener: BrokerListener): Promise<void> {
    if (this.closed) throw closedError();
    checkChannel('subscribe', channel);
    if (listener === null || typeof listener !== 'object' || typeof listener.onEvent !== 'function' || typeof listener.onReset !== 'function') {
      throw new TypeError('sse-relay: RedisBroker.subscribe listener must have onEvent() and onReset()');
    }
    const part = this.parts[this.partitionOf(channel)]!;
    let chan = part.chans.get(channel);
    if (chan === undefined) {
      chan = new Chan(channel, part.keys.channel(channel));
      part.chans.set(channel, chan);
      this.byTopic.set(chan.topic, { part, chan });
    }
    const added = !chan.listeners.has(listener);
    chan.listeners.add(listener);
    try {
      await this.sync();
    } catch (err) {
      if (added) {
        chan.listeners.delete(listener);
        if (chan.listeners.size === 0) this.sync().catch(noop);
      }
      throw this.closed ? closedError() : unavailable(err);
    }
    if (this.closed) throw closedError();
  }

  async unsubscribe(channel: string, listener: BrokerListener): Promise<void> {
    if (typeof channel !== 'string') return;
    const part = this.parts[this.partitionOf(channel)]!;
    const chan = part.chans.get(channel);
    if (chan === undefined || !chan.listeners.delete(listener)) return;
    if (chan.listeners.size > 0 || this.closed) return;
    await this.sync().catch(noop); // a failed SUNSUBSCRIBE resets the connection, which drops it anyway
  }

  private sync(): Promise<void> {
    if (this.queued !== undefined) return this.queued;
    const pass = this.chain.then(() => {
      this.queued = undefined;
      return this.pass();
    });
    this.queued = pass;
    this.chain = pass.then(noop, noop);
    return pass;
  }

  private async pass(): Promise<void> {
    if (this.closed) throw closedError();
    if (this.topology !== undefined && this.parts.some((p) => p.hasListeners())) await this.topology.ensure();
    await Promise.all(this.parts.map((part) => this.reconcile(part)));
    const todo = this.parts.filter((p) => p.needRecovery && p.sub?.ready);
    await Promise.all(
      todo.map((part) => {
        const sub = part.sub!;
        const generation = sub.generation;
        return part.recover(() => !this.closed && part.sub === sub && sub.generation === generation).catch(() => this.scheduleRecovery());
      }),
    );
    if (this.parts.some((p) => p.needRecovery)) this.scheduleRecovery();
    this.collectSubscribers();
  }

  /** SSUBSCRIBE channels that gained listeners, SUNSUBSCRIBE those that lost them, on the partition's node. */
  private async reconcile(part: Partition): Promise<void> {
    const node = this.topology?.nodeOf(part.keys.slot) ?? 'single';
    if (part.sub !== undefined && part.sub.node !== node) {
      // the slot moved (failover, migration): its channels start again on the new owner
      const old = part.sub;
      part.sub = undefined;
      const topics = [...part.chans.values()].filter((c) => c.subscribed).map((c) => c.topic);
      if (topics.length > 0 && old.ready) old.unsubscribe(topics, Date.now() + this.timeout).catch(noop);
      part.connectionLost();
    }
    const want: Chan[] = [];
    const drop: Chan[] = [];
    for (const chan of part.chans.values()) {
      if (chan.listeners.size > 0) {
        if (!chan.subscribed) want.push(chan);
      } else if (chan.subscribed) drop.push(chan);
      else this.forget(part, chan);
    }
    if (want.length === 0 && drop.length === 0) return;
    if (part.sub?.client.status === 'end') part.sub = undefined;
    const sub = (part.sub ??= this.subscriber(node));
    const deadline = Date.now() + this.timeout;
    await sub.waitReady(this.timeout);
    const generation = sub.generation;
    if (drop.length > 0) {
      await sub.unsubscribe(drop.map((c) => c.topic), deadline);
      for (const chan of drop) {
        chan.subscribed = false;
        chan.armed = false;
        if (chan.listeners.size === 0) this.forget(part, chan);
      }
    }
    if (want.length > 0) {
      const head = await this.store.read(part.index, [], '');
      if (part.liveEpoch === undefined) part.liveEpoch = head.epoch;
      else if (head.epoch !== part.liveEpoch) part.startRecovery();
      await sub.subscribe(want.map((c) => c.topic), deadline);
      if (generation !== sub.generation) throw unavailable('the subscriber connection was lost');
      for (const chan of want) {
        chan.subscribed = true;
        if (!chan.armed) {
          chan.armed = true;
          chan.floor = head.epoch === part.liveEpoch ? head.head : 0;
        }
      }
    }
  }

  private forget(part: Partition, chan: Chan): void {
    if (part.chans.get(chan.name) === chan) part.chans.delete(chan.name);
    if (this.byTopic.get(chan.topic)?.chan === chan) this.byTopic.delete(chan.topic);
  }

  /** The subscriber connection for `node`, opened on first use. */
  private subscriber(node: string): Subscriber {
    let sub = this.subs.get(node);
    if (sub !== undefined && sub.client.status !== 'end') return sub;
    if (sub !== undefined) {
      for (const p of this.parts) if (p.sub === sub) p.sub = undefined;
      void sub.close();
    }
    let client: Redis;
    if (this.topology === undefined) {
      client = (this.conn.client as Redis).duplicate(SUB_OPTIONS);
    } else {
      const [host, port] = [node.slice(0, node.lastIndexOf(':')), Number(node.slice(node.lastIndexOf(':') + 1))];
      const any = (this.conn.client as Cluster).nodes()[0];
      if (any === undefined) throw unavailable('no cluster node is known yet');
      // (ioredis opens cluster node connections without a retryStrategy: the Cluster reconnects them; ours must reconnect by itself)
      client = any.duplicate({ ...SUB_OPTIONS, host, port, retryStrategy: (times: number) => Math.min(times * 100, 2000) });
    }
    client.on('error', noop);
    sub = new Subscriber(client, node, {
      message: (topic, raw) => this.message(topic, raw),
      lost: (s) => {
        this.topology?.stale();
        for (const part of this.parts) if (part.sub === s) part.connectionLost();
      },
      ready: (s) => {
        if (this.parts.some((p) => p.sub === s && (p.needRecovery || [...p.chans.values()].some((c) => c.listeners.size > 0 && !c.subscribed)))) {
          this.sync().catch(() => this.scheduleRecovery());
        }
      },
      moved: (s) => {
        this.topology?.stale();
        s.reset();
      },
    }, this.health);
    this.subs.set(node, sub);
    return sub;
  }

  /** Closes subscriber connections no partition uses any more. */
  private collectSubscribers(): void {
    for (const [node, sub] of this.subs) {
      if (!this.parts.some((p) => p.sub === sub && p.hasListeners())) {
        for (const p of this.parts) if (p.sub === sub) p.sub = undefined;
        this.subs.delete(node);
        void sub.close();
      }
    }
  }

  private message(topic: string, raw: string): void {
    const entry = this.byTopic.get(topic);
    if (entry === undefined) return; // a channel we just left
    const event = decodeMessage(entry.chan.name, entry.part.index, this.partitions, raw);
    if (event === undefined) {
      this.counters.invalid++;
      return;
    }
    entry.part.message(entry.chan, event);
  }

  private requestRecovery(): void {
    if (this.closed) return;
    this.sync().catch(() => this.scheduleRecovery());
  }

  private scheduleRecovery(): void {
    if (this.retryTimer !== undefined || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.parts.some((p) => p.needRecovery)) this.requestRecovery();
    }, RECOVERY_RETRY_MS);
    this.retryTimer.unref();
  }

  private checkTopology(): void {
    if (this.closed || this.topology === undefined || !this.parts.some((p) => p.hasListeners())) return;
    this.topology.refresh().then(
      () => {
        if (this.parts.some((p) => p.sub !== undefined && p.sub.node !== this.topology!.nodeOf(p.keys.slot))) this.requestRecovery();
      },
      noop,
    );
  }

  // ---- lifecycle ----------------------------------------------------------

  /** Counters for monitoring and tests. */
  stats(): RedisBrokerStats {
    let subscribed = 0;
    let listeners = 0;
    for (const part of this.parts) {
      for (const chan of part.chans.values()) {
        if (chan.subscribed) subscribed++;
        listeners += chan.listeners.size;
      }
    }
    return { subscribed, listeners, connections: this.subs.size, ...this.counters };
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.store.close();
    this.conn.abortWaiters();
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    if (this.topologyTimer !== undefined) clearInterval(this.topologyTimer);
    this.conn.client.off('ready', this.onCmdReady);
    for (const part of this.parts) {
      for (const chan of part.chans.values()) chan.listeners.clear();
      part.chans.clear();
    }
    this.byTopic.clear();
    await Promise.all([...this.subs.values()].map((s) => s.close()));
    this.subs.clear();
    await this.conn.close();
    await this.chain;
  }
}
