import type { IncomingMessage } from 'node:http';
import { checkRetry, type Serializer } from './protocol/encode';

/** Options of `sse()` (and of the streams a hub opens). Every option is validated once, at factory time. */
export interface SseOptions {
  /** Send a comment frame when the stream has been idle this long (ms); every write resets it. `false` turns it off. Default 15000. */
  keepAlive?: number | false;
  /** Sent as `retry:` right after the stream opens (ms, a non-negative integer). Default: none. */
  retry?: number;
  /** Extra response headers, set after the defaults (so they may override them). Default `{}`. */
  headers?: Record<string, string | number | readonly string[]>;
  /** Turns non-string data into text. Default `JSON.stringify`. */
  serialize?: Serializer;
  /** A client whose unsent backlog exceeds this many bytes is disconnected; it reconnects and resumes with Last-Event-ID. Default 1 MiB. */
  maxBufferedBytes?: number;
  /** A client that has not drained its socket for this long (ms) is disconnected. Default 30000. */
  drainTimeout?: number;
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
  readonly drainTimeout: number;
  readonly maxDuration: number; // 0 = none
  readonly originAllowed: ((origin: string) => boolean) | undefined;
  readonly maxConnections: number; // Infinity = unlimited
  readonly maxConnectionsPerKey: number; // Infinity = unlimited
  readonly connectionKey: (req: IncomingMessage) => string;
}

const KNOWN = new Set([
  'keepAlive', 'retry', 'headers', 'serialize', 'maxBufferedBytes', 'drainTimeout', 'maxDuration',
  'allowedOrigins', 'maxConnections', 'maxConnectionsPerKey', 'connectionKey',
]);

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** A positive integer number of ms/bytes/streams; `Infinity` too when `infinite`. */
export function positiveInt(name: string, value: unknown, infinite = false): number {
  if (typeof value !== 'number') {
    throw new TypeError(`sse-relay: option ${name} must be a number, got ${show(value)}`);
  }
  if (infinite && value === Infinity) return value;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(`sse-relay: option ${name} must be a positive integer, got ${show(value)}`);
  }
  return value;
}

function fn<T>(name: string, value: unknown): T {
  if (typeof value !== 'function') {
    throw new TypeError(`sse-relay: option ${name} must be a function, got ${show(value)}`);
  }
  return value as T;
}

export function defaultConnectionKey(req: IncomingMessage): string {
  const ip = (req as IncomingMessage & { ip?: unknown }).ip;
  return typeof ip === 'string' ? ip : (req.socket.remoteAddress ?? '');
}

function originCheck(value: unknown): ((origin: string) => boolean) | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'function') return value as (origin: string) => boolean;
  if (!Array.isArray(value)) {
    throw new TypeError(`sse-relay: option allowedOrigins must be an array of origins or a function, got ${show(value)}`);
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

/** Validates `options` once and fills in every default. Throws TypeError/RangeError naming the option. */
export function resolveOptions(options: SseOptions | undefined): ResolvedOptions {
  if (options === undefined) options = {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`sse-relay: options must be an object, got ${show(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) throw new TypeError(`sse-relay: unknown option ${JSON.stringify(key)}`);
  }
  const o = options;
  const headers: Array<[string, string | number | readonly string[]]> = [];
  if (o.headers !== undefined) {
    if (o.headers === null || typeof o.headers !== 'object' || Array.isArray(o.headers)) {
      throw new TypeError(`sse-relay: option headers must be an object of header values, got ${show(o.headers)}`);
    }
    for (const [name, value] of Object.entries(o.headers)) {
      if (typeof value !== 'string' && typeof value !== 'number' && !Array.isArray(value)) {
        throw new TypeError(`sse-relay: option headers[${JSON.stringify(name)}] must be a string, number or string[], got ${show(value)}`);
      }
      headers.push([name, value]);
    }
  }
  return {
    keepAlive:
      o.keepAlive === undefined ? 15000 : o.keepAlive === false ? 0 : positiveInt('keepAlive', o.keepAlive),
    retry: o.retry === undefined ? undefined : checkRetry(o.retry, 'option retry'),
    headers,
    serialize: o.serialize === undefined ? JSON.stringify : fn<(v: unknown) => string>('serialize', o.serialize),
    maxBufferedBytes: o.maxBufferedBytes === undefined ? 1024 * 1024 : positiveInt('maxBufferedBytes', o.maxBufferedBytes, true),
    drainTimeout: o.drainTimeout === undefined ? 30000 : positiveInt('drainTimeout', o.drainTimeout),
    maxDuration: o.maxDuration === undefined ? 0 : positiveInt('maxDuration', o.maxDuration),
    originAllowed: originCheck(o.allowedOrigins),
    maxConnections: o.maxConnections === undefined ? Infinity : positiveInt('maxConnections', o.maxConnections, true),
    maxConnectionsPerKey:
      o.maxConnectionsPerKey === undefined ? Infinity : positiveInt('maxConnectionsPerKey', o.maxConnectionsPerKey, true),
    connectionKey: o.connectionKey === undefined ? defaultConnectionKey : fn('connectionKey', o.connectionKey),
  };
}
