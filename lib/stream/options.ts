/** Options of `sse()` and of the streams a hub opens: validated once, at factory time. */
import { validateHeaderName, validateHeaderValue, type IncomingMessage } from 'node:http';
import { checkRetry, type Serializer } from '../protocol/encode';
import { checkOptions, fn, nonNegativeInt, positiveInt, show } from '../options';

export interface SseOptions {
  /** Send a comment frame when the stream has been idle this long (ms); every write resets it. `false` turns it off. Default 15000. */
  keepAlive?: number | false;
  /** Sent as `retry:` right after the stream opens (ms, a non-negative integer). Default: none. */
  retry?: number;
  /** Extra response headers, set after the defaults (so they may override them). Names and values are checked by HTTP's rules here. Default `{}`. */
  headers?: Record<string, string | number | readonly string[]>;
  /** Turns non-string data into text. Default `JSON.stringify`. */
  serialize?: Serializer;
  /**
   * A client whose unsent backlog exceeds this many bytes while it is not
   * reading is disconnected; it reconnects and resumes with Last-Event-ID.
   * What one event-loop turn produced for a client that was keeping up is
   * never counted against it. Default 1 MiB.
   */
  maxBufferedBytes?: number;
  /**
   * The largest event (its encoded frame, in bytes) that `send()` or
   * `hub.publish()` accepts; a larger one throws a RangeError before anything
   * is written or stored. Default: `maxBufferedBytes` (1 MiB).
   */
  maxEventBytes?: number;
  /** A client that has not drained its socket for this long (ms) is disconnected. Default 30000. */
  drainTimeout?: number;
  /**
   * Adaptive write batching: while the process is busy (it wrote less than
   * this long ago and its event loop has mostly been running since), the
   * frames of the following turns wait and go out in one write per stream, at
   * most this many ms after the previous write. An idle process writes at
   * once. 0 turns it off. Integer ms, 0 to 1000. Default 5.
   */
  maxWriteDelay?: number;
  /** Close the stream after about this long (ms, minus up to 10% jitter) so the client reconnects and is re-authorised. Default: none. */
  maxDuration?: number;
  /** Origins allowed to open a stream cross-origin; others get 403. A request without `Origin` is allowed. Default: all. */
  allowedOrigins?: readonly string[] | ((origin: string) => boolean);
  /** Open streams of this middleware (or hub) at most; over it the stream gets 200, one `retry:` and ends. Default: unlimited. */
  maxConnections?: number;
  /** Open streams per `connectionKey(req)` at most; over it: 429 + `Retry-After`. Default: unlimited. */
  maxConnectionsPerKey?: number;
  /** What `maxConnectionsPerKey` counts by. Default: the client IP (`req.ip` under Express, else the socket's address). */
  connectionKey?: (req: IncomingMessage) => string;
}

/** Options after validation, with every default filled in. Shared by all streams of one factory. */
export interface ResolvedOptions {
  readonly keepAlive: number; // 0 = off
  readonly retry: number | undefined;
  readonly headers: ReadonlyArray<readonly [string, string | number | readonly string[]]>;
  readonly serialize: Serializer;
  readonly maxBufferedBytes: number;
  readonly maxEventBytes: number;
  readonly drainTimeout: number;
  readonly maxWriteDelay: number; // 0 = off
  readonly maxDuration: number; // 0 = none
  readonly originAllowed: ((origin: string) => boolean) | undefined;
  readonly maxConnections: number; // Infinity = unlimited
  readonly maxConnectionsPerKey: number; // Infinity = unlimited
  readonly connectionKey: (req: IncomingMessage) => string;
}

const KNOWN = [
  'keepAlive',
  'retry',
  'headers',
  'serialize',
  'maxBufferedBytes',
  'maxEventBytes',
  'drainTimeout',
  'maxWriteDelay',
  'maxDuration',
  'allowedOrigins',
  'maxConnections',
  'maxConnectionsPerKey',
  'connectionKey',
] as const;

const MiB = 1024 * 1024;
/** The largest maxWriteDelay: batching is for milliseconds, not for seconds. */
export const MAX_WRITE_DELAY = 1000;
export const DEFAULT_WRITE_DELAY = 5;

function writeDelay(value: unknown): number {
  if (value === undefined) return DEFAULT_WRITE_DELAY;
  const ms = nonNegativeInt('maxWriteDelay', value);
  if (ms > MAX_WRITE_DELAY) {
    throw new RangeError(`sse-relay: option maxWriteDelay must be at most ${MAX_WRITE_DELAY} (ms), got ${show(value)}`);
  }
  return ms;
}

export function defaultConnectionKey(req: IncomingMessage): string {
  const ip = (req as IncomingMessage & { ip?: unknown }).ip;
  return typeof ip === 'string' ? ip : (req.socket.remoteAddress ?? '');
}

function originCheck(value: unknown): ((origin: string) => boolean) | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'function') return value as (origin: string) => boolean;
  if (!Array.isArray(value)) {
    throw new TypeError(
      `sse-relay: option allowedOrigins must be an array of origins or a function, got ${show(value)}`,
    );
  }
  const allowed = new Set<string>();
  for (const origin of value) {
    if (typeof origin !== 'string' || origin === '' || origin === '*' || origin.endsWith('/')) {
      throw new TypeError(
        `sse-relay: allowedOrigins entries must be origins like "https://app.example.com" (no "*", no trailing slash), got ${show(origin)}`,
      );
    }
    allowed.add(origin.toLowerCase());
  }
  return (origin) => allowed.has(origin.toLowerCase());
}

/** Header names and values by HTTP's rules (Node's own checks), so a bad one fails here, not on every stream. */
function headerList(value: unknown): Array<[string, string | number | readonly string[]]> {
  if (value === undefined) return [];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`sse-relay: option headers must be an object of header values, got ${show(value)}`);
  }
  const out: Array<[string, string | number | readonly string[]]> = [];
  for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== 'string' && typeof v !== 'number' && !Array.isArray(v)) {
      throw new TypeError(
        `sse-relay: option headers[${JSON.stringify(name)}] must be a string, number or string[], got ${show(v)}`,
      );
    }
    try {
      validateHeaderName(name);
      for (const one of Array.isArray(v) ? v : [v]) {
        if (typeof one !== 'string' && typeof one !== 'number') throw new TypeError('not a string');
        validateHeaderValue(name, String(one));
      }
    } catch {
      throw new TypeError(
        `sse-relay: option headers[${JSON.stringify(name)}] is not a valid HTTP header (a token name, a value without CR, LF or NUL)`,
      );
    }
    out.push([name, v as string | number | readonly string[]]);
  }
  return out;
}

/** Validates `options` once and fills in every default. Throws TypeError/RangeError naming the option. */
export function resolveOptions(options: SseOptions | undefined, what = 'sse()'): ResolvedOptions {
  const o = checkOptions(what, options, KNOWN);
  const maxBufferedBytes =
    o.maxBufferedBytes === undefined ? MiB : positiveInt('maxBufferedBytes', o.maxBufferedBytes, true);
  const maxEventBytes =
    o.maxEventBytes === undefined
      ? Math.min(maxBufferedBytes, MiB)
      : positiveInt('maxEventBytes', o.maxEventBytes, true);
  if (maxEventBytes > maxBufferedBytes) {
    throw new RangeError(
      `sse-relay: option maxEventBytes (${maxEventBytes}) must not exceed maxBufferedBytes (${maxBufferedBytes}): such an event could never be delivered`,
    );
  }
  return {
    keepAlive: o.keepAlive === undefined ? 15000 : o.keepAlive === false ? 0 : positiveInt('keepAlive', o.keepAlive),
    retry: o.retry === undefined ? undefined : checkRetry(o.retry, 'option retry'),
    headers: headerList(o.headers),
    serialize: o.serialize === undefined ? JSON.stringify : fn<Serializer>('serialize', o.serialize),
    maxBufferedBytes,
    maxEventBytes,
    drainTimeout: o.drainTimeout === undefined ? 30000 : positiveInt('drainTimeout', o.drainTimeout),
    maxWriteDelay: writeDelay(o.maxWriteDelay),
    maxDuration: o.maxDuration === undefined ? 0 : positiveInt('maxDuration', o.maxDuration),
    originAllowed: originCheck(o.allowedOrigins),
    maxConnections: o.maxConnections === undefined ? Infinity : positiveInt('maxConnections', o.maxConnections, true),
    maxConnectionsPerKey:
      o.maxConnectionsPerKey === undefined
        ? Infinity
        : positiveInt('maxConnectionsPerKey', o.maxConnectionsPerKey, true),
    connectionKey: o.connectionKey === undefined ? defaultConnectionKey : fn('connectionKey', o.connectionKey),
  };
}

/** Throws a RangeError when an encoded frame is over `maxEventBytes`. Cheap for the common small frame. */
export function checkFrameSize(frame: string, max: number): void {
  if (frame.length * 3 <= max) return; // UTF-8 uses at most 3 bytes per UTF-16 unit
  const bytes = Buffer.byteLength(frame, 'utf8');
  if (bytes > max) {
    throw new RangeError(
      `sse-relay: the event is ${bytes} bytes encoded, over maxEventBytes (${max}); raise maxEventBytes (and maxBufferedBytes) or send less`,
    );
  }
}
