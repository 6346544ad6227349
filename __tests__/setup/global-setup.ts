import { startRedis, waitForRedis, type RedisServer } from '../helpers/redis-server';

declare global {
  // eslint-disable-next-line no-var
  var __SSE_RELAY_REDIS__: RedisServer | undefined;
}

/**
 * One real redis-server for the whole run, on a free loopback port, unless
 * REDIS_URL points at one already. Workers read REDIS_URL from the env.
 */
export default async function globalSetup(): Promise<void> {
  if (process.env.REDIS_URL) {
    const port = Number(new URL(process.env.REDIS_URL).port || 6379);
    await waitForRedis(port);
    return;
  }
  const server = await startRedis();
  globalThis.__SSE_RELAY_REDIS__ = server;
  process.env.REDIS_URL = server.url;
  process.env.SSE_RELAY_TEST_REDIS_STARTED = '1';
}
