/**
 * Who may open a stream of one factory (an `sse()` middleware or a hub):
 * the origin allow-list and the connection limits, and the set of open
 * streams they count. Verdicts only: the stream writes the answer.
 */
import type { IncomingMessage } from 'node:http';
import type { StreamKind } from '../diagnostics';
import { Counters } from '../metrics/counters';
import { StreamHead } from '../protocol/headers';
import type { ResolvedOptions } from './options';

/** Why a stream may not open: 403 (origin), 200 + `retry:` + end (full), 429 (per key). */
export type Refusal = 'origin' | 'full' | 'per-key';

/** Why an open stream was cut: its backlog, a drain timeout, or a write that threw. */
export type DropReason = 'backlog' | 'drain' | 'error';

/** The status each refusal is counted under (`full` answers 200 + retry, a transient 503 in spirit). */
const REFUSED_STATUS = { origin: 403, full: 503, 'per-key': 429 } as const;

/** Streams cut, over every reason. */
export function droppedTotal(counters: Counters): number {
  return counters.dropped.backlog + counters.dropped.drain + counters.dropped.error;
}

/** What Admission needs of a stream. */
export interface Member {
  /** Ends the stream after a last frame (used by closeAll). */
  end(last: string): void;
}

export class Admission<M extends Member = Member> {
  readonly open = new Set<M>();
  /** What these streams did: the metrics source's counters (lib/metrics), shared with a hub. */
  readonly counters = new Counters();
  readonly head: StreamHead;
  /** The shared clock's period for these streams, and how many beats of silence make a keep-alive. */
  readonly timing: { readonly period: number; readonly keepAliveTicks: number };
  private readonly perKey = new Map<string, number>();
  private readonly keyOf = new Map<M, string>();

  constructor(
    readonly opts: ResolvedOptions,
    /** Who opened these streams, for the diagnostics channels. */
    readonly kind: StreamKind,
  ) {
    this.head = new StreamHead(opts.headers);
    // The keep-alive goes out between keepAlive and keepAlive + period ms after the last write, never earlier.
    const base = opts.keepAlive > 0 ? Math.min(opts.keepAlive, opts.drainTimeout) : opts.drainTimeout;
    const period = Math.max(1, Math.floor(base / 5));
    this.timing = { period, keepAliveTicks: opts.keepAlive > 0 ? Math.ceil(opts.keepAlive / period) : 0 };
  }

  /**
   * The origin to allow with CORS headers (`undefined`: same-origin or no
   * allow-list), or `false` when the request's `Origin` is not allowed.
   */
  origin(req: IncomingMessage): string | undefined | false {
    const check = this.opts.originAllowed;
    const origin = req.headers.origin;
    if (check === undefined || origin === undefined) return undefined;
    let ok = false;
    try {
      ok = check(origin) === true;
    } catch {
      ok = false;
    }
    return ok ? origin : false;
  }

  /** Reserves a place for `member`, or says why not (and counts the refusal). */
  admit(member: M, req: IncomingMessage): Refusal | undefined {
    const refusal = this.verdict(member, req);
    if (refusal !== undefined) this.counters.refused[REFUSED_STATUS[refusal]]++;
    return refusal;
  }

  private verdict(member: M, req: IncomingMessage): Refusal | undefined {
    const opts = this.opts;
    if (this.origin(req) === false) return 'origin';
    if (this.open.size >= opts.maxConnections) return 'full';
    if (opts.maxConnectionsPerKey !== Infinity) {
      const key = String(opts.connectionKey(req));
      const n = this.perKey.get(key) ?? 0;
      if (n >= opts.maxConnectionsPerKey) return 'per-key';
      this.perKey.set(key, n + 1);
      this.keyOf.set(member, key);
    }
    this.open.add(member);
    return undefined;
  }

  /** Releases `member`'s place (idempotent). */
  release(member: M): void {
    if (!this.open.delete(member)) return;
    const key = this.keyOf.get(member);
    if (key === undefined) return;
    this.keyOf.delete(member);
    const n = (this.perKey.get(key) ?? 1) - 1;
    if (n <= 0) this.perKey.delete(key);
    else this.perKey.set(key, n);
  }

  /** Metrics gauges (lib/metrics): an `sse()` middleware registers its admission as the source. */
  gauges(): { connections: number; channels: number } {
    return { connections: this.open.size, channels: 0 };
  }

  /** Ends every open stream after `last(member)` (e.g. a jittered `retry:`), so browsers reconnect to a peer. */
  closeAll(last: () => string): void {
    for (const member of [...this.open]) member.end(last());
  }
}
