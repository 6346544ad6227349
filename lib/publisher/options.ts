/**
 * Options of `createPublisher()` / `hub.publisher()`: validated once, at
 * factory time (TypeError for a wrong type, RangeError for a bad range, an
 * unknown name refused with a "did you mean").
 */
import type { IncomingMessage } from 'node:http';
import { checkOptions, positiveInt, show } from '../options';

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

const TOKEN_CHARS = /^[\x20-\x7e]+$/;

export function resolvePublisherOptions(options: PublisherOptions): ResolvedPublisherOptions {
  if (options === undefined)
    throw new TypeError('sse-relay: publisher options must be an object with an authorize function');
  checkOptions('publisher', options, KNOWN);
  if (typeof options.authorize !== 'function') {
    throw new TypeError(
      `sse-relay: publisher option authorize must be a function (req, channel) => boolean, got ${show(options.authorize)}`,
    );
  }
  const limit = options.limit === undefined ? DEFAULT_LIMIT : positiveInt('limit', options.limit);
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
