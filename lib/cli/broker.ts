/**
 * The RedisBroker a command opens: on one Redis (`--redis URL`) or on a Redis
 * Cluster from its startup nodes (`--cluster`), with the app's key prefix.
 * ioredis is loaded only here, so `publish --url` works without it.
 */
import type { RedisBroker } from '../brokers/redis';
import type { RedisTarget } from './args';

export function openBroker(target: RedisTarget, prefix: string | undefined, timeout: number): RedisBroker {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { RedisBroker: Broker } = require('../brokers/redis') as typeof import('../brokers/redis');
  const where = 'url' in target ? { url: target.url } : { cluster: target.cluster };
  return new Broker({ ...where, commandTimeout: timeout, ...(prefix === undefined ? {} : { prefix }) });
}
