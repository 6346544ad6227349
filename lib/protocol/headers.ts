/**
 * The stream head (API.md §1): frozen defaults, built once per factory, and
 * the CORS headers for an allowed cross-origin request. Pure: nothing here
 * writes to a response.
 */
import type { OutgoingHttpHeaders } from 'node:http';

/** The response head of every stream. Frozen: never mutated per request. */
export const STREAM_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
});

/** Added for HTTP/1.x only: HTTP/2 forbids connection-specific headers. */
export const HTTP1_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  Connection: 'keep-alive',
});

type HeaderList = ReadonlyArray<readonly [string, string | number | readonly string[]]>;

/** The whole head of one factory's streams, for HTTP/1.x and for HTTP/2. */
export class StreamHead {
  /** Used as it is when nothing else was set on the response (a bare node:http server): one shared object. */
  readonly http1: OutgoingHttpHeaders;
  readonly http2: OutgoingHttpHeaders;

  /** The `Vary` of the `headers` option (merged with `Origin` when origins are checked). */
  readonly vary: string | readonly string[] | undefined;

  constructor(readonly extra: HeaderList) {
    const own = Object.fromEntries(extra);
    const vary = extra.find(([name]) => name.toLowerCase() === 'vary');
    this.vary = vary === undefined ? undefined : typeof vary[1] === 'number' ? String(vary[1]) : vary[1];
    this.http1 = Object.freeze({ ...STREAM_HEADERS, ...HTTP1_HEADERS, ...own }) as OutgoingHttpHeaders;
    this.http2 = Object.freeze({ ...STREAM_HEADERS, ...own }) as OutgoingHttpHeaders;
  }

  /** The head for a request of this HTTP major version. */
  for(httpVersionMajor: number): OutgoingHttpHeaders {
    return httpVersionMajor < 2 ? this.http1 : this.http2;
  }
}

/**
 * CORS headers for an allowed cross-origin request when an origin allow-list
 * is configured: that exact origin with credentials (never `*`, never a blind
 * echo: the caller checked it). `Vary: Origin` goes with every such stream,
 * merged by varyWithOrigin().
 */
export function corsHeaders(allowedOrigin: string | undefined): Record<string, string> {
  if (allowedOrigin === undefined) return {};
  return { 'Access-Control-Allow-Origin': allowedOrigin, 'Access-Control-Allow-Credentials': 'true' };
}

/**
 * A `Vary` value that names `Origin` as well as whatever `current` (set by the app, an
 * earlier middleware or the `headers` option) already names: one header, never replaced.
 */
export function varyWithOrigin(...current: (number | string | readonly string[] | undefined)[]): string {
  const names: string[] = [];
  for (const value of current) {
    if (value === undefined) continue;
    for (const n of (Array.isArray(value) ? value.join(',') : String(value)).split(',')) {
      const name = n.trim();
      if (name !== '' && !names.some((m) => m.toLowerCase() === name.toLowerCase())) names.push(name);
    }
  }
  if (!names.some((n) => n === '*' || n.toLowerCase() === 'origin')) names.push('Origin');
  return names.join(', ');
}
