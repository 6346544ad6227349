/**
 * Reads a Prometheus text exposition with a real parser
 * (parse-prometheus-text-format) plus the checks it leaves out: every line is
 * a comment or a well-formed sample, every family has HELP and TYPE, every
 * value is a number (blank lines between families are allowed). Shared by the metrics, example-app and proxy tests.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const parsePrometheus = require('parse-prometheus-text-format') as (text: string) => RawFamily[];

interface RawFamily {
  name: string;
  help: string;
  type: string;
  metrics: Array<{
    value?: string;
    labels?: Record<string, string>;
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  }>;
}

export interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  samples: Array<{ labels: Record<string, string>; value: number }>;
  /** Histograms only: cumulative counts by `le`, then count and sum. */
  buckets?: Array<[string, number]>;
  count?: number;
  sum?: number;
}

const SAMPLE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? [^ ]+$/;

function num(text: string | undefined, where: string): number {
  const n = text === '+Inf' ? Infinity : Number(text);
  if (text === undefined || text === '' || Number.isNaN(n)) throw new Error(`metrics: ${where}: not a number: ${text}`);
  return n;
}

export function parseMetrics(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('metrics: the exposition must end with a newline');
  const help = new Set<string>();
  const type = new Set<string>();
  for (const line of text.split('\n').slice(0, -1)) {
    if (line.startsWith('# HELP ')) help.add(line.split(' ')[2]!);
    else if (line.startsWith('# TYPE ')) type.add(line.split(' ')[2]!);
    else if (line !== '' && !SAMPLE.test(line)) throw new Error(`metrics: malformed line: ${JSON.stringify(line)}`);
  }
  const out = new Map<string, Family>();
  for (const raw of parsePrometheus(text)) {
    if (!help.has(raw.name) || !type.has(raw.name) || raw.help === '')
      throw new Error(`metrics: ${raw.name} has no HELP or TYPE line`);
    const t = raw.type.toLowerCase();
    if (t !== 'counter' && t !== 'gauge' && t !== 'histogram')
      throw new Error(`metrics: ${raw.name} has type ${raw.type}`);
    const family: Family = { name: raw.name, help: raw.help, type: t, samples: [] };
    for (const m of raw.metrics) {
      if (t === 'histogram') {
        // In `le` order (an object's integer-like keys would come first).
        family.buckets = Object.entries(m.buckets ?? {})
          .map(([le, n]): [string, number] => [le, num(n, raw.name)])
          .sort((x, y) => num(x[0], raw.name) - num(y[0], raw.name));
        family.count = num(m.count, raw.name);
        family.sum = num(m.sum, raw.name);
      } else {
        family.samples.push({ labels: m.labels ?? {}, value: num(m.value, raw.name) });
      }
    }
    out.set(raw.name, family);
  }
  return out;
}

/** The value of the series of `name` with exactly `labels` (default: none); throws when there is none. */
export function metric(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const family = families.get(name);
  if (family === undefined) throw new Error(`metrics: no family ${name}`);
  const want = JSON.stringify(Object.entries(labels).sort());
  const sample = family.samples.find((s) => JSON.stringify(Object.entries(s.labels).sort()) === want);
  if (sample === undefined)
    throw new Error(`metrics: ${name} has no series ${want}: ${JSON.stringify(family.samples)}`);
  return sample.value;
}
