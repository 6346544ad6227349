/**
 * The broker contract suite, run against every broker: MemoryBroker, and
 * RedisBroker on the real redis-server of this test run (REDIS_URL).
 */
import Redis from 'ioredis';
import { MemoryBroker } from '../lib/brokers/memory';
import { RedisBroker } from '../lib/brokers/redis';
import { runBrokerContract } from '../lib/testing';

runBrokerContract('MemoryBroker', async () => new MemoryBroker());

describe('with Redis', () => {
  const prefix = `sse-relay-contract-${process.pid}:`;
  let admin: Redis;

  beforeAll(() => {
    admin = new Redis(process.env.REDIS_URL!);
  });

  afterAll(async () => {
    await flush();
    await admin.quit();
  });

  /** Deletes every key under this file's prefix. */
  async function flush(): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', prefix + '*', 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await admin.del(...keys);
    } while (cursor !== '0');
  }

  runBrokerContract('RedisBroker', async () => new RedisBroker({ url: process.env.REDIS_URL!, prefix }), flush);

  runBrokerContract(
    "RedisBroker on the caller's client",
    async () => {
      const client = new Redis(process.env.REDIS_URL!);
      const broker = new RedisBroker({ redis: client, prefix });
      // the caller owns its client: quit it after the broker is closed
      const close = broker.close.bind(broker);
      let closing: Promise<void> | undefined;
      broker.close = () =>
        (closing ??= close().then(async () => {
          expect(client.status).toBe('ready'); // close() left the caller's client alone
          await client.quit();
        }));
      return broker;
    },
    flush,
  );
});
