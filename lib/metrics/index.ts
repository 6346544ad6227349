import type { IncomingMessage, ServerResponse } from 'node:http';
import { collect, namespaceOf, setChannelLabel, type MetricsSnapshot } from './registry';
import { CONTENT_TYPE, FAMILIES, render } from './text';
import { checkOptions } from '../options';

export { Counters, type DropCounts, type ReplayCounts, type RefusedCounts, type LabelCounts } from './counters';
export { Histogram, LATENCY_BUCKETS } from './histogram';
export {
  registerSource,
  collect,
  labelCounts,
  namespaceOf,
  setChannelLabel,
  type MetricsSource,
  type SourceGauges,
  type MetricsSnapshot,
} from './registry';
export { CONTENT_TYPE } from './text';
export { registerPromMetrics, type PromRegistryLike, type PromClientLike } from './prom-client';

/** Options of {@link metricsHandler}. */
export interface MetricsHandlerOptions {
  /**
   * Count published and delivered events per channel label: `'namespace'`
   * (the part of the channel before its first `:`) or your own
   * `(channel) => string`. At most 100 distinct values (the rest count as
   * `other`); channel names themselves are never labels. Default: none.
   * One mapping per process.
   */
  channelLabel?: 'namespace' | ((channel: string) => string);
  /** The label's name. Default `namespace`. */
  channelLabelName?: string;
}

const KNOWN = ['channelLabel', 'channelLabelName'];

/** The Prometheus text exposition of every hub and `sse()` middleware in this process. */
export function metricsText(): string {
  return render(collect());
}

/** The same numbers as an object (for a status page or a test). */
export function metricsSnapshot(): MetricsSnapshot {
  return collect();
}

/**
 * A `(req, res, next?)` handler answering `GET`/`HEAD` with the Prometheus
 * text format for every hub and `sse()` middleware in the process. Other
 * methods go to `next()` when there is one, else get 405.
 *
 *   app.get('/metrics', metricsHandler());
 */
export function metricsHandler(
  options: MetricsHandlerOptions = {},
): (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void {
  const { channelLabel, channelLabelName } = checkOptions('metricsHandler', options, KNOWN);
  if (channelLabel !== undefined) {
    if (channelLabel !== 'namespace' && typeof channelLabel !== 'function') {
      throw new TypeError(
        `sse-relay: metricsHandler option channelLabel must be 'namespace' or a function (channel) => string, got ${JSON.stringify(channelLabel)}`,
      );
    }
    setChannelLabel(channelLabel === 'namespace' ? namespaceOf : channelLabel, channelLabelName ?? 'namespace');
  } else if (channelLabelName !== undefined) {
    throw new TypeError('sse-relay: metricsHandler option channelLabelName needs channelLabel');
  }
  return function sseRelayMetrics(req, res, next) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      if (typeof next === 'function') return next();
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('Method Not Allowed');
      return;
    }
    const body = metricsText();
    res.writeHead(200, {
      'Content-Type': CONTENT_TYPE,
      'Content-Length': Buffer.byteLength(body),
      'Cache-Control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}

/** The metric families' names (for docs and tests). */
export const METRIC_NAMES: readonly string[] = FAMILIES.map((f) => f.name);
