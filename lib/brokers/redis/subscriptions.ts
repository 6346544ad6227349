/**
 * Live delivery: which channels are SSUBSCRIBEd on which subscriber connection
 * (at most one per master node; one in all on a single Redis), kept in line
 * with the listeners by a serial queue of passes per partition, so concurrent
 * subscribe and unsubscribe calls always leave Redis in the state the listeners
 * ask for, and a partition whose master is down (a shard of a cluster) neither
 * fails nor holds up the others' subscriptions and catch-ups.
 * SSUBSCRIBE/SUNSUBSCRIBE go in one command per partition (one slot each) per
 * pass. A pass also re-routes its partition when its slot moved (failover,
 * migration: checked on every lost connection and every health-check interval);
 * the catch-up the partition asked for follows it in the queue and pauses
 * between two pages for any pass queued meanwhile (pass-queue.ts), so a
 * subscribe waits for one page, not for the whole backlog.
 */
import type { BrokerListener } from '../broker';
import type { CommandConnection } from './client';
import { closedError, unavailable, within } from './failures';
import { decodeMessage } from './codec';
import { Chan, type Counters, type Partition } from './partition';
import type { Store } from './store';
import { PassQueue } from './pass-queue';
import { Subscriber, subscriberClient } from './subscriber';
import { Topology } from './topology';

const RECOVERY_RETRY_MS = 1000;

function noop(): void {}

function topics(chans: readonly Chan[]): string[] {
  return chans.map((c) => c.topic);
}

export class Subscriptions {
  readonly subs = new Map<string, Subscriber>();
  private readonly byTopic = new Map<string, { part: Partition; chan: Chan }>();
  /** Per channel: each listener's latest add() still running, and whether it added the listener (owns it). */
  private readonly adding = new Map<Chan, Map<BrokerListener, { owns: boolean }>>();
  private readonly topology: Topology | undefined;
  private closed = false;
  /** Per partition: its passes, each followed by the catch-up it asked for (or, failed, a retry). */
  private readonly passes = new PassQueue<Partition>(
    (part) => this.pass(part),
    (part, ok) => {
      if (ok) return this.catchUp(part);
      if (part.needRecovery) this.passes.retryLater();
    },
    () => this.parts.filter((p) => p.needRecovery),
    RECOVERY_RETRY_MS,
  );
  /** Partitions whose pass is running: their subscriber connection is not collected meanwhile. */
  private readonly busy = new Set<Partition>();
  private topologyTimer: NodeJS.Timeout | undefined = undefined;

  constructor(
    private readonly conn: CommandConnection,
    private readonly store: Store,
    private readonly parts: readonly Partition[],
    private readonly counters: Counters,
    private readonly timeout: number,
    private readonly health: number,
  ) {
    if (conn.cluster) {
      this.topology = new Topology(conn, timeout);
      this.topologyTimer = setInterval(() => this.checkTopology(), health);
      this.topologyTimer.unref();
    }
  }

  private get partitions(): number {
    return this.parts.length;
  }

  /** Adds a listener; resolves once its channel is live. */
  async add(part: Partition, channel: string, listener: BrokerListener): Promise<void> {
    let chan = part.chans.get(channel);
    if (chan === undefined) {
      chan = new Chan(channel, part.keys.channel(channel));
      part.chans.set(channel, chan);
      this.byTopic.set(chan.topic, { part, chan });
    }
    // Only the latest add of a listener decides, on failure, whether it is taken out again: an
    // earlier one that fails after the same listener was added again (a page reloaded while its
    // first SSUBSCRIBE hung) must not take out the one the later add is making live.
    let adds = this.adding.get(chan);
    if (adds === undefined) this.adding.set(chan, (adds = new Map()));
    const mine = { owns: !chan.listeners.has(listener) || adds.get(listener)?.owns === true };
    adds.set(listener, mine);
    chan.listeners.add(listener);
    const deadline = Date.now() + this.timeout;
    try {
      // a connection that dropped during the pass (not one Redis refuses): once more, on the new
      // one, within what is left of commandTimeout
      await this.sync(part).catch((err: unknown) => {
        if (this.closed || part.sub === undefined || part.sub.refusing || Date.now() >= deadline) throw err;
        return within(this.sync(part), deadline, 'the subscriber connection is not back');
      });
    } catch (err) {
      if (adds.get(listener) === mine && mine.owns) {
        chan.listeners.delete(listener);
        if (chan.listeners.size === 0) this.sync(part).catch(noop);
      }
      throw this.closed ? closedError() : unavailable(err);
    } finally {
      if (adds.get(listener) === mine) adds.delete(listener);
      if (adds.size === 0 && this.adding.get(chan) === adds) this.adding.delete(chan);
    }
    if (this.closed) throw closedError();
  }

  async remove(part: Partition, channel: string, listener: BrokerListener): Promise<void> {
    const chan = part.chans.get(channel);
    if (chan === undefined || !chan.listeners.delete(listener)) return;
    if (chan.listeners.size > 0 || this.closed) return;
    await this.sync(part).catch(noop); // a failed SUNSUBSCRIBE resets the connection, which drops it anyway
  }

  /** Queues a pass of `part` (or joins the one queued); resolves once its channels are as its listeners ask. */
  sync(part: Partition): Promise<void> {
    return this.passes.run(part);
  }

  private async pass(part: Partition): Promise<void> {
    if (this.closed) throw closedError();
    this.busy.add(part);
    try {
      if (this.topology !== undefined && this.parts.some((p) => p.hasListeners())) await this.topology.ensure();
      await this.reconcile(part);
    } finally {
      this.busy.delete(part);
      this.collectSubscribers();
    }
  }

  /** The partition's catch-up, if it asked for one; a failed one leaves needRecovery set and is retried. */
  private async catchUp(part: Partition): Promise<void> {
    const sub = part.sub;
    if (this.closed || !part.needRecovery || this.passes.waiting(part)) return; // (the queued pass goes on with it)
    if (sub === undefined || !sub.ready) return this.passes.retryLater(); // (and its ready event asks again)
    this.busy.add(part);
    try {
      const generation = sub.generation;
      const current = (): boolean => !this.closed && part.sub === sub && sub.generation === generation;
      await part.recover(current, () => this.passes.waiting(part));
    } catch {
      // retried below
    } finally {
      this.busy.delete(part);
      if (part.needRecovery && !this.passes.waiting(part)) this.passes.retryLater();
      this.collectSubscribers();
    }
  }

  /**
   * SSUBSCRIBE channels that gained listeners, SUNSUBSCRIBE those that lost them, on the
   * partition's node: on a cluster, the one that says it serves the slot (see topology.ts).
   */
  private async reconcile(part: Partition, hops = 0): Promise<void> {
    const slot = part.keys.slot;
    let node = this.topology?.nodeOf(slot) ?? 'single';
    // a map that names another node than the live subscription's may be behind: ask before moving
    if (part.sub !== undefined && part.sub.node !== node) node = await this.topology!.owner(slot);
    if (part.sub !== undefined && part.sub.node !== node) {
      // the slot moved (failover, migration): its channels start again on the new owner
      const old = part.sub;
      part.sub = undefined;
      const was = topics([...part.chans.values()].filter((c) => c.subscribed));
      if (was.length > 0 && old.ready) old.unsubscribe(was, Date.now() + this.timeout).catch(noop);
      part.connectionLost();
    }
    const want: Chan[] = [];
    const drop: Chan[] = [];
    let fresh = true; // nothing of the partition subscribed on this node yet
    for (const chan of part.chans.values()) {
      if (chan.subscribed) fresh = false;
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
      await sub.unsubscribe(topics(drop), deadline);
      for (const chan of drop) {
        chan.subscribed = false;
        chan.armed = false;
        if (chan.listeners.size === 0) this.forget(part, chan);
      }
    }
    if (want.length > 0) {
      const idle = await part.checkIdle();
      const head = await this.store.read(part.index, [], '');
      if (idle) part.idle(head.epoch);
      else if (part.liveEpoch === undefined) part.liveEpoch = head.epoch;
      else if (head.epoch !== part.liveEpoch) part.startRecovery();
      await sub.subscribe(topics(want), deadline);
      if (generation !== sub.generation) throw unavailable('the subscriber connection was lost');
      // asked after SSUBSCRIBE: a node that serves the slot now gets every later publish, or
      // loses the slot and drops these channels (a lost connection, a catch-up)
      if (fresh && this.topology !== undefined && hops < 2) {
        const owner = await this.topology.owner(slot).catch((err: unknown) => unavailable(err));
        if (owner !== node) {
          sub.unsubscribe(topics(want), Date.now() + this.timeout).catch(noop);
          if (typeof owner !== 'string') throw owner;
          return this.reconcile(part, hops + 1);
        }
        // the connection may have been lost while the node was asked: then these channels are
        // not subscribed on it, and marking them so would leave them unsubscribed for good
        if (generation !== sub.generation) throw unavailable('the subscriber connection was lost');
      }
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
    const client = subscriberClient(this.conn.client, this.conn.cluster, node);
    sub = new Subscriber(
      client,
      node,
      {
        message: (topic, raw) => this.message(topic, raw),
        lost: (s) => {
          this.topology?.stale();
          for (const part of this.parts) if (part.sub === s) part.connectionLost();
        },
        ready: (s) => {
          for (const p of this.parts) {
            if (p.sub !== s) continue;
            if (p.needRecovery || [...p.chans.values()].some((c) => c.listeners.size > 0 && !c.subscribed))
              this.passes.runEach([p]);
          }
        },
        moved: (s) => {
          this.topology?.stale();
          s.reset();
        },
      },
      this.health,
    );
    this.subs.set(node, sub);
    return sub;
  }

  /** Closes subscriber connections no partition uses any more (nor is in a pass on). */
  private collectSubscribers(): void {
    for (const [node, sub] of this.subs) {
      if (!this.parts.some((p) => p.sub === sub && (p.hasListeners() || this.busy.has(p)))) {
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

  /** A pass of each of `parts`, on its own: one that fails does not hold up the others. */
  requestRecovery(...parts: Partition[]): void {
    if (!this.closed) this.passes.runEach(parts);
  }

  private checkTopology(): void {
    if (this.closed || this.topology === undefined || !this.parts.some((p) => p.hasListeners())) return;
    this.topology.refresh().then(() => {
      this.requestRecovery(
        ...this.parts.filter((p) => p.sub !== undefined && p.sub.node !== this.topology!.nodeOf(p.keys.slot)),
      );
    }, noop);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.topologyTimer !== undefined) clearInterval(this.topologyTimer);
    for (const part of this.parts) {
      for (const chan of part.chans.values()) chan.listeners.clear();
      part.chans.clear();
    }
    this.byTopic.clear();
    await Promise.all([...this.subs.values()].map((s) => s.close()));
    this.subs.clear();
    await this.passes.close();
  }
}
