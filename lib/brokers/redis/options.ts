/**
 * RedisBroker options: their types, defaults and validation, once, at
 * construction. Unknown names are refused with a "did you mean".
 */
import { checkOptions, intInRange } from '../../options';
import { MAX_PARTITIONS } from './partitions';

/** The part of an ioredis client (`Redis` or `Cluster`) that the option `redis` must have. */
export interface RedisClientLike {
  readonly status: string;
  duplicate(override?: object): unknown;
}

export interface ClusterNode {
  host: string;
  port: number;
}

export interface RedisBrokerOptions {
  /** Redis URL for the connections the broker opens, e.g. `redis://127.0.0.1:6379`. Default: ioredis' default (localhost:6379). Not with `redis` or `cluster`. */
  url?: string;
  /**
   * Your ioredis client, a `Redis` or a `Cluster`. The broker runs its commands on it and
   * opens its subscriber connections from it (`duplicate()`, or one per master node of a
   * cluster); `close()` never quits it.
   */
  redis?: RedisClientLike;
  /** Startup nodes of a Redis Cluster the broker opens itself (an ioredis `Cluster`). */
  cluster?: readonly ClusterNode[];
  /** Options for the connections the broker opens (ioredis `RedisOptions`, e.g. password, tls). */
  redisOptions?: Record<string, unknown>;
  /**
   * With `cluster`: options for the ioredis `Cluster` the broker opens (`ClusterOptions`, e.g.
   * `natMap` for a cluster in containers, `dnsLookup` for TLS on a managed cluster). Its
   * `redisOptions` are merged with the option `redisOptions`.
   */
  clusterOptions?: Record<string, unknown>;
  /** Prefix of every key and pub/sub channel. Default `'sse-relay:'`. */
  prefix?: string;
  /**
   * How long (ms) one operation may wait for a connection and its reply before it rejects
   * with `ERR_BROKER_UNAVAILABLE`. Default 5000.
   */
  commandTimeout?: number;
  /** Partitions positions are kept in (1..8). Default 8 on a cluster, 1 on one Redis. */
  partitions?: number;
  /**
   * Whether this broker writes the layout record (`<prefix>layout`) when there is none. Default
   * true. false: it only reads it (and refuses another layout), for a tool that must not claim
   * a layout for the app's processes (the CLI).
   */
  recordLayout?: boolean;
  /** ms between PINGs on each subscriber connection; no reply within it: reconnect. Default 3000. */
  healthCheckInterval?: number;
  /** Largest `data` (UTF-8 bytes) a publish accepts. Default 1 MiB. */
  maxDataBytes?: number;
  /**
   * Replicas that must have a publish (Redis `WAIT`) before it resolves, so that a failover
   * to one of them keeps every acknowledged event. Fewer within `commandTimeout`: the publish
   * rejects with outcome 'unknown' (it is on the master). One Redis (with replicas, e.g.
   * behind Sentinel) only. Default 0: resolve once the master has it.
   */
  waitReplicas?: number;
}

export interface ResolvedOptions {
  readonly url: string | undefined;
  readonly redis: RedisClientLike | undefined;
  readonly cluster: readonly ClusterNode[] | undefined;
  readonly redisOptions: Record<string, unknown>;
  readonly clusterOptions: Record<string, unknown>;
  readonly prefix: string;
  readonly commandTimeout: number;
  readonly partitions: number | undefined;
  readonly recordLayout: boolean;
  readonly healthCheckInterval: number;
  readonly maxDataBytes: number;
  readonly waitReplicas: number;
}

const NAMES = [
  'url',
  'redis',
  'cluster',
  'redisOptions',
  'clusterOptions',
  'prefix',
  'commandTimeout',
  'partitions',
  'recordLayout',
  'healthCheckInterval',
  'maxDataBytes',
  'waitReplicas',
] as const;

export function resolveOptions(options: RedisBrokerOptions | undefined): ResolvedOptions {
  const o = checkOptions('RedisBroker', options, NAMES) as Record<string, unknown>;
  const { url, redis, cluster, redisOptions, clusterOptions, prefix = 'sse-relay:' } = o;
  if (url !== undefined && typeof url !== 'string') {
    throw new TypeError(`sse-relay: RedisBroker option url must be a string, got ${typeof url}`);
  }
  if (typeof prefix !== 'string' || /[{}\s]/.test(prefix)) {
    throw new TypeError(
      `sse-relay: RedisBroker option prefix must be a string without braces or spaces, got ${JSON.stringify(prefix)}`,
    );
  }
  const given = [url, redis, cluster].filter((v) => v !== undefined).length;
  if (given > 1)
    throw new TypeError('sse-relay: RedisBroker takes one of the options url, redis and cluster, not several');
  if (redis !== undefined) {
    const c = redis as { duplicate?: unknown; call?: unknown } | null;
    if (c === null || typeof c !== 'object' || typeof c.duplicate !== 'function' || typeof c.call !== 'function') {
      throw new TypeError(
        'sse-relay: RedisBroker option redis must be an ioredis client (new Redis(...) or new Cluster(...))',
      );
    }
  }
  if (cluster !== undefined) {
    if (!Array.isArray(cluster) || cluster.length === 0) {
      throw new TypeError('sse-relay: RedisBroker option cluster must be a non-empty array of { host, port }');
    }
    for (const node of cluster as unknown[]) {
      const n = node as Partial<ClusterNode> | null;
      if (n === null || typeof n !== 'object' || typeof n.host !== 'string' || !Number.isSafeInteger(n.port)) {
        throw new TypeError(
          `sse-relay: RedisBroker option cluster: each node must be { host: string, port: number }, got ${JSON.stringify(node)}`,
        );
      }
    }
  }
  for (const [name, value] of [
    ['redisOptions', redisOptions],
    ['clusterOptions', clusterOptions],
  ] as const) {
    if (value !== undefined && (value === null || typeof value !== 'object' || Array.isArray(value))) {
      throw new TypeError(`sse-relay: RedisBroker option ${name} must be an object`);
    }
  }
  if (clusterOptions !== undefined && cluster === undefined) {
    throw new TypeError('sse-relay: RedisBroker option clusterOptions goes with the option cluster (startup nodes)');
  }
  const partitions = o.partitions === undefined ? undefined : intInRange('partitions', o.partitions, 1, MAX_PARTITIONS);
  const recordLayout = o.recordLayout ?? true;
  if (typeof recordLayout !== 'boolean')
    throw new TypeError(`sse-relay: RedisBroker option recordLayout must be a boolean, got ${typeof recordLayout}`);
  const waitReplicas = o.waitReplicas === undefined ? 0 : intInRange('waitReplicas', o.waitReplicas, 0, 64);
  if (
    waitReplicas > 0 &&
    (cluster !== undefined || (redis as { isCluster?: boolean } | undefined)?.isCluster === true)
  ) {
    // WAIT counts the replicas of the connection's own node; on a cluster a redirected call could leave it counting none of its writes.
    throw new TypeError(
      'sse-relay: RedisBroker option waitReplicas works on one Redis (with replicas), not on a Redis Cluster',
    );
  }
  return {
    url: url as string | undefined,
    redis: redis as RedisClientLike | undefined,
    cluster: cluster as ClusterNode[] | undefined,
    redisOptions: (redisOptions as Record<string, unknown> | undefined) ?? {},
    clusterOptions: (clusterOptions as Record<string, unknown> | undefined) ?? {},
    prefix,
    commandTimeout:
      o.commandTimeout === undefined ? 5000 : intInRange('commandTimeout', o.commandTimeout, 1, 3_600_000),
    partitions,
    recordLayout,
    healthCheckInterval:
      o.healthCheckInterval === undefined
        ? 3000
        : intInRange('healthCheckInterval', o.healthCheckInterval, 10, 3_600_000),
    maxDataBytes:
      o.maxDataBytes === undefined ? 1024 * 1024 : intInRange('maxDataBytes', o.maxDataBytes, 0, 512 * 1024 * 1024),
    waitReplicas,
  };
}
