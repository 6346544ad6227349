/**
 * The broker contract suite, run against every broker: MemoryBroker, and
 * RedisBroker on the real redis-server of this test run (REDIS_URL), with its
 * own connection and on the caller's client, with ioredis 5 and ioredis 6
 * (RESP3 by default).
 */
import Redis, { Cluster } from 'ioredis';
import Redis6 from 'ioredis6';
import { clusterNodes } from './helpers/cluster-env';
import type { Broker } from '../lib/brokers/broker';
import { MemoryBroker } from '../lib/brokers/memory';
import { RedisBroker } from '../lib/brokers/redis';
import { runBrokerContract } from '../lib/testing';

runBrokerContract('MemoryBroker', async () => new MemoryBroker() as unknown as Broker);

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

  for (const [label, Ctor] of [
    ['ioredis 5', Redis],
    ['ioredis 6 (RESP3)', Redis6],
  ] as const) {
    runBrokerContract(
      `RedisBroker on the caller's client, ${label}`,
      async () => {
        const client = new (Ctor as typeof Redis)(process.env.REDIS_URL!);
        const broker = new RedisBroker({ redis: client, prefix });
        // the caller owns its client: quit it after the broker is closed
        const close = broker.close.bind(broker);
        let closing: Promise<void> | undefined;
        broker.close = () =>
          (closing ??= close().then(async () => {
            expect(['end', 'close'].includes(client.status)).toBe(false); // close() left the caller's client alone
            await client.quit();
          }));
        return broker;
      },
      flush,
    );
  }

  runBrokerContract(
    'RedisBroker with 4 partitions on one Redis',
    async () => new RedisBroker({ url: process.env.REDIS_URL!, prefix, partitions: 4 }),
    flush,
  );
});

describe('with a Redis Cluster (3 masters, 3 replicas)', () => {
  const prefix = `sse-relay-contract-${process.pid}:`;

  /** Deletes every key under this file's prefix on every master. */
  async function flush(): Promise<void> {
    const c = new Cluster(clusterNodes());
    try {
      for (const node of c.nodes('master')) {
        let cursor = '0';
        do {
          const [next, keys] = await node.scan(cursor, 'MATCH', prefix + '*', 'COUNT', 500);
          cursor = next;
          for (const k of keys) await node.del(k);
        } while (cursor !== '0');
      }
    } finally {
      await c.quit();
    }
  }

  afterAll(flush);

  runBrokerContract(
    'RedisBroker({ cluster: startup nodes })',
    async () => new RedisBroker({ cluster: clusterNodes(), prefix }),
    flush,
  );

  for (const [label, Ctor] of [
    ['ioredis 5', Cluster],
    ['ioredis 6 (RESP3)', Redis6.Cluster],
  ] as const) {
    runBrokerContract(
      `RedisBroker on the caller's Cluster client, ${label}`,
      async () => {
        const client = new (Ctor as typeof Cluster)(clusterNodes());
        const broker = new RedisBroker({ redis: client, prefix });
        const close = broker.close.bind(broker);
        let closing: Promise<void> | undefined;
        broker.close = () =>
          (closing ??= close().then(async () => {
            expect(['end', 'close'].includes(client.status)).toBe(false);
            await client.quit();
          }));
        return broker;
      },
      flush,
    );
  }
});
