/**
 * Warnings and listener leaks, observed where they really happen. Jest gives
 * each test file its own copy of `process` with listeners of its own, and
 * Node emits warnings on the real one: `process.on('warning')` in a test never
 * sees a warning, so a test built on it cannot fail. These look elsewhere.
 */
import type { EventEmitter } from 'node:events';
import type { RedisBroker } from '../../lib/brokers/redis';

/** Records what the code under test passes to `process.emitWarning` (it runs on the test's copy). */
export function watchWarnings(): { withCode(code: string): Error[]; restore(): void } {
  const seen: Error[] = [];
  const spy = jest.spyOn(process, 'emitWarning').mockImplementation(((w: string | Error, o?: { code?: string }) => {
    const err = typeof w === 'string' ? Object.assign(new Error(w), { code: o?.code }) : w;
    seen.push(err);
  }) as typeof process.emitWarning);
  return {
    withCode: (code) => seen.filter((e) => (e as { code?: string }).code === code),
    restore: () => spy.mockRestore(),
  };
}

/**
 * The most listeners `emitter` has had on any one event since this call (as each was added):
 * what Node compares with getMaxListeners() (10) before it warns of a leak.
 */
export function peakListeners(emitter: EventEmitter): () => number {
  let peak = Math.max(0, ...emitter.eventNames().map((e) => emitter.listenerCount(e)));
  emitter.on('newListener', (event: string | symbol) => {
    peak = Math.max(peak, emitter.listenerCount(event) + 1);
  });
  return () => peak;
}

/** The ioredis client a RedisBroker runs its commands on (its own, for `url` and `cluster`). */
export function commandClient(b: RedisBroker): EventEmitter {
  return (b as unknown as { conn: { client: EventEmitter } }).conn.client;
}
