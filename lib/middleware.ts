import type { IncomingMessage, ServerResponse } from 'node:http';
import { Connection, Pool, type SseStream } from './connection';
import type { AnyEvents, EventMap } from './events';
import { resolveOptions, type SseOptions } from './options';

declare module 'http' {
  interface ServerResponse {
    /**
     * The Server-Sent Events stream of this response, attached by `sse()`
     * (or by a hub's handler). Nothing is written until its first call.
     */
    sse: SseStream;
  }
}

export type NextFunction = (err?: unknown) => void;

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
 * The stream opens on the first `res.sse` call. Options are validated here,
 * once; a bad option throws a TypeError or RangeError that names it.
 */
export function sse<E extends EventMap = AnyEvents>(options?: SseOptions): SseMiddleware<E> {
  const pool = new Pool(resolveOptions(options));
  const middleware = function sseMiddleware(req: IncomingMessage, res: ServerResponse, next: NextFunction): void {
    res.sse = new Connection(req, res, pool);
    next();
  } as SseMiddleware<E>;
  Object.defineProperties(middleware, {
    close: { value: () => pool.closeAll() },
    connections: { get: () => pool.open.size },
    dropped: { get: () => pool.dropped },
    stream: { value: (res: ServerResponse) => res.sse as unknown as SseStream<E> },
  });
  return middleware;
}
