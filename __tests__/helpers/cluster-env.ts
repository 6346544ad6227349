/** The run's shared Redis Cluster (global setup), as startup nodes. A missing one is a failure, never a skip. */
export function clusterNodes(): { host: string; port: number }[] {
  const env = process.env.REDIS_CLUSTER_NODES;
  if (!env)
    throw new Error(
      'REDIS_CLUSTER_NODES is not set: the global test setup starts a Redis Cluster (needs redis-server and redis-cli)',
    );
  return env.split(',').map((hp) => {
    const i = hp.lastIndexOf(':');
    return { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) };
  });
}
