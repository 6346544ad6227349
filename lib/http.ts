/**
 * The few HTTP answers sse-relay gives, written once: plain-text refusals and
 * "200 + `retry:` + end" (the only way to turn an EventSource away for a while
 * without making it give up for good). Nothing here knows about streams.
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';

/** Connect/Express `next`. */
export type NextFunction = (err?: unknown) => void;

/** A Connect/Express handler built on Node's own `req`/`res`. */
export type Handler = (req: IncomingMessage, res: ServerResponse, next: NextFunction) => void;

/** Whether nothing was written yet and the response can still be answered. */
export function answerable(res: ServerResponse): boolean {
  return !res.headersSent && !res.writableEnded && !res.destroyed;
}

/**
 * Answers `status` with its generic reason phrase as a plain-text body: never
 * the input, never an error message. Sent while part of the request body has
 * not arrived yet (a refusal before reading it, a 413), it closes the
 * connection, so that rest is never read.
 */
export function refuse(res: ServerResponse, status: number, headers?: Record<string, string>): void {
  if (!answerable(res)) return;
  const text = STATUS_CODES[status] ?? 'Error';
  const head: Record<string, string> = {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  };
  if (res.req !== undefined && !res.req.complete && !isHttp2(res.req)) head.Connection = 'close';
  res.writeHead(status, head);
  res.end(text);
}

/** Reconnection delays: `retry:` for a refused or ended stream, spread so browsers do not return all at once. */
export const RETRY = Object.freeze({
  /** The hub is shutting down or its broker is unreachable. */
  unavailable: [1000, 4000] as const,
  /** `maxConnections` reached. */
  overloaded: [3000, 4000] as const,
});

/** A random delay between `range[0]` and `range[0] + range[1]` ms. */
export function jitter(range: readonly [number, number]): number {
  return range[0] + Math.floor(Math.random() * range[1]);
}

/** Whether the request came over HTTP/2 (no connection-specific headers allowed). */
export function isHttp2(req: IncomingMessage): boolean {
  return req.httpVersionMajor >= 2;
}

/** The query string of `req.url` as URLSearchParams ('' when there is none). */
export function queryOf(req: IncomingMessage): URLSearchParams {
  const url = req.url ?? '';
  const q = url.indexOf('?');
  return new URLSearchParams(q === -1 ? '' : url.slice(q + 1));
}

/** The path of `req.url` without its query. */
export function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
