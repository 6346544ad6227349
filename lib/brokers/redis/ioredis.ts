/**
 * ioredis itself: loading it (an optional peer dependency, so only when a
 * broker opens its own connections), telling a Cluster from a Redis, and
 * closing a client the broker owns.
 */
import type { Cluster, Redis } from 'ioredis';
import { SseRelayError } from '../../errors';

export type AnyClient = Redis | Cluster;
type Ctor = new (...args: unknown[]) => AnyClient;

export function loadIORedis(): { Redis: Ctor; Cluster: Ctor } {
  try {
    // Optional peer dependency: loaded only when a RedisBroker opens its own connection.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require('ioredis') as { Redis?: Ctor; Cluster?: Ctor; default?: Ctor & { Cluster?: Ctor } };
    const Redis = mod.Redis ?? mod.default!;
    return { Redis, Cluster: mod.Cluster ?? mod.default!.Cluster! };
  } catch (err) {
    if ((err as NodeJS.ErrnoException | undefined)?.code === 'MODULE_NOT_FOUND') {
      throw new SseRelayError(
        'ERR_REDIS_MISSING',
        "sse-relay: RedisBroker needs the 'ioredis' package (version 5 or later): npm install ioredis",
        { cause: err },
      );
    }
    throw err;
  }
}

export function isCluster(client: unknown): client is Cluster {
  return (client as { isCluster?: boolean }).isCluster === true;
}

/** QUIT when connected (bounded), else disconnect; resolves once nothing of it is left open. */
export async function quit(client: AnyClient): Promise<void> {
  if (client.status === 'end') return;
  if (client.status !== 'ready') {
    (client as unknown as { stream?: { destroy(): void } }).stream?.destroy();
    client.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const ended = new Promise<void>((resolve) => {
    client.once('end', () => resolve());
    timer = setTimeout(() => {
      client.disconnect();
      resolve();
    }, 2000);
  });
  client.quit().catch(() => client.disconnect());
  await ended;
  clearTimeout(timer);
}
