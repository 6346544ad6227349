/**
 * Options of `createPublisher()` / `hub.publisher()`: validated once, at
 * factory time (TypeError for a wrong type, RangeError for a bad range, an
 * unknown name refused with a "did you mean").
 */
import type { IncomingMessage } from 'node:http';

/**
 * What `authorize` may answer for one publish request:
 * - `true` (strictly): publish;
 * - `'unauthenticated'`: the request carries no valid credentials → `401` (with `WWW-Authenticate`);
 * - anything else (`false`, `undefined`, a truthy non-`true`): `403`.
 * A throw or a rejection goes to `next(err)` (a 500 without `next`); nothing is published.
 */
export type PublishDecision = boolean | 'unauthenticated';

export type PublishAuthorize = (req: IncomingMessage, channel: string) => PublishDecision | Promise<PublishDecision>;

export interface PublisherOptions {
  /** Decides every publish request, after the body was read and checked. Required; only a strict `true` publishes. */
  authorize: PublishAuthorize;
  /** Largest request body accepted, in bytes; a larger one gets `413` and is not read further. Default 1 MiB. */
  limit?: number;
  /** `WWW-Authenticate` header of a `401`. Default `'Bearer'`. */
  wwwAuthenticate?: string;
}

export interface ResolvedPublisherOptions {
  readonly authorize: PublishAuthorize;
  readonly limit: number;
  readonly wwwAuthenticate: string;
}

export const DEFAULT_LIMIT = 1024 * 1024;

const KNOWN = ['authorize', 'limit', 'wwwAuthenticate'] as const;

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** Edit distance, for the "did you mean" of an unknown option (names are short). */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(up + 1, row[j - 1]! + 1, diag + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

function unknownOption(key: string): TypeError {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of KNOWN) {
    const d = distance(key, name);
    if (d < bestDistance) {
      best = name;
      bestDistance = d;
    }
  }
  const hint = best !== undefined && bestDistance <= Math.max(2, Math.floor(best.length / 3)) ? ` (did you mean "${best}"?)` : '';
  return new TypeError(`sse-relay: unknown publisher option ${JSON.stringify(key)}${hint}; known: ${KNOWN.join(', ')}`);
}

const TOKEN_CHARS = /^[\x20-\x7e]+$/;

export function resolvePublisherOptions(options: PublisherOptions): ResolvedPublisherOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`sse-relay: publisher options must be an object with an authorize function, got ${show(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!(KNOWN as readonly string[]).includes(key)) throw unknownOption(key);
  }
  if (typeof options.authorize !== 'function') {
    throw new TypeError(
      `sse-relay: publisher option authorize must be a function (req, channel) => boolean, got ${show(options.authorize)}`,
    );
  }
  let limit = DEFAULT_LIMIT;
  if (options.limit !== undefined) {
    if (typeof options.limit !== 'number') {
      throw new TypeError(`sse-relay: publisher option limit must be a number of bytes, got ${show(options.limit)}`);
    }
    if (!Number.isSafeInteger(options.limit) || options.limit <= 0) {
      throw new RangeError(`sse-relay: publisher option limit must be a positive integer (bytes), got ${show(options.limit)}`);
    }
    limit = options.limit;
  }
  let wwwAuthenticate = 'Bearer';
  if (options.wwwAuthenticate !== undefined) {
    if (typeof options.wwwAuthenticate !== 'string' || !TOKEN_CHARS.test(options.wwwAuthenticate)) {
      throw new TypeError(
        `sse-relay: publisher option wwwAuthenticate must be a non-empty header value (printable ASCII), got ${show(options.wwwAuthenticate)}`,
      );
    }
    wwwAuthenticate = options.wwwAuthenticate;
  }
  return { authorize: options.authorize, limit, wwwAuthenticate };
}
