/**
 * Which streams of this hub listen to which channel, and the broker
 * subscriptions that follow from it: a channel is subscribed at the broker
 * when its first stream arrives and unsubscribed after its last one left.
 */
import type { Broker, BrokerListener } from '../brokers/broker';
import type { HubStream } from './stream';

export class Channels {
  /** channel -> streams subscribed to it here. */
  private readonly streams = new Map<string, Set<HubStream>>();
  /** channel -> broker subscription in progress or done. */
  private readonly subs = new Map<string, Promise<void>>();
  /**
   * group -> its name as one string object, and the streams in it (a group's shared
   * frames are forgotten with its last stream). Fan-out compares group names per
   * stream per event: one object per name makes that a pointer comparison.
   */
  private readonly groups = new Map<string, { readonly name: string; streams: number }>();
  private closed = false;

  constructor(
    private readonly broker: Broker,
    private readonly listener: BrokerListener,
    private readonly onGroupEmpty: (group: string) => void,
  ) {}

  /** Channels with at least one stream here. */
  get size(): number {
    return this.streams.size;
  }

  of(channel: string): Set<HubStream> | undefined {
    return this.streams.get(channel);
  }

  attach(s: HubStream): void {
    for (const ch of s.channels) {
      let set = this.streams.get(ch);
      if (set === undefined) {
        set = new Set();
        this.streams.set(ch, set);
      }
      set.add(s);
    }
    if (s.group !== undefined) {
      const g = this.groups.get(s.group);
      if (g === undefined) this.groups.set(s.group, { name: s.group, streams: 1 });
      else g.streams++;
    }
  }

  /** The group name `name` as the string object the streams already in that group have (or `name` itself). */
  groupName(name: string): string {
    return this.groups.get(name)?.name ?? name;
  }

  detach(s: HubStream): void {
    for (const ch of s.channels) {
      const set = this.streams.get(ch);
      if (set === undefined || !set.delete(s) || set.size > 0) continue;
      this.streams.delete(ch);
      this.release(ch);
    }
    const g = s.group === undefined ? undefined : this.groups.get(s.group);
    if (g !== undefined && --g.streams === 0) {
      this.groups.delete(g.name);
      this.onGroupEmpty(g.name);
    }
  }

  /** Resolves when the broker delivers every channel of `s` here. */
  subscribe(channels: readonly string[]): Promise<unknown> {
    return Promise.all(channels.map((ch) => this.ensure(ch)));
  }

  private ensure(channel: string): Promise<void> {
    let sub = this.subs.get(channel);
    if (sub === undefined) {
      sub = this.broker.subscribe(channel, this.listener);
      this.subs.set(channel, sub);
      // A subscription that completes after close() is released at once.
      sub
        .then(() => (this.closed ? this.broker.unsubscribe(channel, this.listener) : undefined))
        .catch(() => undefined);
      sub.catch(() => {
        if (this.subs.get(channel) === sub) this.subs.delete(channel);
      });
    }
    return sub;
  }

  /** The channel's last stream left: unsubscribe once the subscription settled, unless a stream came back. */
  private release(channel: string): void {
    const sub = this.subs.get(channel);
    this.subs.delete(channel);
    if (sub === undefined) return;
    sub
      .then(
        () =>
          this.streams.has(channel) || this.subs.has(channel)
            ? undefined
            : this.broker.unsubscribe(channel, this.listener),
        () => undefined,
      )
      .catch(() => undefined);
  }

  /** Unsubscribes everything (hub.close()). */
  async close(): Promise<void> {
    this.closed = true;
    const channels = [...this.subs.keys()];
    this.subs.clear();
    await Promise.allSettled(channels.map((ch) => this.broker.unsubscribe(ch, this.listener)));
  }
}
