/** Waiting for and comparing event sequences, on top of the test client. */
import type { Server } from 'node:http';
import { inspect, isDeepStrictEqual } from 'node:util';
import { DEFAULT_TIMEOUT, openStream, type EventPredicate } from './client';
import type { ParsedEvent } from './parse';

/** When {@link collectEvents} stops: after `count` events, or at the first event for which `until` returns true (included). */
export type CollectUntil = { count: number } | { until: EventPredicate };

/**
 * Opens `path` on `server`, waits for the events, closes the connection and
 * resolves with the events. Rejects (after closing) when the status is not
 * 200, when the stream ends first, or after `timeoutMs` (default 5000).
 *
 * @example
 * ```ts
 * const events = await collectEvents(server, '/events', { count: 2 });
 * ```
 */
export async function collectEvents(
  server: Server,
  path: string,
  stop: CollectUntil,
  options: { headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<ParsedEvent[]> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT;
  const stream = await openStream({ server, path }, { headers: options.headers, timeoutMs });
  try {
    if (stream.status !== 200) {
      throw new Error(`collectEvents: ${path} answered ${stream.status}, not 200`);
    }
    return await stream.waitFor('count' in stop ? stop.count : stop.until, timeoutMs);
  } finally {
    await stream.close();
  }
}

/** An expected event: the fields given are compared, the others are not; a string is short for `{ data }`. */
export type ExpectedEvent = string | Partial<ParsedEvent>;

type JestExpect = (actual: unknown) => { toEqual(expected: unknown): void };

/**
 * Asserts that `received` is exactly the sequence `expected` (same length,
 * same order). For each expected entry only the fields it names are compared
 * (`'x'` is short for `{ data: 'x' }`, which leaves `event` and `id` unchecked;
 * write `{ data: 'x', event: 'message' }` to check them too).
 * Under jest the failure is jest's own diff; elsewhere it throws an Error with
 * a line per event.
 */
export function expectEvents(received: readonly ParsedEvent[], expected: readonly ExpectedEvent[]): void {
  const want = expected.map((e) => (typeof e === 'string' ? { data: e } : e));
  const got = received.map((ev, i) => {
    const shape = want[i];
    if (shape === undefined) return { ...ev };
    const picked: Partial<ParsedEvent> = {};
    for (const key of Object.keys(shape) as Array<keyof ParsedEvent>) picked[key] = ev[key];
    return picked;
  });
  const jestExpect = (globalThis as { expect?: unknown }).expect;
  if (typeof jestExpect === 'function') {
    (jestExpect as JestExpect)(got).toEqual(want);
    return;
  }
  if (got.length === want.length && got.every((g, i) => isDeepStrictEqual(g, want[i]))) return;
  const lines = [`expected ${want.length} event(s), received ${got.length}:`];
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    const g = got[i];
    const w = want[i];
    if (g !== undefined && w !== undefined && isDeepStrictEqual(g, w)) {
      lines.push(`  [${i}]   ${inspect(g)}`);
      continue;
    }
    lines.push(`- [${i}] expected ${w === undefined ? '(nothing)' : inspect(w)}`);
    lines.push(`+ [${i}] received ${g === undefined ? '(nothing)' : inspect(g)}`);
  }
  throw new Error(lines.join('\n'));
}
