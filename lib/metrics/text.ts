import type { Counters } from './counters';
import type { MetricsSnapshot } from './registry';

/**
 * The Prometheus text exposition format (version 0.0.4) of a snapshot:
 * every family with its HELP and TYPE lines, counters ending in `_total`,
 * label values escaped, no channel names as labels.
 */

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** One metric family as rendered: also what the prom-client integration registers. */
export interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  /** Series: labels and value; histograms give their `_bucket`/`_sum`/`_count` lines here. */
  samples(snapshot: MetricsSnapshot): Sample[];
}

export interface Sample {
  /** The sample's full name (differs from the family name for histogram lines). */
  name: string;
  labels: Record<string, string>;
  value: number;
}

function one(name: string, value: number, labels: Record<string, string> = {}): Sample {
  return { name, labels, value };
}

/** Series per label value, and `other` for counts made before the label was configured or past the cap. */
function perLabel(
  name: string,
  s: MetricsSnapshot,
  pick: (c: { published: number; delivered: number }) => number,
  total: number,
): Sample[] {
  const labelName = s.labelName!;
  const out: Sample[] = [];
  let labelled = 0;
  let other = 0;
  for (const [label, counts] of s.counters.byLabel) {
    const n = pick(counts);
    labelled += n;
    if (label === 'other') other += n;
    else out.push(one(name, n, { [labelName]: label }));
  }
  other += Math.max(0, total - labelled);
  if (other > 0 || out.length === 0) out.push(one(name, other, { [labelName]: 'other' }));
  return out;
}

function byKey(name: string, label: string, values: object): Sample[] {
  return Object.entries(values).map(([key, n]) => one(name, n as number, { [label]: key }));
}

export const FAMILIES: readonly Family[] = [
  {
    name: 'sse_relay_connections',
    help: 'Open SSE streams, over every hub and sse() middleware in this process.',
    type: 'gauge',
    samples: (s) => [one('sse_relay_connections', s.connections)],
  },
  {
    name: 'sse_relay_channels',
    help: 'Channels with at least one open stream in this process.',
    type: 'gauge',
    samples: (s) => [one('sse_relay_channels', s.channels)],
  },
  {
    name: 'sse_relay_published_total',
    help: 'Events published through hub.publish() in this process (acknowledged by the broker).',
    type: 'counter',
    samples: (s) =>
      s.labelName === undefined
        ? [one('sse_relay_published_total', s.counters.published)]
        : perLabel('sse_relay_published_total', s, (c) => c.published, s.counters.published),
  },
  {
    name: 'sse_relay_delivered_total',
    help: 'Event frames written to streams (one per stream per event).',
    type: 'counter',
    samples: (s) =>
      s.labelName === undefined
        ? [one('sse_relay_delivered_total', s.counters.delivered)]
        : perLabel('sse_relay_delivered_total', s, (c) => c.delivered, s.counters.delivered),
  },
  {
    name: 'sse_relay_dropped_total',
    help: 'Streams cut for a limit: backlog over maxBufferedBytes, drain timeout, or a write error.',
    type: 'counter',
    samples: (s) => byKey('sse_relay_dropped_total', 'reason', s.counters.dropped),
  },
  {
    name: 'sse_relay_replays_total',
    help: 'Resumes with Last-Event-ID: complete, or answered with a reset event.',
    type: 'counter',
    samples: (s) => byKey('sse_relay_replays_total', 'result', s.counters.replays),
  },
  {
    name: 'sse_relay_coalesced_total',
    help: 'Queued events replaced by a newer one with the same coalesce key.',
    type: 'counter',
    samples: (s) => [one('sse_relay_coalesced_total', s.counters.coalesced)],
  },
  {
    name: 'sse_relay_refused_total',
    help: 'Requests refused, by status (503: transient refusals answered 200 + retry: on streams).',
    type: 'counter',
    samples: (s) => byKey('sse_relay_refused_total', 'status', s.counters.refused),
  },
  {
    name: 'sse_relay_broker_recoveries_total',
    help: 'Broker catch-ups after a lost connection or a new epoch.',
    type: 'counter',
    samples: (s) => [one('sse_relay_broker_recoveries_total', s.counters.brokerRecoveries)],
  },
  {
    name: 'sse_relay_delivery_latency_seconds',
    help: 'Seconds from hub.publish() in this process to the event frame handed to the socket.',
    type: 'histogram',
    samples: (s) => histogramSamples('sse_relay_delivery_latency_seconds', s.counters),
  },
];

function histogramSamples(name: string, counters: Counters): Sample[] {
  const h = counters.latency;
  const cumulative = h.cumulative();
  const out = h.bounds.map((bound, i) => one(name + '_bucket', cumulative[i]!, { le: formatNumber(bound) }));
  out.push(one(name + '_bucket', h.count, { le: '+Inf' }));
  out.push(one(name + '_sum', h.sum));
  out.push(one(name + '_count', h.count));
  return out;
}

export function formatNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** The whole exposition of `snapshot`. */
export function render(snapshot: MetricsSnapshot): string {
  let out = '';
  for (const family of FAMILIES) {
    out += `# HELP ${family.name} ${escapeHelp(family.help)}\n# TYPE ${family.name} ${family.type}\n`;
    for (const sample of family.samples(snapshot)) {
      const labels = Object.entries(sample.labels);
      const text = labels.length === 0 ? '' : '{' + labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',') + '}';
      out += `${sample.name}${text} ${formatNumber(sample.value)}\n`;
    }
  }
  return out;
}
