/**
 * RedisBroker: the Broker contract over one Redis or a Redis Cluster, for many
 * processes. Facade: validates calls and wires the command connection
 * (client.ts), the Function library calls (store.ts, scripts.ts), the
 * partitions' delivery state (partition.ts), live delivery over sharded
 * pub/sub (subscriptions.ts, subscriber.ts, topology.ts) and replay.
 */
import type { Cluster, Redis } from 'ioredis';
import type { Broker, BrokerEvent, BrokerListener, PartitionPosition, PublishInput, ReplayResult } from '../broker';
import { CommandConnection } from './client';
import { closedError } from './failures';
import { loadIORedis, type AnyClient } from './ioredis';
import { checkChannel, checkPublish } from './codec';
import { resolveOptions, type RedisBrokerOptions } from './options';
import { Partition, type Counters } from './partition';
import { Layout } from './layout';
import { PartitionKeys, partitionOf } from './partitions';
import { replay } from './replay';
import { Store } from './store';
import { Subscriptions } from './subscriptions';

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
  /** Catch-ups that found events delivered here gone from their positions or replaced (Redis went back), and started a new epoch. */
  reused: number;
}

function noop(): void {}

/** How long after (re)connecting a position presented by a client may start a new epoch (see fence()). */
const FENCE_WINDOW_MS = 10 * 60 * 1000;

export class RedisBroker implements Broker {
  readonly partitions: number;
  private readonly conn: CommandConnection;
  private readonly store: Store;
  private readonly layout: Layout;
  private readonly parts: Partition[] = [];
  private readonly live: Subscriptions;
  private readonly counters: Counters = { invalid: 0, duplicates: 0, recoveries: 0, resets: 0, reused: 0 };
  private readonly prefix: string;
  private readonly timeout: number;
  private readonly maxData: number;
  private closed = false;
  private closing: Promise<void> | undefined = undefined;
  /** When the command connection last became ready (performance.now()). */
  private readyAt = performance.now();
  /** Partitions a client-presented position has fenced since the connection became ready. */
  private readonly fenced = new Set<number>();

  private readonly onCmdReady = (): void => {
    this.readyAt = performance.now();
    this.fenced.clear();
    // (Re)connected: maybe to a Redis without our functions (a restart, a failover), so load them now.
    this.conn.ensureLibrary().catch(noop);
    // ... and maybe to one that lost the layout record, or whose record another layout wrote since.
    this.layout.recheck();
    // A reconnect may be to a Redis that went back: check every partition we serve (fence) first.
    for (const part of this.parts) {
      if (part.hasListeners()) this.store.read(part.index, [], '').catch(() => part.startRecovery());
    }
  };

  constructor(options?: RedisBrokerOptions) {
    const o = resolveOptions(options);
    this.prefix = o.prefix;
    this.timeout = o.commandTimeout;
    this.maxData = o.maxDataBytes;
    let client: AnyClient;
    if (o.redis !== undefined) {
      client = o.redis as unknown as AnyClient;
    } else if (o.cluster !== undefined) {
      const { Cluster } = loadIORedis();
      const given = o.clusterOptions.redisOptions as Record<string, unknown> | undefined;
      client = new Cluster(o.cluster, {
        ...o.clusterOptions,
        redisOptions: {
          ...given,
          ...o.redisOptions,
          connectionName: 'sse-relay',
          autoResendUnfulfilledCommands: false,
        },
        enableOfflineQueue: true,
      }) as Cluster;
    } else {
      const { Redis } = loadIORedis();
      const opts = {
        ...o.redisOptions,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        autoResendUnfulfilledCommands: false,
        connectionName: 'sse-relay',
      };
      client = (o.url === undefined ? new Redis(opts) : new Redis(o.url, opts)) as Redis;
    }
    // After a switchover behind one address the subscriber connections are on the old master too
    // (SSUBSCRIBE and PING work on a replica, so nothing tells them): reopened, they follow the address.
    this.conn = new CommandConnection(client, o.redis === undefined, this.timeout, () => {
      for (const sub of this.live.subs.values()) sub.reset();
    });
    this.partitions = o.partitions ?? (this.conn.cluster ? 8 : 1);
    this.layout = new Layout(this.conn, this.prefix, this.partitions, this.timeout, o.recordLayout);
    const keys: PartitionKeys[] = [];
    for (let p = 0; p < this.partitions; p++) keys.push(new PartitionKeys(this.prefix, p, this.partitions));
    this.store = new Store(
      this.conn,
      keys,
      this.timeout,
      {
        floor: (p) => this.parts[p]!.known,
        seen: (p, epoch, seq) => {
          const part = this.parts[p]!;
          // A new epoch: Redis lost or renumbered the partition (a FLUSHALL, a restart, a promotion), and
          // maybe the layout record with it, which another layout may have written since: check again.
          if (part.known !== undefined && part.known.epoch !== epoch) this.layout.recheck();
          part.seen(epoch, seq);
        },
      },
      this.layout,
      o.waitReplicas,
    );
    const io = {
      read: this.store.read.bind(this.store),
      page: this.store.page.bind(this.store),
      holds: this.store.holds.bind(this.store),
      // A floor above any head: Redis starts a new epoch unless it numbers the partition otherwise already.
      renumber: async (p: number, epoch: string) => {
        await this.store.read(p, [], '', { epoch, seq: Number.MAX_SAFE_INTEGER });
      },
      requestRecovery: (part: Partition) => this.live.requestRecovery(part),
    };
    for (const k of keys) this.parts.push(new Partition(k, this.partitions, io, this.counters));
    this.live = new Subscriptions(
      this.conn,
      this.store,
      this.parts,
      this.counters,
      this.timeout,
      o.healthCheckInterval,
    );
    client.on('ready', this.onCmdReady);
    if (client.status === 'ready') {
      this.conn.ensureLibrary().catch(noop);
      this.layout.recheck();
    }
  }

  partitionOf(channel: string): number {
    return partitionOf(channel, this.partitions);
  }

  /**
   * The one key of `FCALL sse_relay_publish_v1 1 <key> ...` for `channel` (see the README):
   * `<prefix>{<partition tag>}:<channel>`, e.g. `sse-relay:{0}:order:123` on one Redis.
   */
  /**
   * The partition count recorded under this broker's prefix (`<prefix>layout`, see the README),
   * or undefined when there is none: for a tool that follows the layout the app's processes
   * use (the CLI opens its broker with it).
   */
  recordedPartitions(): Promise<number | undefined> {
    return this.layout.recorded();
  }

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

  async replay(
    channels: readonly string[],
    after: ReadonlyMap<number, number> | undefined,
    limit?: number,
  ): Promise<ReplayResult> {
    if (this.closed) throw closedError();
    if (!Array.isArray(channels)) throw new TypeError('sse-relay: RedisBroker.replay channels must be an array');
    for (const c of channels) checkChannel('replay', c);
    if (after !== undefined && !(after instanceof Map))
      throw new TypeError('sse-relay: RedisBroker.replay after must be a Map or undefined');
    if (limit !== undefined && (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1)) {
      throw new RangeError(`sse-relay: RedisBroker.replay limit must be a positive integer, got ${String(limit)}`);
    }
    return replay(this.store, this.parts, (c) => this.partitionOf(c), channels, after, limit);
  }

  async fence(seen: PartitionPosition): Promise<void> {
    if (this.closed) throw closedError();
    const p = seen?.partition;
    if (
      !Number.isSafeInteger(p) ||
      p < 0 ||
      p >= this.partitions ||
      typeof seen.epoch !== 'string' ||
      !Number.isSafeInteger(seen.seq)
    ) {
      throw new TypeError('sse-relay: RedisBroker.fence expects { partition, epoch, seq }');
    }
    // A position a client presents is a claim, not proof: anyone can make one up. A rewind shows
    // right after a restart or failover (which every connection sees as a reconnect), so a claim
    // is honoured only within FENCE_WINDOW_MS of the connection becoming ready, and once per
    // partition per connection: a made-up id cannot reset a partition's streams over and over.
    // The client that presented it gets its `reset` either way.
    if (performance.now() - this.readyAt > FENCE_WINDOW_MS || this.fenced.has(p)) return;
    const reply = await this.store.read(p, [], '', { epoch: seen.epoch, seq: seen.seq });
    if (reply.epoch !== seen.epoch) this.fenced.add(p); // it did start a new epoch
  }

  // ---- subscriptions ------------------------------------------------------

  async subscribe(channel: string, listener: BrokerListener): Promise<void> {
    if (this.closed) throw closedError();
    checkChannel('subscribe', channel);
    if (
      listener === null ||
      typeof listener !== 'object' ||
      typeof listener.onEvent !== 'function' ||
      typeof listener.onReset !== 'function'
    ) {
      throw new TypeError('sse-relay: RedisBroker.subscribe listener must have onEvent() and onReset()');
    }
    // refused before a subscriber connection is opened for it
    if (!this.layout.ok) await this.store.ready(Date.now() + this.timeout);
    await this.live.add(this.parts[this.partitionOf(channel)]!, channel, listener);
  }

  async unsubscribe(channel: string, listener: BrokerListener): Promise<void> {
    if (typeof channel !== 'string') return;
    await this.live.remove(this.parts[this.partitionOf(channel)]!, channel, listener);
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
    return { subscribed, listeners, connections: this.live.subs.size, ...this.counters };
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.store.close();
    this.conn.abortWaiters();
    this.conn.client.off('ready', this.onCmdReady);
    await this.live.close();
    await this.conn.close();
  }
}
