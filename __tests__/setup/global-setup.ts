import { startCluster, type RedisCluster } from '../helpers/redis-cluster';
import { startRedis, waitForRedis, type RedisServer } from '../helpers/redis-server';

declare global {
  var __SSE_RELAY_REDIS__: RedisServer | undefined;

  var __SSE_RELAY_CLUSTER__: RedisCluster | undefined;
}

/**
 * For the whole run: one real redis-server on a free loopback port (unless
 * REDIS_URL points at one already), and one real Redis Cluster of 6 nodes
 * (3 masters + 3 replicas; unless REDIS_CLUSTER_NODES lists one as
 * `host:port,host:port,...`). Workers read both from the env. Tests that kill
 * or fail over nodes start a cluster of their own.
 */
export default async function globalSetup(): Promise<void> {
  if (process.env.REDIS_URL) {
    const port = Number(new URL(process.env.REDIS_URL).port || 6379);
    await waitForRedis(port);
  } else {
    const server = await startRedis();
    globalThis.__SSE_RELAY_REDIS__ = server;
    process.env.REDIS_URL = server.url;
    process.env.SSE_RELAY_TEST_REDIS_STARTED = '1';
  }
  if (!process.env.REDIS_CLUSTER_NODES) {
    const cluster = await startCluster();
    globalThis.__SSE_RELAY_CLUSTER__ = cluster;
    process.env.REDIS_CLUSTER_NODES = cluster.startup.map((n) => `${n.host}:${n.port}`).join(',');
  }
}
