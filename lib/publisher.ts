/**
 * The HTTP publish endpoint: `createPublisher(publish, options)` returns a
 * `(req, res, next?)` handler for `POST` with a JSON body
 * `{ channel, data, event?, coalesce? }` (or the same fields form-encoded)
 * that publishes once its own `authorize(req, channel)` says a strict `true`,
 * and answers `201` + `{"id":"<id>"}`. `hub.publisher(options)` is this
 * handler bound to the hub's `publish`.
 *
 * Order of checks: method (405) -> content type (415) -> size (413) -> body
 * and fields (400) -> `authorize` (401/403) -> publish (503 when the broker is
 * unavailable). Every refusal is a fixed plain-text body (the status text):
 * never the input, never an error message.
 *
 * It reads the body itself, so it works with or without `express.json()` /
 * `express.urlencoded()` in front (a body they parsed already is used as it
 * is). Only Node's own `req`/`res` API: Express 4 and 5, Connect, bare http.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { answerable, refuse } from './http';
import { SseRelayError } from './errors';
import { bodyConsumed, bodyKind, declaredLength, readBody, type BodyKind } from './publisher/body';
import { idempotencyKey, parseBody, parseParsed, type PublishFields } from './publisher/fields';
import { resolvePublisherOptions, type PublisherOptions, type ResolvedPublisherOptions } from './publisher/options';

export type { PublisherOptions, PublishAuthorize, PublishDecision } from './publisher/options';

/** What the endpoint hands a publish: the hub's `publish` with string data. Resolves with the event's id. */
export type PublishFn = (
  channel: string,
  data: string,
  options: { event?: string; coalesce?: string; idempotencyKey?: string },
) => Promise<string>;

/** A Connect/Express handler that also runs alone under `http.createServer(handler)` (then `next` is absent). */
export type PublisherHandler = (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void;

/** Seconds a client is asked to wait (`Retry-After`) when the broker is unavailable. */
export const PUBLISH_RETRY_AFTER = 5;

function created(res: ServerResponse, id: string): void {
  if (!answerable(res)) return;
  const body = JSON.stringify({ id });
  res.writeHead(201, {
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(body)),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}

/** A publish failure the client may retry later (with the same Idempotency-Key, if it sent one). */
function transient(err: unknown): boolean {
  return (
    err instanceof SseRelayError &&
    (err.code === 'ERR_BROKER_UNAVAILABLE' || err.code === 'ERR_BROKER_CLOSED' || err.code === 'ERR_HUB_CLOSED')
  );
}

/** Where refusals are counted (a hub's metrics counters), if anywhere. */
type RefusalCounts = Record<400 | 401 | 403 | 405 | 413 | 415 | 503, number>;

async function fields(
  req: IncomingMessage,
  res: ServerResponse,
  kind: BodyKind,
  limit: number,
  no: (res: ServerResponse, status: number) => void,
): Promise<PublishFields | null | undefined> {
  const declared = declaredLength(req);
  if (declared !== undefined && declared > limit) {
    no(res, 413); // whether or not a parser in front read it already
    return null;
  }
  if (bodyConsumed(req)) return parseParsed(kind, (req as { body?: unknown }).body);
  const read = await readBody(req, limit);
  if (read.ok) return parseBody(kind, read.body);
  if (read.reason === 'too-large') {
    // Nothing more is read: the connection closes once the 413 is out.
    no(res, 413);
  }
  return null;
}

class Publisher {
  constructor(
    private readonly publish: PublishFn,
    private readonly opts: ResolvedPublisherOptions,
    private readonly refused: RefusalCounts | undefined,
  ) {}

  /** Refuses with `status`, counted in `sse_relay_refused_total` when the publisher belongs to a hub. */
  private readonly no = (res: ServerResponse, status: number, headers?: Record<string, string>): void => {
    if (this.refused !== undefined && status in this.refused) this.refused[status as keyof RefusalCounts]++;
    refuse(res, status, headers);
  };

  async handle(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): Promise<void> {
    if (req.method !== 'POST') return this.no(res, 405, { Allow: 'POST' });
    const kind = bodyKind(req);
    if (kind === undefined) return this.no(res, 415);
    const key = idempotencyKey(req.headers['idempotency-key']);
    const input = await fields(req, res, kind, this.opts.limit, this.no);
    if (input === null) return; // 413 sent, or the client left
    if (input === undefined || key === null) return this.no(res, 400);

    let decision: unknown;
    try {
      decision = await this.opts.authorize(req, input.channel);
    } catch (err) {
      return next(err);
    }
    if (decision === 'unauthenticated') return this.no(res, 401, { 'WWW-Authenticate': this.opts.wwwAuthenticate });
    if (decision !== true) return this.no(res, 403);
    if (res.destroyed) return; // the client left: publish nothing it cannot hear about

    const options: { event?: string; coalesce?: string; idempotencyKey?: string } = {};
    if (input.event !== undefined) options.event = input.event;
    if (input.coalesce !== undefined) options.coalesce = input.coalesce;
    if (key !== undefined) options.idempotencyKey = key;
    let id: string;
    try {
      id = await this.publish(input.channel, input.data, options);
    } catch (err) {
      if (transient(err)) return this.no(res, 503, { 'Retry-After': String(PUBLISH_RETRY_AFTER) });
      if (err instanceof RangeError) return this.no(res, 413); // over the hub's maxEventBytes
      if (err instanceof TypeError) return this.no(res, 400);
      return next(err);
    }
    created(res, id);
  }
}

function fallback(req: IncomingMessage, res: ServerResponse): (err?: unknown) => void {
  return () => {
    if (!res.headersSent) refuse(res, 500);
    else if (!res.writableEnded) res.destroy();
  };
}

/**
 * The publish endpoint over `publish` (the hub's). Options are validated now:
 * `authorize` is required, `limit` defaults to 1 MiB, unknown names throw a TypeError.
 *
 * @example
 * ```ts
 * app.post('/internal/publish', createPublisher((c, d, o) => hub.publish(c, d, o), {
 *   authorize: (req) => req.headers.authorization === `Bearer ${process.env.PUBLISH_TOKEN}`,
 * }));
 * ```
 */
export function createPublisher(
  publish: PublishFn,
  options: PublisherOptions,
  /** Counts refusals by status (a hub passes its metrics counters' `refused`). */
  refused?: RefusalCounts,
): PublisherHandler {
  if (typeof publish !== 'function') {
    throw new TypeError(
      'sse-relay: createPublisher(publish, options) expects a publish function (channel, data, options) => Promise<id>',
    );
  }
  const publisher = new Publisher(publish, resolvePublisherOptions(options), refused);
  return function ssePublisher(req, res, next) {
    const done = typeof next === 'function' ? next : fallback(req, res);
    publisher.handle(req, res, done).catch((err: unknown) => {
      // Only a bug in sse-relay lands here: never leave the request hanging.
      if (!res.headersSent) done(err);
      else if (!res.writableEnded) res.destroy();
    });
  };
}
