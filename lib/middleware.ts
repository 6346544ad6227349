/**
 * `sse()`: attaches `res.sse` to every response and writes nothing; the
 * stream opens on the first `res.sse` call. Options are validated here, once.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AnyEvents, EventMap } from './events';
import { RETRY, jitter, type NextFunction } from './http';
import { encodeRetry } from './protocol/encode';
import { registerSource } from './metrics/registry';
import { Admission, droppedTotal } from './stream/admission';
import { Connection, type SseStream } from './stream/connection';
import { resolveOptions, type SseOptions } from './stream/options';

declare module 'http' {
  interface ServerResponse {
    /**
     * The Server-Sent Events stream of this response, attached by `sse()`
     * (or by a hub's handler). Nothing is written until its first call.
     */
    sse: SseStream;
  }
}

export type { NextFunction } from './http';

/** The function `sse()` returns: a Connect/Express middleware plus shutdown. */
export interface SseMiddleware<E extends EventMap = AnyEvents> {
  (req: IncomingMessage, res: ServerResponse, next: NextFunction): void;
  /** Sends `retry:` (jittered) to every stream this middleware opened and ends it, so `server.close()` can complete. */
  close(): void;
  /** Streams of this middleware open right now. */
  readonly connections: number;
  /** Streams cut for a limit (backlog over `maxBufferedBytes`, drain timeout) since start. */
  readonly dropped: number;
  /** `res.sse`, typed with this middleware's catalog. */
  stream(res: ServerResponse): SseStream<E>;
}

/**
 * `app.use(sse())`: attaches `res.sse` to every response and writes nothing.
 * A bad option throws a TypeError or RangeError that names it.
 */
export function sse<E extends EventMap = AnyEvents>(options?: SseOptions): SseMiddleware<E> {
  const admission = new Admission<Connection>(resolveOptions(options), 'sse');
  registerSource(admission); // held weakly: gone with the middleware
  const middleware = function sseMiddleware(req: IncomingMessage, res: ServerResponse, next: NextFunction): void {
    res.sse = new Connection(req, res, admission);
    next();
  } as SseMiddleware<E>;
  Object.defineProperties(middleware, {
    close: { value: () => admission.closeAll(() => encodeRetry(jitter(RETRY.unavailable))) },
    connections: { get: () => admission.open.size },
    dropped: { get: () => droppedTotal(admission.counters) },
    stream: { value: (res: ServerResponse) => res.sse as unknown as SseStream<E> },
  });
  return middleware;
}
