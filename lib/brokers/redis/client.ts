/**
 * The command connection: the caller's ioredis client (`Redis` or `Cluster`)
 * or one the broker opens. Owns waiting for it (one listener per event for
 * any number of waiting operations), failing fast while Redis refuses
 * connections, bounded calls that say whether their outcome is known, the
 * Function library (loaded on connect, reloaded when Redis lost it) and the
 * offset between this clock and Redis' (for deadlines Redis enforces). A
 * READONLY reply on one Redis goes to switchover.ts.
 */
import type { Cluster, Redis } from 'ioredis';
import type { Writable } from 'node:stream';
import { closedError, isReplyError, refusedError, unavailable } from './failures';
import { isCluster, quit, type AnyClient } from './ioredis';
import { LIBRARY_SOURCE } from './scripts';
import { ServerCheck } from './server-check';
import { Switchover, type Socket } from './switchover';

function noop(): void {}

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
}

export class CommandConnection {
  readonly cluster: boolean;
  private readonly waiters = new Set<Waiter>();
  private refused = false;
  private lastError: unknown = undefined;
  private loading: Promise<void> | undefined = undefined;
  /** The library is loaded on the current connection (the fast path skips waiting for it). */
  loaded = false;
  /** Redis ms - local ms, and how uncertain it is. */
  private offset = 0;
  private offsetError = Infinity;
  private closed = false;
  private readonly check = new ServerCheck();
  private readonly switchover: Switchover | undefined;

  private readonly onReady = (): void => {
    this.refused = false;
    this.lastError = undefined;
    this.loading = undefined; // a new server may not have our functions (restart, failover)
    this.loaded = false;
    for (const w of [...this.waiters]) w.resolve();
  };
  private readonly onError = (err: unknown): void => {
    this.lastError = err;
    if (refusedError(err)) {
      this.refused = true;
      for (const w of [...this.waiters]) w.reject(unavailable(this.reason('Redis refused the connection')));
    }
  };
  /** Commands sent and not answered: a lost connection takes their replies with it. */
  private readonly inflight = new Set<Waiter>();
  private readonly onClose = (): void => {
    for (const w of [...this.inflight])
      w.reject(unavailable(this.reason('the connection was lost before the reply'), 'unknown'));
  };
  private readonly onEnd = (): void => {
    for (const w of [...this.waiters]) w.reject(unavailable(this.reason('the connection was closed')));
  };

  constructor(
    readonly client: AnyClient,
    private readonly owned: boolean,
    private readonly timeout: number,
    /** One Redis: after a READONLY reply, the first function call that succeeds (see switchover.ts). */
    onPromoted: () => void = noop,
  ) {
    this.cluster = isCluster(client);
    // (on a cluster a demoted master answers MOVED, which the Cluster client follows)
    if (!this.cluster) {
      this.switchover = new Switchover(
        owned,
        () => this.socket(),
        () => {
          if (!this.closed) onPromoted();
        },
      );
    }
    client.on('ready', this.onReady);
    client.on('error', this.onError);
    client.on('end', this.onEnd);
    if (!this.cluster) client.on('close', this.onClose);
  }

  reason(fallback: string): string {
    const err = this.lastError as Error | undefined;
    return err instanceof Error && err.message ? `${fallback}: ${err.message}` : fallback;
  }

  get ready(): boolean {
    return this.client.status === 'ready';
  }

  /** Resolves once ready, within `ms`; at once with ERR_BROKER_UNAVAILABLE while Redis refuses connections. */
  waitReady(ms: number): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    if (this.client.status === 'ready') return Promise.resolve();
    if (this.client.status === 'end') return Promise.reject(unavailable(this.reason('the connection was closed')));
    if (this.refused) return Promise.reject(unavailable(this.reason('Redis refused the connection')));
    if (this.client.status === 'wait') this.client.connect().catch(noop);
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        resolve: () => {
          clearTimeout(timer);
          this.waiters.delete(w);
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          this.waiters.delete(w);
          reject(err);
        },
      };
      const timer = setTimeout(() => w.reject(unavailable(this.reason('not connected'))), Math.max(0, ms));
      timer.unref();
      this.waiters.add(w);
    });
  }

  /** Rejects every waiting operation (close). */
  abortWaiters(): void {
    for (const w of [...this.waiters]) w.reject(closedError());
    for (const w of [...this.inflight]) w.reject(closedError());
  }

  /** Loads the library once per connection (FUNCTION LOAD REPLACE on every master that answers) and measures the clock offset. */
  ensureLibrary(): Promise<void> {
    this.loading ??= this.load().then(
      () => {
        this.loaded = true;
      },
      (err: unknown) => {
        this.loading = undefined;
        throw err;
      },
    );
    return this.loading;
  }

  /** Redis lost the library (FUNCTION FLUSH, a restart, a failover to a node without it): load again. */
  libraryLost(): void {
    this.loading = undefined;
    this.loaded = false;
  }

  private async load(): Promise<void> {
    const nodes: { call(...args: unknown[]): Promise<unknown> }[] = this.cluster
      ? (this.client as Cluster).nodes('master')
      : [this.client as Redis];
    // Loaded on every master that answers: one that is down (a shard of a cluster, not failed over)
    // must not stop the others. Back without the library, it answers "Function not found", and the
    // call that hears it loads it again (libraryLost).
    const loads = await Promise.allSettled(nodes.map((n) => n.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_SOURCE)));
    const failed = loads.find((r) => r.status === 'rejected');
    if (failed !== undefined && loads.every((r) => r.status === 'rejected')) throw failed.reason;
    this.check.run(nodes, (n) => {
      const o = (n as { options?: { host?: string; port?: number } }).options;
      return o?.host !== undefined ? `${o.host}:${o.port}` : 'Redis';
    });
    const before = Date.now();
    const t = (await this.client.call('TIME')) as [string, string];
    const after = Date.now();
    const redisMs = Number(t[0]) * 1000 + Math.floor(Number(t[1]) / 1000);
    const err = (after - before) / 2 + 1;
    if (err <= this.offsetError || this.offsetError === Infinity) {
      this.offset = redisMs - (before + after) / 2;
      this.offsetError = err;
    }
  }

  /** A local deadline as Redis ms, early by the offset's uncertainty (so Redis never runs a call we gave up on). */
  redisDeadline(localMs: number): number {
    if (this.offsetError === Infinity) return 0;
    return Math.floor(localMs + this.offset - this.offsetError - 5);
  }

  /**
   * One command, bounded by `deadline` (local ms). Rejects with ERR_BROKER_UNAVAILABLE whose
   * `outcome` is 'unknown' once the command may have reached Redis, and with Redis' own reply
   * error unchanged (the caller decides what it means). `slot`: the cluster slot the command
   * goes to, so that a connection that stopped answering can be started again.
   */
  call(deadline: number, args: readonly (string | number | Buffer)[], slot = -1): Promise<unknown> {
    if (this.closed) return Promise.reject(closedError());
    // Connected: sent now, in this turn (so that corked() puts a turn's calls in one write).
    if (this.client.status === 'ready') return this.send(deadline, args, slot);
    return this.waitReady(deadline - Date.now()).then(() => this.send(deadline, args, slot));
  }

  /** The master that serves `slot`, as far as the client knows ('' on one Redis). */
  nodeOf(slot: number): string {
    return this.cluster ? ((this.client as Cluster).slots[slot]?.[0] ?? '') : '';
  }

  /**
   * Runs `fn` with the sockets to Redis corked: the commands it sends leave in one write per
   * node, so Redis reads them in one go (a read and a write cost each side more than a
   * small batch call does).
   */
  corked(fn: () => void): void {
    const nodes: unknown[] = this.cluster ? (this.client as Cluster).nodes('master') : [this.client];
    const streams: Writable[] = [];
    for (const n of nodes) {
      const stream = (n as { stream?: Writable }).stream;
      if (stream !== undefined && stream.writable && typeof stream.cork === 'function') {
        stream.cork();
        streams.push(stream);
      }
    }
    try {
      fn();
    } finally {
      for (const stream of streams) stream.uncork();
    }
  }

  private send(deadline: number, args: readonly (string | number | Buffer)[], slot: number): Promise<unknown> {
    // ioredis flattens an array argument and turns numbers into strings: no copy per argument here.
    const sent = this.switchover !== undefined ? this.socket() : undefined;
    const command = this.client.call(String(args[0]), args.slice(1));
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        this.inflight.delete(w);
        return true;
      };
      const w: Waiter = {
        resolve: noop,
        reject: (err) => {
          if (finish()) reject(err);
        },
      };
      const timer = setTimeout(
        () => {
          if (!finish()) return;
          reject(unavailable(`no reply within ${this.timeout} ms`, 'unknown'));
          if (this.owned) this.reset(slot);
        },
        Math.max(0, deadline - Date.now()),
      );
      timer.unref();
      this.inflight.add(w);
      command.then(
        (value) => {
          this.switchover?.ran(args[0] === 'FCALL'); // our functions write: Redis refuses them on a replica
          if (finish()) resolve(value);
        },
        (err: unknown) => {
          if (isReplyError(err) && !this.closed) this.switchover?.refused(err, sent);
          if (!finish()) return;
          if (this.closed) reject(closedError());
          else if (isReplyError(err)) reject(err);
          else reject(unavailable(err, 'unknown'));
        },
      );
    });
  }

  private socket(): Socket | undefined {
    return (this.client as unknown as { stream?: Socket }).stream;
  }

  /**
   * A connection that stopped answering (half-open: no FIN, no RST ever comes): start it again.
   * Ours only; the caller's client is left alone. On a cluster, the connection to the master
   * of `slot`: ioredis then opens a new one to it.
   */
  private reset(slot: number): void {
    if (this.closed) return;
    if (!this.cluster) {
      const stream = (this.client as unknown as { stream?: { destroy(): void } }).stream;
      if (stream !== undefined) stream.destroy();
      else this.client.disconnect(true);
      return;
    }
    if (slot < 0) return;
    const node = this.nodeOf(slot);
    for (const n of (this.client as Cluster).nodes('master')) {
      if (`${n.options.host}:${n.options.port}` === node) (n as unknown as { stream?: Writable }).stream?.destroy();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abortWaiters();
    this.client.off('ready', this.onReady);
    this.client.off('end', this.onEnd);
    this.client.off('close', this.onClose);
    if (this.owned) await quit(this.client);
    this.client.off('error', this.onError);
  }
}
