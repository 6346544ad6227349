/**
 * The RedisBroker a command opens: on one Redis (`--redis URL`) or on a Redis
 * Cluster from its startup nodes (`--cluster`), with the app's key prefix and
 * the partition count its layout record names (so the command publishes and
 * listens where the app's processes do; the default when there is none yet,
 * and then it writes none: the app's processes do).
 * ioredis is loaded only here, so `publish --url` works without it.
 */
import type { RedisBroker } from '../brokers/redis';
import type { RedisTarget } from './args';

export async function openBroker(
  target: RedisTarget,
  prefix: string | undefined,
  timeout: number,
): Promise<RedisBroker> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { RedisBroker: Broker } = require('../brokers/redis') as typeof import('../brokers/redis');
  const where = 'url' in target ? { url: target.url } : { cluster: target.cluster };
  // never writes the record: a command run before the app's processes (or after a data loss) must not claim a layout for them
  const options = {
    ...where,
    commandTimeout: timeout,
    recordLayout: false,
    ...(prefix === undefined ? {} : { prefix }),
  };
  const first = new Broker(options);
  // unreachable: the command's own call says so
  const recorded = await first.recordedPartitions().catch(() => undefined);
  if (recorded === undefined || recorded === first.partitions) return first;
  await first.close();
  return new Broker({ ...options, partitions: recorded });
}
