/**
 * What the Redis fault tests record and compare: channels spread one per
 * partition, a Recorder that keeps each channel's events and resets in the order
 * they came, round-robin publishing, and cluster brokers that reach every node
 * through a proxy so a test can hold them off one node.
 */
import type { BrokerEvent, PartitionPosition } from '../../lib/brokers/broker';
import type { RedisBroker } from '../../lib/brokers/redis';
import { Recorder } from '../../lib/testing';
import type { TcpProxy } from './tcp-proxy';

/** One channel name per partition of `b`, index i on partition i. */
export function onePerPartition(b: RedisBroker, tag: string): string[] {
  const out: string[] = new Array(b.partitions);
  for (let i = 0; out.filter(Boolean).length < b.partitions && i < 10_000; i++) {
    const c = `${tag}:${i}`;
    out[b.partitionOf(c)] ??= c;
  }
  return out;
}

export type Entry = BrokerEvent | { reset: PartitionPosition };

/** A Recorder that also keeps, per channel, everything it got in the order it came: events and resets. */
export class Timeline extends Recorder {
  private readonly log = new Map<string, Entry[]>();
  override onEvent(event: BrokerEvent): void {
    this.of(event.channel).push(event);
    super.onEvent(event);
  }
  override onReset(channel: string, head: PartitionPosition): void {
    this.of(channel).push({ reset: head });
    super.onReset(channel, head);
  }
  of(channel: string): Entry[] {
    let l = this.log.get(channel);
    if (l === undefined) this.log.set(channel, (l = []));
    return l;
  }
}

/** An entry as a line a failing diff can be read by. */
export const show = (x: Entry): string =>
  'reset' in x ? `reset ${x.reset.epoch}.${x.reset.seq}` : `${x.id} ${x.data}`;

/** `rounds` events on every channel, published one by one (round-robin); what was acknowledged. */
export async function publishRounds(
  b: RedisBroker,
  channels: readonly string[],
  tag: string,
  rounds: number,
): Promise<BrokerEvent[]> {
  const out: BrokerEvent[] = [];
  for (let r = 0; r < rounds; r++)
    for (const c of channels) out.push(await b.publish(c, { data: `${tag}${r} ${c}` }, 1000));
  return out;
}

/** For `until`: whether `rec` has every one of `acked`. */
export const hasAll = (rec: Recorder, acked: readonly BrokerEvent[]) => (): boolean => {
  const got = new Set(rec.ids());
  return acked.every((e) => got.has(e.id));
};

/**
 * RedisBroker options that open a cluster through the proxies only: startup nodes are the
 * proxies, and natMap sends every node the cluster names (`proxies` maps its port) to its proxy.
 */
export function throughProxies(proxies: ReadonlyMap<number, TcpProxy>): {
  cluster: { host: string; port: number }[];
  clusterOptions: { natMap: Record<string, { host: string; port: number }> };
} {
  const natMap: Record<string, { host: string; port: number }> = {};
  for (const [port, px] of proxies) natMap[`127.0.0.1:${port}`] = { host: '127.0.0.1', port: px.port };
  const cluster = [...proxies.values()].map((px) => ({ host: '127.0.0.1', port: px.port }));
  return { cluster, clusterOptions: { natMap } };
}
