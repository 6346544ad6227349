export default async function globalTeardown(): Promise<void> {
  const server = globalThis.__SSE_RELAY_REDIS__;
  if (server !== undefined) {
    await server.stop();
    globalThis.__SSE_RELAY_REDIS__ = undefined;
    delete process.env.REDIS_URL;
  }
  const cluster = globalThis.__SSE_RELAY_CLUSTER__;
  if (cluster !== undefined) {
    await cluster.stop();
    globalThis.__SSE_RELAY_CLUSTER__ = undefined;
    delete process.env.REDIS_CLUSTER_NODES;
  }
}
