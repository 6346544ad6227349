/**
 * ONE behavioural suite every Broker must pass (MemoryBroker, RedisBroker, ...).
 * Delivery may be synchronous (memory) or arrive later (Redis): every assertion
 * on delivery waits for the events it expects, and "nothing arrived" is proved
 * with a fence: an event on another subscribed channel OF THE SAME PARTITION
 * published afterwards (a broker delivers in seq order per partition, so once
 * the fence arrived, anything published before it would have too).
 */
import type { Broker } from '../brokers/broker';
import { afterEach, describe, Recorder, type ContractContext } from './contract/common';
import { deliveryTests } from './contract/delivery';
import { publishingTests } from './contract/publishing';
import { replayTests } from './contract/replay';

export { Recorder, channelNames, samePartition, afterMap } from './contract/common';

/**
 * Registers the broker contract suite in the current test file: every
 * behaviour the hub relies on (seq order per partition, delivery only to
 * subscribed channels, unsubscribe, replay snapshots and their `complete`
 * rules across partitions, history 0, idempotency keys, fence, close). Run it
 * against your own Broker:
 *
 * ```ts
 * runBrokerContract('MyBroker', async () => new MyBroker(), async () => wipeMyStorage());
 * ```
 *
 * `makeBroker` is called for every broker a test needs (some need two sharing
 * one storage, as two processes would); `cleanup` runs after each test.
 */
export function runBrokerContract(
  name: string,
  makeBroker: () => Promise<Broker>,
  cleanup: () => Promise<void> = async () => undefined,
): void {
  describe(`Broker contract: ${name}`, () => {
    let brokers: Broker[] = [];

    async function broker(): Promise<Broker> {
      const b = await makeBroker();
      brokers.push(b);
      return b;
    }

    /** Publishes to `fence` (which `rec` listens to, same partition) and waits for it: everything before has arrived. */
    async function fence(b: Broker, rec: Recorder, channel: string): Promise<void> {
      const ev = await b.publish(channel, { data: 'fence' }, 10);
      await rec.has(ev.id);
    }

    afterEach(async () => {
      const list = brokers;
      brokers = [];
      for (const b of list) await b.close();
      await cleanup();
    });

    const ctx: ContractContext = { broker, fence };
    publishingTests(ctx);
    deliveryTests(ctx);
    replayTests(ctx);
  });
}
