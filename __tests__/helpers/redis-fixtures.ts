/**
 * What the RedisBroker test files open, closed after each test whatever happened:
 * brokers, ioredis clients (5 and 6), redis-servers of their own, TCP proxies, dirs.
 * Plus the key helpers for a one-partition broker.
 */
import Redis, { type RedisOptions } from 'ioredis';
import Redis6 from 'ioredis6';
import { rmSync } from 'node:fs';
import { RedisBroker } from '../../lib/brokers/redis';
import { startRedis, type RedisServer } from './redis-server';
import { startProxy, type TcpProxy } from './tcp-proxy';

export function redisFixtures(tag: string, clientDefaults: RedisOptions = {}) {
  let seqNo = 0;
  const open = {
    brokers: [] as RedisBroker[],
    clients: [] as Redis[],
    servers: [] as RedisServer[],
    proxies: [] as TcpProxy[],
    dirs: [] as string[],
  };
  afterEach(async () => {
    for (const b of open.brokers.splice(0)) await b.close();
    for (const c of open.clients.splice(0)) c.disconnect();
    for (const p of open.proxies.splice(0)) await p.close();
    for (const s of open.servers.splice(0)) await s.stop();
    for (const d of open.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const track = (c: Redis): Redis => {
    c.on('error', () => undefined);
    open.clients.push(c);
    return c;
  };
  return {
    /** A key prefix of its own for each test. */
    prefix: (): string => `${tag}${process.pid}-${++seqNo}:`,
    /** The sharded pub/sub channel (and history stream) of `channel` on one Redis (one partition, tag `0`). */
    topic: (p: string, channel: string): string => `${p}{0}:${channel}`,
    /** A replay position on the one partition. */
    at: (seq: number): Map<number, number> => new Map([[0, seq]]),
    broker(options: ConstructorParameters<typeof RedisBroker>[0]): RedisBroker {
      const b = new RedisBroker(options);
      open.brokers.push(b);
      return b;
    },
    client: (url: string, options: RedisOptions = {}): Redis =>
      track(new Redis(url, { ...clientDefaults, ...options })),
    client6: (url: string, options: Record<string, unknown> = {}): Redis =>
      track(new Redis6(url, { ...(clientDefaults as Record<string, unknown>), ...options }) as unknown as Redis),
    async server(options: Parameters<typeof startRedis>[0] = {}): Promise<RedisServer> {
      const s = await startRedis(options);
      open.servers.push(s);
      return s;
    },
    async proxy(port: number): Promise<TcpProxy> {
      const p = await startProxy(port);
      open.proxies.push(p);
      return p;
    },
    /** Stops tracking `s` (the test stopped it itself, e.g. to restart on its dir). */
    untrack(s: RedisServer): void {
      const i = open.servers.indexOf(s);
      if (i !== -1) open.servers.splice(i, 1);
    },
    /** A dir removed after the test. */
    dir(path: string): string {
      open.dirs.push(path);
      return path;
    },
  };
}
