/**
 * A small, bounded Server-Sent Events test client over `node:http`: it keeps
 * the raw bytes exactly as they arrive, parses them with the spec-exact
 * parser, and never leaves a socket or a timer behind.
 */
import { request, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { inspect } from 'node:util';
import { createParser, type ParsedEvent } from './parse';

/** Where to connect: a full `http://` URL, or a listening server and a path (the client connects to 127.0.0.1). */
export type StreamTarget = string | URL | { server: Server; path: string };

/** Options of {@link openStream}. */
export interface OpenStreamOptions {
  /** Request headers, e.g. `{ 'Last-Event-ID': '42' }`. Default: `Accept: text/event-stream` only. */
  headers?: Record<string, string>;
  /** Request method. Default `'GET'`. */
  method?: string;
  /** Request body, sent and ended at once. Default: none. */
  body?: string | Buffer;
  /** How long to wait for the response head (ms). Default 5000. */
  timeoutMs?: number;
}

/** A test on one event, for {@link TestStream.waitFor} and {@link collectEvents}. */
export type EventPredicate = (event: ParsedEvent) => boolean;

/** An open response, as {@link openStream} resolves it. Every array is live: it grows as data arrives. */
export interface TestStream {
  /** The response status code. */
  readonly status: number;
  /** The response headers (names in lower case). */
  readonly headers: IncomingHttpHeaders;
  /** The body received so far, decoded as UTF-8 (chunked transfer-encoding removed), byte for byte as sent. */
  raw(): string;
  /** The body received so far, as bytes. */
  bytes(): Buffer;
  /** The events dispatched so far. */
  readonly events: readonly ParsedEvent[];
  /** The comment lines received so far (text after `:`, one leading space stripped). */
  readonly comments: readonly string[];
  /** The valid `retry:` values received so far. */
  readonly retries: readonly number[];
  /** True once the response ended or the connection closed. */
  readonly ended: boolean;
  /**
   * Resolves once `count` events have arrived (with the first `count`), or once
   * an event matching `predicate` has arrived (with the events up to and
   * including the first match). Rejects after `timeoutMs` (default 5000), or
   * at once when the stream ends first; the message lists what did arrive.
   */
  waitFor(predicateOrCount: EventPredicate | number, timeoutMs?: number): Promise<ParsedEvent[]>;
  /** Resolves once `condition()` holds, checked now and after every chunk; rejects after `timeoutMs` (default 5000) or when the stream ends first. */
  waitUntil(condition: () => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** Resolves once the server ended the response (or the connection closed); rejects after `timeoutMs` (default 5000). */
  waitForEnd(timeoutMs?: number): Promise<void>;
  /** Destroys the socket (the server sees the client leave). Idempotent; resolves once the socket is closed. */
  close(): Promise<void>;
}

/** How long a wait lasts when the caller gives no `timeoutMs`. */
export const DEFAULT_TIMEOUT = 5000;

function targetUrl(target: StreamTarget): URL {
  if (typeof target === 'string' || target instanceof URL) return new URL(String(target));
  const address = target.server.address();
  if (address === null || typeof address === 'string') {
    throw new Error('openStream: the server is not listening on a TCP port (call server.listen(0, "127.0.0.1") first)');
  }
  const path = target.path.startsWith('/') ? target.path : '/' + target.path;
  return new URL(`http://127.0.0.1:${(address as AddressInfo).port}${path}`);
}

function summary(events: readonly ParsedEvent[]): string {
  if (events.length === 0) return 'no event';
  return `${events.length} event(s): ${inspect(events, { depth: 3, breakLength: 120, maxArrayLength: 20 })}`;
}

interface Waiter {
  check(): boolean;
  fail(reason: string): void;
}

/**
 * Opens an HTTP request (on a fresh socket, no keep-alive agent) and resolves
 * once the response head arrives, with a {@link TestStream} that records the
 * body as it arrives. Any status resolves (check `status`); the body is
 * always parsed as an event stream. Rejects when no head arrives within
 * `timeoutMs` or the connection fails; the socket is destroyed then.
 *
 * @example
 * ```ts
 * const stream = await openStream({ server, path: '/events' }, { headers: { 'Last-Event-ID': '7' } });
 * try {
 *   expect(stream.status).toBe(200);
 *   const [first] = await stream.waitFor(1);
 * } finally {
 *   await stream.close();
 * }
 * ```
 */
export function openStream(target: StreamTarget, options: OpenStreamOptions = {}): Promise<TestStream> {
  const url = targetUrl(target);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT;
  const headers: Record<string, string> = { Accept: 'text/event-stream', ...options.headers };
  if (options.body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-length')) {
    headers['Content-Length'] = String(Buffer.byteLength(options.body));
  }

  return new Promise<TestStream>((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers, agent: false });
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(new Error(`openStream: no response head from ${url.href} within ${timeoutMs} ms`));
    }, timeoutMs);

    req.on('error', (err) => {
      if (settled) return; // after the head, errors surface as the stream ending
      settled = true;
      clearTimeout(timer);
      reject(new Error(`openStream: request to ${url.href} failed: ${err.message}`, { cause: err }));
    });

    req.on('response', (res: IncomingMessage) => {
      if (settled) {
        res.destroy();
        return;
      }
      settled = true;
      clearTimeout(timer);
      resolve(makeStream(req, res));
    });

    if (options.body !== undefined) req.end(options.body);
    else req.end();
  });
}

function makeStream(req: ClientRequest, res: IncomingMessage): TestStream {
  const chunks: Buffer[] = [];
  let rawCache: string | undefined = '';
  const events: ParsedEvent[] = [];
  const comments: string[] = [];
  const retries: number[] = [];
  const waiters = new Set<Waiter>();
  const decoder = new StringDecoder('utf8');
  const parser = createParser(
    (ev) => events.push(ev),
    (text) => comments.push(text),
    (ms) => retries.push(ms),
  );
  let ended = false;
  let closedByUs = false;
  const socket = res.socket;
  const socketClosed = new Promise<void>((resolve) => {
    if (socket === null || socket.destroyed) resolve();
    else socket.once('close', () => resolve());
  });

  function notify(): void {
    for (const w of [...waiters]) w.check();
  }

  function finish(): void {
    if (ended) return;
    ended = true;
    const rest = decoder.end();
    if (rest !== '') parser.feed(rest);
    notify(); // a last chunk may satisfy a waiter
    const reason = closedByUs ? 'the stream was closed by the test' : 'the stream ended';
    for (const w of [...waiters]) w.fail(reason);
  }

  res.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    rawCache = undefined;
    parser.feed(decoder.write(chunk));
    notify();
  });
  res.on('end', finish);
  res.on('close', finish);
  res.on('error', () => finish()); // ECONNRESET and the like: the stream ended
  req.on('error', () => finish());

  function raw(): string {
    if (rawCache === undefined) rawCache = Buffer.concat(chunks).toString('utf8');
    return rawCache;
  }

  function wait<T>(done: () => T | undefined, timeoutMs: number, what: () => string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const first = done();
      if (first !== undefined) return resolve(first);
      if (ended)
        return reject(new Error(`waited for ${what()}, but the stream had already ended; got ${summary(events)}`));
      const waiter: Waiter = {
        check() {
          const value = done();
          if (value === undefined) return false;
          waiters.delete(waiter);
          clearTimeout(timer);
          resolve(value);
          return true;
        },
        fail(reason) {
          waiters.delete(waiter);
          clearTimeout(timer);
          reject(new Error(`waited for ${what()}, but ${reason}; got ${summary(events)}`));
        },
      };
      const timer = setTimeout(() => waiter.fail(`${timeoutMs} ms passed`), timeoutMs);
      waiters.add(waiter);
    });
  }

  const stream: TestStream = {
    status: res.statusCode ?? 0,
    headers: res.headers,
    raw,
    bytes: () => Buffer.concat(chunks),
    events,
    comments,
    retries,
    get ended() {
      return ended;
    },
    waitFor(predicateOrCount, timeoutMs = DEFAULT_TIMEOUT) {
      if (typeof predicateOrCount === 'number') {
        const count = predicateOrCount;
        if (!Number.isInteger(count) || count < 0)
          throw new RangeError(`waitFor: count must be a non-negative integer, got ${count}`);
        return wait(
          () => (events.length >= count ? events.slice(0, count) : undefined),
          timeoutMs,
          () => `${count} event(s)`,
        );
      }
      if (typeof predicateOrCount !== 'function') throw new TypeError('waitFor expects a predicate or a count');
      const predicate = predicateOrCount;
      let scanned = 0;
      return wait(
        () => {
          for (; scanned < events.length; scanned++) {
            if (predicate(events[scanned]!)) return events.slice(0, scanned + 1);
          }
          return undefined;
        },
        timeoutMs,
        () => `an event matching ${predicate.name || 'the predicate'}`,
      );
    },
    waitUntil(condition, timeoutMs = DEFAULT_TIMEOUT, what = 'the condition') {
      return wait(
        () => (condition() ? true : undefined),
        timeoutMs,
        () => what,
      ).then(() => undefined);
    },
    waitForEnd(timeoutMs = DEFAULT_TIMEOUT) {
      return new Promise<void>((resolve, reject) => {
        if (ended) return resolve();
        const waiter: Waiter = {
          check: () => false,
          fail() {
            waiters.delete(waiter);
            clearTimeout(timer);
            resolve();
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`waited for the stream to end, but ${timeoutMs} ms passed; got ${summary(events)}`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    close() {
      if (!closedByUs) {
        closedByUs = true;
        res.destroy();
        req.destroy();
        socket?.destroy();
      }
      return socketClosed;
    },
  };
  return stream;
}
