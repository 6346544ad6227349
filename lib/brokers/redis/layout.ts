/**
 * The layout record: `<prefix>layout`, a string naming the partition count
 * every process under the prefix uses (`v1 partitions=<n>`). Each layout has
 * keys and sharded channels of its own, so processes of different layouts
 * would never see each other's events; a broker whose layout differs from the
 * recorded one refuses its publishes and subscriptions instead
 * (ERR_BROKER_LAYOUT).
 *
 * One `SET <key> <value> NX GET` (written when absent, compared otherwise; a
 * `GET` for a broker with `recordLayout: false`, which never claims a layout) on
 * connect and on every reconnect, and again when a partition shows a new epoch
 * (Redis lost or renumbered its state: a restart, a FLUSHALL, a promotion);
 * never per publish. A Redis that lost the record gets it back from the first
 * broker that checks; of two layouts racing for it one wins, and the other's
 * next check refuses. A check that cannot reach the record (its node is down,
 * on a cluster) holds operations up to half of commandTimeout, then lets them
 * go on, and is tried again at most once a second.
 */
import { SseRelayError } from '../../errors';
import type { CommandConnection } from './client';
import { isReplyError } from './failures';
import { keySlot } from './partitions';

/** The code of the process warning a refused layout gives, once per broker. */
export const LAYOUT_WARNING = 'SSE_RELAY_LAYOUT';

/** How often a refused or unverifiable layout is asked again (at most). */
const RECHECK_MS = 1000;

export function layoutKey(prefix: string): string {
  return prefix + 'layout';
}

export function layoutValue(partitions: number): string {
  return `v1 partitions=${partitions}`;
}

/** The partition count a record names (`v1 partitions=<n>`, n in 1..8), or undefined. */
export function layoutPartitions(value: unknown): number | undefined {
  const text = Buffer.isBuffer(value) ? value.toString('utf8') : value;
  const m = typeof text === 'string' ? /^v1 partitions=([1-8])$/.exec(text) : null;
  return m === null ? undefined : Number(m[1]);
}

function noop(): void {}

/** What the store waits on (see Store.ready): `ok` once the check passed; `ensure()` waits for it, or refuses. */
export interface LayoutGate {
  readonly ok: boolean;
  ensure(): Promise<void>;
}

const VERIFIED = 0;
const UNKNOWN = 1;
const REFUSED = 2;
const UNVERIFIED = 3;

export class Layout implements LayoutGate {
  readonly key: string;
  readonly value: string;
  private readonly slot: number;
  private state = UNKNOWN;
  /** The check in flight. */
  private checking: Promise<void> | undefined = undefined;
  /** When the last check ended (for REFUSED and UNVERIFIED: when to ask again). */
  private at = 0;
  /** What the record held when the check refused (undefined: not a string). */
  private found: string | undefined = undefined;
  /** Said once as a process warning: a process that only serves streams (whose subscribes are retried by their clients) shows it too. */
  private warned = false;

  constructor(
    private readonly conn: CommandConnection,
    private readonly prefix: string,
    private readonly partitions: number,
    private readonly timeout: number,
    /** false: the record is only read (none: nothing to compare, the app's processes write it). */
    private readonly write = true,
  ) {
    this.key = layoutKey(prefix);
    this.value = layoutValue(partitions);
    this.slot = keySlot(this.key);
  }

  /** Checked and matching: operations go on without waiting (the fast path). */
  get ok(): boolean {
    return this.state === VERIFIED;
  }

  /** Check again (a reconnect, a new epoch): started now, and operations wait for it. */
  recheck(): void {
    if (this.checking !== undefined) return;
    this.state = UNKNOWN;
    this.start();
  }

  /**
   * Resolves when the layout matches, or could not be read (then after at most half of
   * commandTimeout); rejects with ERR_BROKER_LAYOUT when the record names another one.
   */
  ensure(): Promise<void> {
    if (this.state === VERIFIED) return Promise.resolve();
    const stale = performance.now() - this.at >= RECHECK_MS;
    if (this.checking === undefined && (this.state === UNKNOWN || stale)) this.start();
    // unreadable last time: asked again meanwhile, without holding anything up
    if (this.state === UNVERIFIED) return Promise.resolve();
    if (this.checking === undefined) return this.state === REFUSED ? Promise.reject(this.error()) : Promise.resolve();
    const checking = this.checking;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, Math.floor(this.timeout / 2));
      timer.unref();
      void checking.then(() => {
        clearTimeout(timer);
        if (this.state === REFUSED) reject(this.error());
        else resolve();
      });
    });
  }

  private start(): void {
    const run = this.conn
      .call(
        Date.now() + this.timeout,
        this.write ? ['SET', this.key, this.value, 'NX', 'GET'] : ['GET', this.key],
        this.slot,
      )
      .then(
        (reply) => {
          const found = Buffer.isBuffer(reply) ? reply.toString('utf8') : reply;
          if (found === null || found === undefined || found === this.value) {
            this.state = VERIFIED;
          } else {
            this.state = REFUSED;
            this.found = typeof found === 'string' ? found : undefined;
            this.warn();
          }
        },
        (err: unknown) => {
          if (isReplyError(err) && /^WRONGTYPE/.test(err.message)) {
            this.state = REFUSED;
            this.found = undefined;
            this.warn();
          } else {
            // not reachable now (its node down, Redis gone): not a refusal; asked again later
            this.state = UNVERIFIED;
          }
        },
      )
      .then(() => {
        this.at = performance.now();
        if (this.checking === run) this.checking = undefined;
      });
    this.checking = run;
    run.catch(noop);
  }

  /** The partition count recorded now (one GET), or undefined when none is, or not one this version reads. */
  async recorded(): Promise<number | undefined> {
    return layoutPartitions(await this.conn.call(Date.now() + this.timeout, ['GET', this.key], this.slot));
  }

  private warn(): void {
    if (this.warned || !this.write) return; // (a tool's broker, recordLayout false, reports it through its operations)
    this.warned = true;
    process.emitWarning(this.error().message, { code: LAYOUT_WARNING });
  }

  /** A fresh error for each refused operation (publishes carry their outcome). */
  private error(): SseRelayError {
    const m = this.found === undefined ? null : /^v1 partitions=(\d+)$/.exec(this.found);
    const theirs =
      m !== null
        ? `partitions ${m[1]}`
        : `a record this version cannot read: ${this.found === undefined ? 'not a string' : `'${this.found}'`}`;
    const fix =
      m !== null
        ? `Use partitions: ${m[1]} here, or start the new layout under a new prefix, or stop every process of the old layout and delete the key (DEL ${this.key}) first`
        : `Use a new prefix, or stop every process under this one and delete the key (DEL ${this.key}) first`;
    return new SseRelayError(
      'ERR_BROKER_LAYOUT',
      `sse-relay: RedisBroker partitions ${this.partitions} does not match the layout in use under prefix ` +
        `'${this.prefix}' (${theirs}, recorded in key '${this.key}'): processes of different layouts never ` +
        `see each other's events, so this broker refuses to publish or subscribe. ${fix}.`,
      { outcome: 'not-published' },
    );
  }
}
