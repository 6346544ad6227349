import { collect, type MetricsSnapshot } from './registry';
import { FAMILIES } from './text';

/**
 * prom-client integration without depending on prom-client: the metric
 * families are registered on the caller's `Registry` as collectors that read
 * the same registry `metricsHandler()` reads, when prom-client scrapes.
 *
 *   import client from 'prom-client';
 *   registerPromMetrics(client.register);          // the default registry
 *   registerPromMetrics(new client.Registry());    // or your own
 */

/** What we use of a prom-client `Registry`. */
export interface PromRegistryLike {
  registerMetric(metric: unknown): void;
  removeSingleMetric?(name: string): void;
}

/** What we use of the prom-client module: its default registry. */
export interface PromClientLike {
  register: PromRegistryLike;
}

interface PromValue {
  value: number;
  labels: Record<string, string>;
  metricName?: string;
}

/**
 * Registers every `sse_relay_*` family on `target` (a prom-client Registry,
 * or the prom-client module for its default registry). Returns a function that
 * removes them again. Throws if one is already registered there.
 */
export function registerPromMetrics(target: PromRegistryLike | PromClientLike): () => void {
  const registry = resolveRegistry(target);
  // One snapshot per scrape, shared by the families (prom-client calls get() on each in one tick).
  let cached: MetricsSnapshot | undefined;
  const snapshot = (): MetricsSnapshot => {
    if (cached === undefined) {
      cached = collect();
      queueMicrotask(() => (cached = undefined));
    }
    return cached;
  };
  const names: string[] = [];
  for (const family of FAMILIES) {
    const metric = {
      name: family.name,
      help: family.help,
      type: family.type,
      aggregator: 'sum',
      get: async () => {
        const values: PromValue[] = family
          .samples(snapshot())
          .map((s) =>
            s.name === family.name
              ? { value: s.value, labels: s.labels }
              : { value: s.value, labels: s.labels, metricName: s.name },
          );
        return { name: family.name, help: family.help, type: family.type, values, aggregator: 'sum' };
      },
      reset: () => undefined,
    };
    registry.registerMetric(metric);
    names.push(family.name);
  }
  return () => {
    for (const name of names.splice(0)) registry.removeSingleMetric?.(name);
  };
}

function resolveRegistry(target: PromRegistryLike | PromClientLike): PromRegistryLike {
  if (target !== null && typeof target === 'object') {
    if (typeof (target as PromRegistryLike).registerMetric === 'function') return target as PromRegistryLike;
    const register = (target as PromClientLike).register;
    if (register !== null && typeof register === 'object' && typeof register.registerMetric === 'function')
      return register;
  }
  throw new TypeError('sse-relay: registerPromMetrics expects a prom-client Registry (or the prom-client module)');
}
