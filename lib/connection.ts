import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import {
  checkFieldValue,
  checkRetry,
  dataToText,
  encodeComment,
  encodeData,
  encodeRetry,
} from './protocol/encode';
import { HTTP1_HEADERS, STREAM_HEADERS } from './protocol/headers';
import type { AnyEvents, EventMap, EventName, MessageData } from './events';
import type { ResolvedOptions } from './options';

/** Options of one `send()`. */
export interface SendOptions<Name extends string = string> {
  /** The event name (`event:` field). Without it the browser dispatches a `message` event. */
  event?: Name;
  /** The event id (`id:` field); the browser sends it back as `Last-Event-ID` when it reconnects. */
  id?: string | number;
}

/**
 * What `res.sse` is: one client's event stream. The stream opens lazily on
 * the first call (or `open()`); every method is safe to call after the stream
 * closed (it returns `false`). With a catalog (`SseStream<Events>`), event
 * names and payloads are type-checked.
 */
export interface SseStream<E extends EventMap = AnyEvents> {
  /** Sends one named event. `false` when the stream is closed or the write was queued behind backpressure. */
  send<K extends EventName<E>>(data: E[K], options: SendOptions<K> & { event: K }): boolean;
  /** Sends one event without a name (the browser dispatches `message`). */
  send(data: MessageData<E>, options?: SendOptions<never>): boolean;
  /** Sends a comment frame (`: text`), which the browser ignores. */
  comment(text?: string): boolean;
  /** Sets the browser's reconnection delay (`retry: ms`). */
  retry(ms: number): boolean;
  /** Opens the stream now (idempotent). `false` when it could not open (refused origin, limit) or is closed. */
  open(): boolean;
  /** Ends the response (idempotent). Before the stream opened it answers 204, which stops EventSource from reconnecting. */
  close(): void;
  /** The `Last-Event-ID` header, else the `lastEventId` query parameter. */
  readonly lastEventId: string | undefined;
  /** True once the client left or `close()` ran. */
  readonly closed: boolean;
  /** Aborted when the stream ends, for any reason. */
  readonly signal: AbortSignal;
}

const NEW = 0; // nothing decided, nothing written
const ADMITTED = 1; // origin and limits passed, counted in the pool; head not written yet
const OPEN = 2; // head written, streaming
const CLOSED = 3;

const KEEP_ALIVE_FRAME = ': keep-alive\n\n';
const kConnection = Symbol('sse-relay.connection');

type Res = ServerResponse & { [kConnection]?: Connection; flush?: () => void };

/** A random reconnection delay between `min` and `min + spread` ms, so reconnects spread out. */
export function jitter(min: number, spread: number): number {
  return min + Math.floor(Math.random() * spread);
}

// ---------------------------------------------------------------------------
// Shared timers: one interval per tick period for every open stream in the
// process, not one timer per stream. A stream is idle when no tick saw a write
// since its last keep-alive; the keep-alive goes out between `keepAlive` and
// `keepAlive + tick` ms after the last write, never earlier.

class Ticker {
  readonly members = new Set<Connection>();
  private readonly timer: NodeJS.Timeout;

  constructor(readonly period: number) {
    this.timer = setInterval(() => {
      for (const conn of this.members) conn.tick();
    }, period);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

const tickers = new Map<number, Ticker>();

function joinTicker(conn: Connection, period: number): void {
  let ticker = tickers.get(period);
  if (ticker === undefined) {
    ticker = new Ticker(period);
    tickers.set(period, ticker);
  }
  ticker.members.add(conn);
}

function leaveTicker(conn: Connection, period: number): void {
  const ticker = tickers.get(period);
  if (ticker === undefined) return;
  ticker.members.delete(conn);
  if (ticker.members.size === 0) {
    ticker.stop();
    tickers.delete(period);
  }
}

/** How many shared timers are running (0 once every stream has ended). For tests. */
export function activeTimerCount(): number {
  return tickers.size;
}

// ---------------------------------------------------------------------------
// Frames pushed during one event-loop turn are written with one `write()` per
// connection at the end of the turn (process.nextTick).

let dirty: Connection[] = [];
let flushScheduled = false;
/** Characters pushed since the last flush, over all connections. */
let turnChars = 0;
/** Past this much output in one turn, `afterFlush()` makes publishers wait for socket I/O. */
const YIELD_CHARS = 64 * 1024;

function markDirty(conn: Connection): void {
  dirty.push(conn);
  if (!flushScheduled) {
    flushScheduled = true;
    process.nextTick(flushDirty);
  }
}

function flushDirty(): void {
  const list = dirty;
  const done = batches;
  dirty = [];
  batches = [];
  flushScheduled = false;
  turnChars = 0;
  for (const conn of list) {
    try {
      conn.flush();
    } catch {
      conn.drop(); // one broken response must not keep the others from being written
    }
  }
  for (const batch of done) batch.close();
}

let batches: SharedBatch[] = [];

/**
 * The frames of one channel in one event-loop turn, shared by every stream
 * that receives exactly that channel's events: encoded to bytes ONCE and the
 * same Buffer written to each socket. A stream can join only before the first
 * frame was appended; any frame of its own (a reset, a comment) turns its
 * share into its own pending text, so order is always kept.
 */
export class SharedBatch {
  /** The frames so far. */
  text = '';
  private bytes: Buffer | undefined = undefined;
  private closed = false;

  constructor() {
    batches.push(this);
  }

  /** Still collecting this turn's frames (false once the turn was flushed). */
  get open(): boolean {
    return !this.closed;
  }

  /** Adds a frame that `readers` attached streams receive. */
  append(frame: string, readers: number): void {
    this.text += frame;
    turnChars += frame.length * readers;
  }

  /** The frames as UTF-8, encoded on the first call. */
  buffer(): Buffer {
    if (this.bytes === undefined) this.bytes = Buffer.from(this.text, 'utf8');
    return this.bytes;
  }

  close(): void {
    this.closed = true;
    this.text = '';
    this.bytes = undefined;
  }
}

let settling: Promise<void> | undefined;

/**
 * When this turn has pushed more than YIELD_CHARS of output, a promise that
 * resolves after it was written AND the event loop had a chance to run socket
 * I/O (one shared setImmediate); otherwise undefined. `hub.publish` waits for
 * it, so a loop of `await hub.publish(...)` (which runs in microtasks, never
 * letting sockets drain) yields every ~64 KiB of output instead of queueing
 * the whole loop's output in memory.
 */
export function afterFlush(): Promise<void> | undefined {
  if (turnChars < YIELD_CHARS) return settling;
  if (settling === undefined) {
    settling = new Promise((resolve) =>
      setImmediate(() => {
        settling = undefined;
        resolve();
      }),
    );
  }
  return settling;
}

// Shared listeners: `this` is the response, which carries its connection.
function onResponseClose(this: Res): void {
  this[kConnection]?.gone();
}
function onResponseDrain(this: Res): void {
  this[kConnection]?.drained();
}

// ---------------------------------------------------------------------------

/**
 * The streams opened by one `sse()` middleware or one hub: their options,
 * connection counts, limits and graceful shutdown.
 */
export class Pool {
  readonly open = new Set<Connection>();
  private readonly perKey = new Map<string, number>();
  /** Streams cut for a limit (backlog, drain timeout). */
  dropped = 0;
  /** Tick period of the shared timer, 0 = no timer needed. */
  readonly period: number;
  readonly keepAliveTicks: number;

  /** The whole stream head for HTTP/1.x and HTTP/2 when nothing else was set (see writeHead). */
  readonly head1: OutgoingHttpHeaders;
  readonly head2: OutgoingHttpHeaders;

  constructor(readonly opts: ResolvedOptions) {
    const extra = Object.fromEntries(opts.headers);
    this.head1 = Object.freeze({ ...STREAM_HEADERS, ...HTTP1_HEADERS, ...extra }) as OutgoingHttpHeaders;
    this.head2 = Object.freeze({ ...STREAM_HEADERS, ...extra }) as OutgoingHttpHeaders;
    const base = opts.keepAlive > 0 ? Math.min(opts.keepAlive, opts.drainTimeout) : opts.drainTimeout;
    this.period = Math.max(1, Math.floor(base / 5));
    this.keepAliveTicks = opts.keepAlive > 0 ? Math.ceil(opts.keepAlive / this.period) : 0;
  }

  /** False (after answering 403) when the request's `Origin` is not allowed. No `Origin`: same-origin, allowed. */
  originOk(req: IncomingMessage, res: ServerResponse): boolean {
    const check = this.opts.originAllowed;
    const origin = req.headers.origin;
    if (check === undefined || origin === undefined) return true;
    let ok = false;
    try {
      ok = check(origin) === true;
    } catch {
      ok = false;
    }
    if (!ok && !res.headersSent) {
      res.writeHead(403, { 'Content-Type': 'text/plain; charset=utf-8', Vary: 'Origin' });
      res.end('Forbidden');
    }
    return ok;
  }

  /**
   * Decides whether `conn` may open. On a refusal it has answered the request
   * (403, 429, or 200 + retry + end) and returns false.
   */
  admit(conn: Connection): boolean {
    const { req, res } = conn;
    const opts = this.opts;
    if (!this.originOk(req, res)) return false;
    if (this.open.size >= opts.maxConnections) {
      // A non-200 would make EventSource give up for good; an overload is transient.
      conn.writeHead();
      res.end(encodeRetry(jitter(3000, 4000)));
      return false;
    }
    if (opts.maxConnectionsPerKey !== Infinity) {
      const key = String(opts.connectionKey(req));
      const n = this.perKey.get(key) ?? 0;
      if (n >= opts.maxConnectionsPerKey) {
        res.writeHead(429, { 'Content-Type': 'text/plain; charset=utf-8', 'Retry-After': '5' });
        res.end('Too Many Requests');
        return false;
      }
      this.perKey.set(key, n + 1);
      conn.key = key;
    }
    return true;
  }

  add(conn: Connection): void {
    this.open.add(conn);
    if (this.period > 0) joinTicker(conn, this.period);
  }

  remove(conn: Connection): void {
    if (!this.open.delete(conn)) return;
    if (this.period > 0) leaveTicker(conn, this.period);
    const key = conn.key;
    if (key !== undefined) {
      const n = (this.perKey.get(key) ?? 1) - 1;
      if (n <= 0) this.perKey.delete(key);
      else this.perKey.set(key, n);
    }
  }

  /** Sends `retry:` (jittered) to every open stream and ends it, so browsers reconnect to a peer. */
  closeAll(retryMin = 1000, retrySpread = 4000): void {
    for (const conn of [...this.open]) conn.end(encodeRetry(jitter(retryMin, retrySpread)));
  }
}

/**
 * One client's stream: the response head, a bounded write queue, keep-alive
 * and drain accounting on the shared ticker, and an idempotent close that
 * releases every listener and timer. This is the object `res.sse` points at.
 */
export class Connection implements SseStream {
  private state = NEW;
  /** Per-key limit accounting (set by Pool.admit). */
  key: string | undefined = undefined;
  /** Frames of this turn, not yet handed to the socket. */
  private pending = '';
  /** Frames held back while the socket is over its high-water mark; '' marks a coalesced slot. */
  private queue: string[] | null = null;
  private queueKeys: Map<string, number> | null = null;
  /** This turn's shared batch this stream reads, instead of `pending`. */
  private shared: SharedBatch | null = null;
  /** Replaced (emptied) slots in `queue`. */
  private holes = 0;
  private queued = 0;
  private waiting = false;
  private written = false;
  private idleTicks = 0;
  /** When the socket last started to hold writes back (performance.now()); meaningful while `waiting`. */
  private stalledAt = 0;
  private durationTimer: NodeJS.Timeout | undefined = undefined;
  private controller: AbortController | undefined = undefined;
  private cachedLastEventId: string | null | undefined = undefined;
  /** Called once when the stream ends, for any reason (the hub unsubscribes here). */
  onEnd: ((conn: Connection) => void) | undefined = undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly pool: Pool,
  ) {}

  get closed(): boolean {
    return this.state === CLOSED;
  }

  get isOpen(): boolean {
    return this.state === OPEN;
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.state === CLOSED) this.controller.abort();
    }
    return this.controller.signal;
  }

  get lastEventId(): string | undefined {
    if (this.cachedLastEventId === undefined) {
      const header = this.req.headers['last-event-id'];
      if (typeof header === 'string') {
        this.cachedLastEventId = header;
      } else {
        const url = this.req.url ?? '';
        const q = url.indexOf('?');
        this.cachedLastEventId = q === -1 ? null : new URLSearchParams(url.slice(q + 1)).get('lastEventId');
      }
    }
    return this.cachedLastEventId ?? undefined;
  }

  /** Writes the 200 head with the stream headers (and CORS headers for an allowed origin). */
  writeHead(): void {
    const { req, res } = this;
    const opts = this.pool.opts;
    if (opts.originAllowed === undefined && res.getHeaderNames().length === 0) {
      // Nothing set before us (a bare node:http server): one shared header object, and
      // Node keeps no per-response header map.
      res.writeHead(200, req.httpVersionMajor < 2 ? this.pool.head1 : this.pool.head2);
      res.flushHeaders();
      return;
    }
    for (const name in STREAM_HEADERS) res.setHeader(name, STREAM_HEADERS[name]!);
    if (req.httpVersionMajor < 2) for (const name in HTTP1_HEADERS) res.setHeader(name, HTTP1_HEADERS[name]!);
    const origin = req.headers.origin;
    if (opts.originAllowed !== undefined) {
      res.setHeader('Vary', 'Origin');
      if (origin !== undefined) {
        res.setHeader('Access-Control-Allow-Origin', origin);
        res.setHeader('Access-Control-Allow-Credentials', 'true');
      }
    }
    for (const [name, value] of opts.headers) res.setHeader(name, value);
    res.writeHead(200);
    res.flushHeaders();
  }

  /**
   * Checks origin and limits and reserves this stream's place in the pool,
   * before anything is written. On a refusal the request has been answered
   * (403, 429, or 200 + retry + end) and the stream is closed.
   */
  admit(): boolean {
    if (this.state !== NEW) return this.state !== CLOSED;
    const res = this.res as Res;
    if (res.headersSent || res.writableEnded || res.destroyed || !this.pool.admit(this)) {
      this.state = CLOSED;
      this.controller?.abort();
      return false;
    }
    this.state = ADMITTED;
    res[kConnection] = this;
    res.on('close', onResponseClose);
    this.pool.add(this);
    return true;
  }

  /** Writes the head of an admitted stream and starts streaming. */
  start(): void {
    if (this.state !== ADMITTED) return;
    this.state = OPEN;
    this.writeHead();
    this.written = true; // the head is a write: idle time starts now, not at the shared timer's next tick
    this.req.socket?.setNoDelay(true);
    const { maxDuration, retry } = this.pool.opts;
    if (maxDuration > 0) {
      this.durationTimer = setTimeout(() => this.close(), maxDuration - Math.floor(Math.random() * maxDuration * 0.1));
      this.durationTimer.unref();
    }
    if (retry !== undefined) this.write(encodeRetry(retry));
  }

  open(): boolean {
    if (this.state === OPEN) return true;
    if (!this.admit()) return false;
    this.start();
    return this.state === OPEN;
  }

  send(data: unknown, options?: SendOptions): boolean {
    if (this.state === CLOSED) return false; // calls after close never throw
    let head = '';
    if (options !== undefined && options !== null) {
      if (typeof options !== 'object') throw new TypeError('sse-relay: send options must be an object { event?, id? }');
      if (options.id !== undefined) head += 'id: ' + checkFieldValue('id', options.id) + '\n';
      if (options.event !== undefined) head += 'event: ' + checkFieldValue('event', options.event) + '\n';
    }
    const frame = head + encodeData(dataToText(data, this.pool.opts.serialize)) + '\n';
    return this.open() && this.write(frame);
  }

  comment(text?: string): boolean {
    if (this.state === CLOSED) return false;
    const frame = encodeComment(text);
    return this.open() && this.write(frame);
  }

  retry(ms: number): boolean {
    if (this.state === CLOSED) return false;
    const frame = encodeRetry(checkRetry(ms));
    return this.open() && this.write(frame);
  }

  close(): void {
    if (this.state === OPEN) return this.end('');
    if (this.state === CLOSED) return;
    if (this.state === ADMITTED) this.release();
    this.state = CLOSED;
    const res = this.res;
    if (!res.headersSent && !res.writableEnded && !res.destroyed) {
      res.writeHead(204);
      res.end();
    }
    this.controller?.abort();
  }

  /** Writes `last` after everything pending, ends the response and releases everything. */
  end(last: string): void {
    // Admitted but not started yet (a hub stream still subscribing): open it so it can end
    // cleanly with `last`; otherwise Pool.closeAll() would skip it and it would open afterwards.
    if (this.state === ADMITTED) this.start();
    if (this.state !== OPEN) return;
    const res = this.res;
    if (this.shared !== null) this.unshare();
    let rest = this.pending;
    if (this.queue !== null) rest = this.queue.join('') + rest;
    this.pending = '';
    this.queue = null;
    this.release();
    if (!res.writableEnded && !res.destroyed) res.end(rest + last);
  }

  /** Writes a frame now (after anything pending), or queues it while the socket is backed up. */
  write(frame: string): boolean {
    if (this.state !== OPEN) return false;
    if (this.waiting) return this.enqueue(frame, undefined);
    if (this.shared !== null) this.unshare();
    if (this.pending !== '') {
      frame = this.pending + frame;
      this.pending = '';
    }
    return this.writeNow(frame);
  }

  /**
   * Adds a frame to this turn's batch (one write per connection per turn).
   * With `key`, a frame still queued behind backpressure that has the same key
   * is replaced by this one (latest wins).
   */
  push(frame: string, key?: string): boolean {
    if (this.state !== OPEN) return false;
    if (this.waiting) return this.enqueue(frame, key);
    turnChars += frame.length;
    if (this.shared !== null) this.unshare();
    if (this.pending === '') {
      this.pending = frame;
      markDirty(this);
    } else {
      this.pending += frame;
    }
    return true;
  }

  /** True when this stream reads `batch` this turn. */
  reads(batch: SharedBatch): boolean {
    return this.shared === batch;
  }

  /**
   * Joins `batch` (which must be empty): this turn, the stream gets the
   * batch's frames as shared bytes. False when it has output of its own
   * pending or is backed up; then the caller pushes frames one by one.
   */
  join(batch: SharedBatch): boolean {
    if (this.state !== OPEN || this.waiting || this.pending !== '' || this.shared !== null || batch.text !== '') {
      return false;
    }
    this.shared = batch;
    markDirty(this);
    return true;
  }

  /** A frame of its own arrives: the shared frames so far become its own pending text. */
  private unshare(): void {
    this.pending = this.shared!.text + this.pending;
    this.shared = null;
  }

  /** Writes this turn's batch. */
  flush(): void {
    if (this.shared !== null) {
      const batch = this.shared;
      this.shared = null;
      if (this.state === OPEN && batch.text !== '') this.writeNow(batch.buffer());
      return;
    }
    if (this.pending === '' || this.state !== OPEN) return;
    const frame = this.pending;
    this.pending = '';
    if (this.waiting) this.enqueue(frame, undefined);
    else this.writeNow(frame);
  }

  private writeNow(frame: string | Buffer): boolean {
    const res = this.res as Res;
    if (res.writableEnded || res.destroyed) {
      this.gone();
      return false;
    }
    const ok = res.write(frame);
    this.written = true;
    if (typeof res.flush === 'function') res.flush();
    if (!ok) {
      if (res.writableLength > this.pool.opts.maxBufferedBytes) {
        this.drop();
        return false;
      }
      this.waiting = true;
      this.stalledAt = performance.now();
      res.once('drain', onResponseDrain);
    }
    return ok;
  }

  private enqueue(frame: string, key: string | undefined): false {
    let queue = this.queue;
    if (queue === null) queue = this.queue = [];
    if (key !== undefined) {
      let keys = this.queueKeys;
      if (keys === null) keys = this.queueKeys = new Map();
      const at = keys.get(key);
      if (at !== undefined) {
        this.queued -= queue[at]!.length;
        queue[at] = '';
        if (++this.holes > 64 && this.holes * 2 > queue.length) queue = this.compact(queue, keys);
      }
      keys.set(key, queue.length);
    }
    queue.push(frame);
    this.queued += frame.length;
    if (this.queued + this.res.writableLength > this.pool.opts.maxBufferedBytes) this.drop();
    return false;
  }

  /** Drops the slots of replaced frames, so a long stall keeps one slot per live frame. */
  private compact(queue: string[], keys: Map<string, number>): string[] {
    const live: string[] = [];
    const moved = new Map<number, number>();
    for (let i = 0; i < queue.length; i++) {
      if (queue[i] !== '') {
        moved.set(i, live.length);
        live.push(queue[i]!);
      }
    }
    for (const [key, at] of keys) {
      const to = moved.get(at);
      if (to === undefined) keys.delete(key);
      else keys.set(key, to);
    }
    this.holes = 0;
    this.queue = live;
    return live;
  }

  /** The socket drained: write what was held back. */
  drained(): void {
    if (this.state !== OPEN || !this.waiting) return;
    this.waiting = false;
    const queue = this.queue;
    this.queue = null;
    this.queueKeys = null;
    this.holes = 0;
    this.queued = 0;
    let frame = queue === null ? '' : queue.join('');
    if (this.pending !== '') {
      frame += this.pending;
      this.pending = '';
    }
    if (frame !== '') this.writeNow(frame);
  }

  /** One beat of the shared timer: keep-alive when idle, drop when stuck. */
  tick(): void {
    if (this.state !== OPEN) return;
    if (this.waiting) {
      // Measured, not counted in ticks: a tick that fired late (busy loop) must not make the cut early.
      if (performance.now() - this.stalledAt >= this.pool.opts.drainTimeout) this.drop();
      return;
    }
    if (this.written) {
      this.written = false;
      this.idleTicks = 0;
    } else if (this.pool.keepAliveTicks > 0 && ++this.idleTicks >= this.pool.keepAliveTicks) {
      this.idleTicks = 0;
      this.write(KEEP_ALIVE_FRAME);
      this.written = false;
    }
  }

  /** Cuts a client that fell too far behind; it reconnects and resumes with Last-Event-ID. */
  drop(): void {
    if (this.state !== OPEN) return;
    this.pool.dropped++;
    this.queue = null;
    this.queueKeys = null;
    this.holes = 0;
    this.pending = '';
    this.shared = null;
    this.release();
    this.res.destroy();
  }

  /** The response closed underneath us (client left, or someone ended it). */
  gone(): void {
    if (this.state === OPEN || this.state === ADMITTED) this.release();
  }

  private release(): void {
    this.state = CLOSED;
    this.shared = null;
    const res = this.res as Res;
    res.removeListener('close', onResponseClose);
    res.removeListener('drain', onResponseDrain);
    delete res[kConnection];
    if (this.durationTimer !== undefined) clearTimeout(this.durationTimer);
    this.durationTimer = undefined;
    this.waiting = false;
    this.pool.remove(this);
    this.controller?.abort();
    const onEnd = this.onEnd;
    this.onEnd = undefined;
    if (onEnd !== undefined) onEnd(this);
  }
}
