import { Histogram } from './histogram';

/**
 * The counters of one metrics source (one hub, or one `sse()` middleware):
 * plain mutable integer fields, so the hot path pays one increment and
 * nothing else. `lib/metrics/registry.ts` sums them over every source when
 * `/metrics` is scraped.
 *
 *   counters.delivered++;
 *   counters.dropped.backlog++;
 *   counters.refused[403]++;
 */
export class Counters {
  /** `hub.publish()` calls resolved (the broker has the event). */
  published = 0;
  /** Event frames written (or queued) to streams: one per stream per event. */
  delivered = 0;
  /** Queued frames replaced by a newer one with the same `coalesce` key. */
  coalesced = 0;
  /** Streams cut for a limit, by reason. */
  readonly dropped: DropCounts = { backlog: 0, drain: 0, error: 0 };
  /** Resume attempts (a request with `Last-Event-ID`), by outcome. */
  readonly replays: ReplayCounts = { complete: 0, reset: 0 };
  /**
   * Requests turned away, by the status they got. `503` counts the transient
   * refusals that a stream answers with `200 + retry:` and an end (over
   * `maxConnections`, shutting down, broker unavailable), since EventSource
   * gives up for good on a real 503; the publisher answers a real 503.
   */
  readonly refused: RefusedCounts = { 400: 0, 401: 0, 403: 0, 405: 0, 413: 0, 415: 0, 429: 0, 503: 0 };
  /** `reset` events sent (resumes that could not be complete, broker resets). */
  resets = 0;
  /** Events a broker handed over that broke the Broker contract's rules, dropped. */
  invalid = 0;
  /** Broker catch-ups after a lost connection (pulled from the broker at scrape time when it counts them itself). */
  brokerRecoveries = 0;
  /** Seconds from `publish()` in this process to the frame handed to the socket. */
  readonly latency = new Histogram();
  /** Per channel label (see `channelLabel`), only when one is configured: label -> counts. */
  readonly byLabel = new Map<string, LabelCounts>();

  /** Records one publish → written-to-socket latency, in seconds. */
  observeLatency(seconds: number): void {
    this.latency.observe(seconds);
  }

  /** Adds every count of `other` to this one (used when a source is retired). */
  add(other: Counters): void {
    this.published += other.published;
    this.delivered += other.delivered;
    this.coalesced += other.coalesced;
    this.resets += other.resets;
    this.invalid += other.invalid;
    this.brokerRecoveries += other.brokerRecoveries;
    addInto(this.dropped, other.dropped);
    addInto(this.replays, other.replays);
    addInto(this.refused, other.refused);
    this.latency.add(other.latency);
    for (const [label, counts] of other.byLabel) {
      const mine = this.byLabel.get(label);
      if (mine === undefined) this.byLabel.set(label, { published: counts.published, delivered: counts.delivered });
      else {
        mine.published += counts.published;
        mine.delivered += counts.delivered;
      }
    }
  }
}

export interface DropCounts {
  /** Unsent backlog over `maxBufferedBytes`. */
  backlog: number;
  /** Socket not drained within `drainTimeout`. */
  drain: number;
  /** The write threw (a broken response). */
  error: number;
}

export interface ReplayCounts {
  /** Everything since `Last-Event-ID` was replayed. */
  complete: number;
  /** The replay could not be complete: the stream got `reset`. */
  reset: number;
}

export interface RefusedCounts {
  400: number;
  401: number;
  403: number;
  405: number;
  413: number;
  415: number;
  429: number;
  503: number;
}

/** Counts kept per channel label. */
export interface LabelCounts {
  published: number;
  delivered: number;
}

function addInto<T extends object>(into: T, from: T): void {
  const a = into as Record<string, number>;
  const b = from as Record<string, number>;
  for (const key of Object.keys(b)) a[key] = (a[key] ?? 0) + b[key]!;
}
