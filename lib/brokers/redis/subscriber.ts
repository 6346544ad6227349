/**
 * One subscriber connection (sharded pub/sub): its client opened, SSUBSCRIBE/SUNSUBSCRIBE in
 * batches, a health check (PING on the subscribed connection; no reply within
 * the interval: the connection is destroyed and ioredis reconnects), and the
 * events the broker needs: a message, the connection lost (every subscription
 * of it is gone), ready again, a slot moved away.
 */
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { unavailable } from './failures';
import type { AnyClient } from './ioredis';

export interface SubscriberEvents {
  message(topic: string, raw: string): void;
  lost(sub: Subscriber): void;
  ready(sub: Subscriber): void;
  moved(sub: Subscriber): void;
}

function noop(): void {}

const SUB_OPTIONS: RedisOptions = {
  autoResubscribe: false,
  autoResendUnfulfilledCommands: false,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  lazyConnect: false,
  connectionName: 'sse-relay:sub',
};

/**
 * A new subscriber connection's client: a copy of the command connection's on one Redis, one
 * to `node` (`host:port`, as the Cluster client reaches it) on a cluster.
 */
export function subscriberClient(command: AnyClient, cluster: boolean, node: string): Redis {
  let client: Redis;
  if (!cluster) {
    client = (command as Redis).duplicate(SUB_OPTIONS);
  } else {
    const [host, port] = [node.slice(0, node.lastIndexOf(':')), Number(node.slice(node.lastIndexOf(':') + 1))];
    const any = (command as Cluster).nodes()[0];
    if (any === undefined) throw unavailable('no cluster node is known yet');
    // (ioredis opens cluster node connections without a retryStrategy: the Cluster reconnects them; ours must reconnect by itself)
    client = any.duplicate({
      ...SUB_OPTIONS,
      host,
      port,
      retryStrategy: (times: number) => Math.min(times * 100, 2000),
    });
  }
  client.on('error', noop);
  return client;
}

/** Drops the socket at once (ioredis' disconnect() would otherwise wait up to 2 s for a FIN that may never come). */
export function destroyStream(client: unknown): boolean {
  const stream = (client as { stream?: { destroy(): void } }).stream;
  if (stream === undefined) return false;
  stream.destroy();
  return true;
}

export class Subscriber {
  private healthTimer: NodeJS.Timeout | undefined = undefined;
  private pingOutstanding = false;
  private closed = false;
  /** Counts connection losses, so a command that raced one is not trusted. */
  generation = 0;

  private readonly onMessage = (topic: string, raw: string): void => this.events.message(topic, raw);
  private readonly onClose = (): void => {
    this.resetting = false;
    this.generation++;
    this.pingOutstanding = false;
    this.events.lost(this);
  };
  private readonly onReady = (): void => {
    this.refused = false;
    this.resetting = false;
    this.events.ready(this);
  };
  private readonly onMoved = (): void => this.events.moved(this);
  private refused = false;
  /** reset() destroyed the socket and ioredis has not seen the close yet: its status still says ready. */
  private resetting = false;
  private readonly refusedWaiters = new Set<(err: Error) => void>();
  private readonly onError = (err: unknown): void => {
    if ((err as { code?: string } | undefined)?.code === 'ECONNREFUSED') {
      this.refused = true;
      for (const reject of [...this.refusedWaiters]) reject(unavailable(`Redis refused the connection (${this.node})`));
    }
    // ioredis 5 answers an unsolicited SUNSUBSCRIBE (slot migrated) with this: start again.
    if (err instanceof Error && err.message.includes('Command queue state error')) this.reset();
  };

  constructor(
    readonly client: Redis,
    readonly node: string,
    private readonly events: SubscriberEvents,
    healthCheckInterval: number,
  ) {
    client.on('smessage', this.onMessage);
    client.on('close', this.onClose);
    client.on('ready', this.onReady);
    client.on('moved', this.onMoved);
    client.on('error', this.onError);
    client.on('error', noop);
    this.healthTimer = setInterval(() => this.check(), healthCheckInterval);
    this.healthTimer.unref();
  }

  /** Redis refused the last connection attempt (and none was ready since). */
  get refusing(): boolean {
    return this.refused;
  }

  get ready(): boolean {
    return this.client.status === 'ready' && !this.resetting;
  }

  /** PING; a connection that does not answer within one interval is destroyed (half-open TCP). */
  private check(): void {
    if (this.closed || this.client.status !== 'ready') return;
    if (this.pingOutstanding) {
      this.reset();
      return;
    }
    this.pingOutstanding = true;
    const generation = this.generation;
    this.client.ping().then(() => {
      if (generation === this.generation) this.pingOutstanding = false;
    }, noop);
  }

  /** Destroys the socket (no FIN handshake to wait for); ioredis reconnects. */
  reset(): void {
    if (this.closed) return;
    this.resetting = true;
    if (!destroyStream(this.client)) this.client.disconnect(true);
  }

  /** Resolves once ready, within `ms`; at once while Redis refuses connections. */
  waitReady(ms: number): Promise<void> {
    if (this.ready) return Promise.resolve();
    if (this.refused) return Promise.reject(unavailable(`Redis refused the connection (${this.node})`));
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        clearTimeout(timer);
        this.refusedWaiters.delete(done);
        this.client.off('ready', onReady);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onReady = (): void => done();
      const timer = setTimeout(
        () => done(unavailable(`the subscriber connection to ${this.node} is not ready (${this.client.status})`)),
        Math.max(0, ms),
      );
      timer.unref();
      this.client.once('ready', onReady);
      this.refusedWaiters.add(done);
    });
  }

  /** A command on this connection: rejects at once when the connection drops, resets it on timeout. */
  private command(run: () => Promise<unknown>, deadline: number): Promise<void> {
    if (this.closed) return Promise.reject(unavailable('closed'));
    const generation = this.generation;
    return new Promise<void>((resolve, reject) => {
      const done = (err?: unknown): void => {
        clearTimeout(timer);
        this.client.off('close', onClose);
        if (err === undefined && generation !== this.generation)
          err = unavailable('the subscriber connection was lost');
        if (err === undefined) resolve();
        else reject(unavailable(err));
      };
      const onClose = (): void => done(unavailable('the subscriber connection was lost'));
      const timer = setTimeout(
        () => {
          done(unavailable('no reply on the subscriber connection'));
          this.reset();
        },
        Math.max(0, deadline - Date.now()),
      );
      timer.unref();
      this.client.once('close', onClose);
      run().then(() => done(), done);
    });
  }

  /** SSUBSCRIBE; every topic must be in the same slot. */
  subscribe(topics: readonly string[], deadline: number): Promise<void> {
    return this.command(() => this.client.ssubscribe(...topics), deadline);
  }

  unsubscribe(topics: readonly string[], deadline: number): Promise<void> {
    return this.command(() => this.client.sunsubscribe(...topics), deadline);
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.healthTimer !== undefined) clearInterval(this.healthTimer);
    this.healthTimer = undefined;
    this.client.off('smessage', this.onMessage);
    this.client.off('close', this.onClose);
    this.client.off('ready', this.onReady);
    this.client.off('moved', this.onMoved);
    const c = this.client;
    return new Promise<void>((resolve) => {
      if (c.status === 'end') return resolve();
      if (c.status !== 'ready') {
        destroyStream(c);
        c.disconnect();
        return resolve();
      }
      const timer = setTimeout(() => {
        c.disconnect();
        resolve();
      }, 2000);
      c.once('end', () => {
        clearTimeout(timer);
        resolve();
      });
      c.quit().catch(() => c.disconnect());
    }).finally(() => c.off('error', this.onError));
    // (the noop 'error' listener stays: ioredis may still report the socket's end)
  }
}
