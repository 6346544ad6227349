import { Counters, type LabelCounts } from './counters';

/**
 * The process-wide registry of metrics sources: every hub and every `sse()`
 * middleware registers itself once. A scrape sums their counters and reads
 * their gauges. A source is held weakly (a forgotten hub is not kept alive by
 * its metrics) and its counters strongly: when a source is unregistered
 * (`hub.close()`) or collected, its counts are folded into `retired`, so the
 * process totals stay monotonic, as Prometheus counters must.
 */

/** What a source reports at scrape time. */
export interface SourceGauges {
  /** Open streams right now. */
  connections: number;
  /** Channels with an open stream right now (0 for `sse()`). */
  channels: number;
  /** A counter the source reads from elsewhere (its broker's catch-ups), monotonic. */
  brokerRecoveries?: number;
}

/** A hub or an `sse()` middleware (or anything else that streams), as the registry sees it. */
export interface MetricsSource {
  /** Incremented by the source on its hot path. */
  readonly counters: Counters;
  /** Gauges now; called once per scrape. */
  gauges(): SourceGauges;
}

/** The sum over every source, as a scrape renders it. */
export interface MetricsSnapshot {
  connections: number;
  channels: number;
  /** Sources registered and alive. */
  sources: number;
  counters: Counters;
  /** The label name of per-channel-label series, when `channelLabel` is configured. */
  labelName: string | undefined;
}

interface Entry {
  readonly ref: WeakRef<MetricsSource>;
  readonly counters: Counters;
  /** Last value read from `gauges().brokerRecoveries`, kept for when the source is gone. */
  pulledRecoveries: number;
}

const entries = new Set<Entry>();
const retired = new Counters();

/**
 * Registers `source`; returns its unregister function (idempotent). Call it
 * when the source closes; a source that is garbage-collected without it is
 * retired at the next scrape.
 */
export function registerSource(source: MetricsSource): () => void {
  if (
    source === null ||
    typeof source !== 'object' ||
    !(source.counters instanceof Counters) ||
    typeof source.gauges !== 'function'
  ) {
    throw new TypeError(
      'sse-relay: registerSource expects { counters: Counters, gauges(): { connections, channels } }',
    );
  }
  const entry: Entry = { ref: new WeakRef(source), counters: source.counters, pulledRecoveries: 0 };
  entries.add(entry);
  return () => {
    if (!entries.has(entry)) return;
    const live = entry.ref.deref();
    if (live !== undefined) pullRecoveries(entry, live);
    retire(entry);
  };
}

function retire(entry: Entry): void {
  entries.delete(entry);
  retired.add(entry.counters);
  retired.brokerRecoveries += entry.pulledRecoveries;
}

function pullRecoveries(entry: Entry, source: MetricsSource): SourceGauges | undefined {
  let gauges: SourceGauges | undefined;
  try {
    gauges = source.gauges();
  } catch {
    return undefined; // a broken source must not break the scrape
  }
  const n = gauges.brokerRecoveries;
  if (typeof n === 'number' && n > entry.pulledRecoveries) entry.pulledRecoveries = n;
  return gauges;
}

/** Sums every source now. */
export function collect(): MetricsSnapshot {
  const counters = new Counters();
  counters.add(retired);
  counters.brokerRecoveries = retired.brokerRecoveries;
  let connections = 0;
  let channels = 0;
  let sources = 0;
  for (const entry of [...entries]) {
    const source = entry.ref.deref();
    if (source === undefined) {
      retire(entry);
      counters.add(entry.counters);
      counters.brokerRecoveries += entry.pulledRecoveries;
      continue;
    }
    sources++;
    const gauges = pullRecoveries(entry, source);
    if (gauges !== undefined) {
      connections += finite(gauges.connections);
      channels += finite(gauges.channels);
    }
    counters.add(entry.counters);
    counters.brokerRecoveries += entry.pulledRecoveries;
  }
  return { connections, channels, sources, counters, labelName: labelFn === undefined ? undefined : labelName };
}

function finite(n: unknown): number {
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : 0;
}

// ---------------------------------------------------------------------------
// Per channel label: `channelLabel(channel)` maps a channel to a label value
// (e.g. its namespace before ':'). Channel names are never labels themselves
// (unbounded cardinality). The label of a channel is computed once and cached;
// at most MAX_LABELS distinct values exist, the rest count as "other".

/** Distinct label values at most; past it, new values count as `other`. */
export const MAX_LABELS = 100;
const MAX_CACHED_CHANNELS = 10_000;
const LABEL_VALUE = /^[A-Za-z0-9_.:-]{1,64}$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

let labelFn: ((channel: string) => string) | undefined;
let labelName = 'namespace';
const labelCache = new Map<string, string>();
const labelValues = new Set<string>();

/** The built-in mapping: the part of the channel name before its first `:` (`order:123` -> `order`). */
export function namespaceOf(channel: string): string {
  const i = channel.indexOf(':');
  return i === -1 ? channel : channel.slice(0, i);
}

/**
 * Turns on per-label counts of published and delivered events: `fn` maps a
 * channel to a label value, `name` is the label's name (default `namespace`).
 * One mapping per process; calling it again with another function throws.
 * `undefined` turns it off (for tests).
 */
export function setChannelLabel(fn: ((channel: string) => string) | undefined, name = 'namespace'): void {
  if (fn !== undefined && typeof fn !== 'function') {
    throw new TypeError(`sse-relay: channelLabel must be a function (channel) => string, got ${typeof fn}`);
  }
  if (typeof name !== 'string' || !LABEL_NAME.test(name) || name.startsWith('__') || name === 'le') {
    throw new TypeError(`sse-relay: channelLabelName must be a Prometheus label name, got ${JSON.stringify(name)}`);
  }
  if (fn !== undefined && labelFn !== undefined && (fn !== labelFn || name !== labelName)) {
    throw new Error('sse-relay: a channelLabel is already set for this process (one mapping per process)');
  }
  labelFn = fn;
  labelName = name;
  labelCache.clear();
  labelValues.clear();
}

function labelOf(channel: string): string {
  let label: unknown;
  try {
    label = labelFn!(channel);
  } catch {
    label = undefined;
  }
  if (typeof label !== 'string' || !LABEL_VALUE.test(label)) return 'other';
  if (!labelValues.has(label)) {
    if (labelValues.size >= MAX_LABELS) return 'other';
    labelValues.add(label);
  }
  return label;
}

/**
 * The per-label counts of `channel` in `counters`, or undefined when no
 * `channelLabel` is configured (the common case: one comparison). Call it
 * once per event, not once per stream.
 */
export function labelCounts(counters: Counters, channel: string): LabelCounts | undefined {
  if (labelFn === undefined) return undefined;
  let label = labelCache.get(channel);
  if (label === undefined) {
    label = labelOf(channel);
    if (labelCache.size >= MAX_CACHED_CHANNELS) labelCache.clear();
    labelCache.set(channel, label);
  }
  let counts = counters.byLabel.get(label);
  if (counts === undefined) {
    counts = { published: 0, delivered: 0 };
    counters.byLabel.set(label, counts);
  }
  return counts;
}
