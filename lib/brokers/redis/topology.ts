/**
 * Which master node owns which slot of a Redis Cluster (CLUSTER SLOTS through
 * the command connection), refreshed when a subscriber connection is lost or
 * moved and on the health-check interval. Node addresses go through the
 * Cluster client's `natMap` as ioredis' own connections do (a cluster in
 * containers announces addresses its clients cannot reach).
 *
 * That map is whatever node the Cluster client asked, and one that has not yet
 * heard of a failover still names the demoted master. Subscribing there is
 * accepted (a replica takes SSUBSCRIBE for its master's slots) but it gets the
 * shard's messages only once the new master knows it as its replica: until then
 * what is published is lost to it, and no catch-up notices, since reads follow
 * MOVED to the new master. So where a partition subscribes is asked of the node
 * itself (`owner`): a node knows whether it serves a slot, and one just demoted
 * knows its new master.
 */
import type { Cluster, Redis } from 'ioredis';
import type { CommandConnection } from './client';
import { unavailable, within } from './failures';

type Range = { start: number; end: number; node: string };

type NatMap =
  | Record<string, { host: string; port: number } | undefined>
  | ((key: string) => { host: string; port: number } | null | undefined);

/** `host:port` as the Cluster client reaches it: mapped by its `natMap` option, if any. */
export function mappedNode(client: Cluster, host: string, port: number): string {
  const natMap = (client as unknown as { options?: { natMap?: NatMap } }).options?.natMap;
  const key = `${host}:${port}`;
  const to = typeof natMap === 'function' ? natMap(key) : natMap?.[key];
  return to ? `${to.host}:${to.port}` : key;
}

export class Topology {
  private ranges: Range[] = [];
  private isStale = true;
  private refreshing: Promise<void> | undefined = undefined;

  constructor(
    private readonly conn: CommandConnection,
    private readonly timeout: number,
  ) {}

  stale(): void {
    this.isStale = true;
  }

  async ensure(): Promise<void> {
    if (this.isStale || this.ranges.length === 0) await this.refresh();
  }

  refresh(): Promise<void> {
    this.refreshing ??= this.load().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async load(): Promise<void> {
    this.ranges = this.parse(await this.conn.call(Date.now() + this.timeout, ['CLUSTER', 'SLOTS']));
    this.isStale = false;
  }

  private parse(reply: unknown): Range[] {
    if (!Array.isArray(reply)) throw unavailable('unexpected CLUSTER SLOTS reply');
    const ranges: Range[] = [];
    for (const r of reply as unknown[][]) {
      const master = r[2] as unknown[] | undefined;
      if (!Array.isArray(master)) continue;
      const node = mappedNode(this.conn.client as Cluster, String(master[0]), Number(master[1]));
      ranges.push({ start: Number(r[0]), end: Number(r[1]), node });
    }
    return ranges;
  }

  nodeOf(slot: number): string {
    return find(this.ranges, slot);
  }

  /**
   * The node that serves `slot` by its own account: the map's node, asked directly (CLUSTER
   * SLOTS on the Cluster client's connection to it); one that names another is believed
   * (its view replaces the map) and that one is asked in turn, a few hops at most. For a node
   * the Cluster client has no connection to, the one it sends the slot's commands to is asked.
   */
  async owner(slot: number): Promise<string> {
    let node = this.nodeOf(slot);
    for (let hop = 0; hop < 3; hop++) {
      let client = this.connectionTo(node);
      if (client === undefined) {
        // the Cluster client keeps no connection to it (its own map, newer, left it out):
        // ask the node it sends the slot's commands to
        node = this.commandNode(slot);
        client = this.connectionTo(node);
        if (client === undefined) throw unavailable(`no connection to ask which node serves slot ${slot}`);
      }
      const view = this.parse(
        await within(
          client.call('CLUSTER', 'SLOTS'),
          Date.now() + this.timeout,
          `no reply from ${node} within ${this.timeout} ms`,
        ),
      );
      const named = find(view, slot);
      if (named === 'unknown') return node;
      if (named !== this.nodeOf(slot)) this.ranges = view; // fresher than the map, at least about this slot
      if (named === node) return node;
      node = named;
    }
    return node;
  }

  private connectionTo(node: string): Redis | undefined {
    return (this.conn.client as Cluster).nodes('all').find((n) => `${n.options.host}:${n.options.port}` === node);
  }

  /** The node the Cluster client sends `slot`'s commands to (its map follows MOVED replies). */
  private commandNode(slot: number): string {
    const key = this.conn.nodeOf(slot);
    const i = key.lastIndexOf(':');
    return i < 0 ? 'unknown' : mappedNode(this.conn.client as Cluster, key.slice(0, i), Number(key.slice(i + 1)));
  }
}

function find(ranges: readonly Range[], slot: number): string {
  for (const r of ranges) if (slot >= r.start && slot <= r.end) return r.node;
  return 'unknown';
}
