/**
 * Which master node owns which slot of a Redis Cluster (CLUSTER SLOTS through
 * the command connection), refreshed when a subscriber connection is lost or
 * moved and on the health-check interval. Node addresses go through the
 * Cluster client's `natMap` as ioredis' own connections do (a cluster in
 * containers announces addresses its clients cannot reach).
 */
import type { Cluster } from 'ioredis';
import type { CommandConnection } from './client';
import { unavailable } from './failures';

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
  private ranges: { start: number; end: number; node: string }[] = [];
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
    const reply = await this.conn.call(Date.now() + this.timeout, ['CLUSTER', 'SLOTS']);
    if (!Array.isArray(reply)) throw unavailable('unexpected CLUSTER SLOTS reply');
    const ranges: { start: number; end: number; node: string }[] = [];
    for (const r of reply as unknown[][]) {
      const master = r[2] as unknown[] | undefined;
      if (!Array.isArray(master)) continue;
      const node = mappedNode(this.conn.client as Cluster, String(master[0]), Number(master[1]));
      ranges.push({ start: Number(r[0]), end: Number(r[1]), node });
    }
    this.ranges = ranges;
    this.isStale = false;
  }

  nodeOf(slot: number): string {
    for (const r of this.ranges) if (slot >= r.start && slot <= r.end) return r.node;
    return 'unknown';
  }
}
