/**
 * One client's stream: the `res.sse` API and its life. States, in order:
 * 'new' (nothing decided, nothing written) -> 'admitted' (origin and limits
 * passed, counted; head not written) -> 'open' (head written, streaming) ->
 * 'closed'. There is one way to end (`finish`), idempotent, which releases
 * every listener and timer.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  checkFieldValue,
  checkRetry,
  dataToText,
  encodeComment,
  encodeData,
  encodeFrame,
  encodeRetry,
} from '../protocol/encode';
import { RETRY, jitter, queryOf, refuse } from '../http';
import type { Admission, DropReason } from './admission';
import type { SendOptions, SseStream } from './api';

export type { SendOptions, SseStream } from './api';
import { directSocket } from './direct';
import { writeStreamHead } from './head';
import { checkFrameSize } from './options';
import { joinClock, leaveClock, type Ticking } from './ticker';
import { HARD_FACTOR, WriteQueue, type QueueOwner, type Upstream } from './write-queue';
import { streamClosed, streamDropped, streamOpened } from '../diagnostics';

type State = 'new' | 'admitted' | 'open' | 'closed';

const kConnection = Symbol('sse-relay.connection');
type Res = ServerResponse & { [kConnection]?: Connection };

// Shared listeners (no closure per stream): `this` is the response, which carries its connection.
function onResponseClose(this: Res): void {
  this[kConnection]?.gone();
}
function onResponseDrain(this: Res): void {
  this[kConnection]?.drained();
}

export class Connection implements SseStream, QueueOwner, Ticking {
  private state: State = 'new';
  private queue: WriteQueue | undefined = undefined;
  /** Clock beats since the last write (keep-alive). */
  private idleTicks = 0;
  private durationTimer: NodeJS.Timeout | undefined = undefined;
  private controller: AbortController | undefined = undefined;
  private cachedLastEventId: string | null | undefined = undefined;
  /** The hub channels of this stream (for the diagnostics channels; empty for plain sse()). */
  channels: readonly string[] = [];
  /** performance.now() when the head was written. */
  private openedAt = 0;
  /** Called once when the stream ends, for any reason (the hub unsubscribes here). */
  onEnd: ((conn: Connection) => void) | undefined = undefined;
  /** What waits for this stream before its queue: part of its backlog (maxBufferedBytes). */
  upstream: Upstream | undefined = undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly admission: Admission<Connection>,
  ) {}

  get closed(): boolean {
    return this.state === 'closed';
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.state === 'closed') this.controller.abort();
    }
    return this.controller.signal;
  }

  get lastEventId(): string | undefined {
    if (this.cachedLastEventId === undefined) {
      const header = this.req.headers['last-event-id'];
      this.cachedLastEventId = typeof header === 'string' ? header : queryOf(this.req).get('lastEventId');
    }
    return this.cachedLastEventId ?? undefined;
  }

  // ---- opening -------------------------------------------------------------

  /**
   * Checks origin and limits and reserves this stream's place, before anything
   * is written. On a refusal the request has been answered (403, 429, or 200 +
   * retry + end) and the stream is closed.
   */
  admit(): boolean {
    if (this.state !== 'new') return this.state !== 'closed';
    const res = this.res as Res;
    if (res.headersSent || res.writableEnded || res.destroyed) {
      this.state = 'closed';
      this.controller?.abort();
      return false;
    }
    const refusal = this.admission.admit(this, this.req);
    if (refusal !== undefined) {
      this.state = 'closed';
      if (refusal === 'origin') refuse(res, 403, { Vary: 'Origin' });
      else if (refusal === 'per-key') refuse(res, 429, { 'Retry-After': '5' });
      else {
        // A non-200 would make EventSource give up for good; an overload is transient.
        writeStreamHead(this.req, this.res, this.admission);
        res.end(encodeRetry(jitter(RETRY.overloaded)));
      }
      this.controller?.abort();
      return false;
    }
    this.state = 'admitted';
    res[kConnection] = this;
    res.on('close', onResponseClose);
    return true;
  }

  /** Writes the head of an admitted stream and starts streaming. */
  start(): void {
    if (this.state !== 'admitted') return;
    this.state = 'open';
    this.openedAt = performance.now();
    const opts = this.admission.opts;
    writeStreamHead(this.req, this.res, this.admission);
    const socket = directSocket(this.req, this.res);
    this.queue = new WriteQueue(
      this.res,
      socket,
      opts.maxBufferedBytes,
      opts.maxWriteDelay,
      this,
      onResponseDrain as () => void,
    );
    this.queue.wrote = true; // the head is a write: idle time starts now
    joinClock(this, this.admission.timing.period);
    this.req.socket?.setNoDelay(true);
    if (opts.maxDuration > 0) {
      const ms = opts.maxDuration - Math.floor(Math.random() * opts.maxDuration * 0.1);
      this.durationTimer = setTimeout(() => this.close(), ms);
      this.durationTimer.unref();
    }
    if (opts.retry !== undefined) this.queue.write(encodeRetry(opts.retry));
    streamOpened(this.admission.kind, this.req, this.channels, this.lastEventId);
  }

  open(): boolean {
    if (this.state === 'open') return true;
    if (!this.admit()) return false;
    this.start();
    return this.isOpen;
  }

  // ---- the res.sse API -----------------------------------------------------

  send(data: unknown, options?: SendOptions): boolean {
    if (this.state === 'closed') return false; // calls after close never throw
    let id: string | undefined;
    let event: string | undefined;
    if (options !== undefined && options !== null) {
      if (typeof options !== 'object') throw new TypeError('sse-relay: send options must be an object { event?, id? }');
      if (options.id !== undefined) id = checkFieldValue('id', options.id);
      if (options.event !== undefined) event = checkFieldValue('event', options.event);
    }
    const frame = encodeFrame(id, event, encodeData(dataToText(data, this.admission.opts.serialize)));
    checkFrameSize(frame, this.admission.opts.maxEventBytes);
    if (!this.open()) return false;
    this.admission.counters.delivered++;
    return this.write(frame);
  }

  comment(text?: string): boolean {
    if (this.state === 'closed') return false;
    const frame = encodeComment(text);
    return this.open() && this.write(frame);
  }

  retry(ms: number): boolean {
    if (this.state === 'closed') return false;
    const frame = encodeRetry(checkRetry(ms));
    return this.open() && this.write(frame);
  }

  close(): void {
    if (this.state === 'open') return this.end('');
    if (this.state === 'closed') return;
    const answer = this.state === 'new' || this.state === 'admitted';
    this.finish();
    if (answer && !this.res.headersSent && !this.res.writableEnded && !this.res.destroyed) {
      this.res.writeHead(204);
      this.res.end();
    }
  }

  // ---- writing (the hub uses these too) ------------------------------------

  /** Writes a frame now (after anything pending), or holds it while the socket is backed up. */
  write(frame: string): boolean {
    return this.queue !== undefined && this.state === 'open' && this.queue.write(frame);
  }

  /** Adds a frame to this turn's output; with `key`, latest wins while the client is behind. */
  push(frame: string, key?: string): boolean {
    return this.queue !== undefined && this.state === 'open' && this.queue.push(frame, key);
  }

  /** This stream's queue (for fan-out's shared frames); undefined until open. */
  get writeQueue(): WriteQueue | undefined {
    return this.state === 'open' ? this.queue : undefined;
  }

  /** Resolves when the socket can take more (at once when it can), or the stream ended. */
  writable(): Promise<void> {
    return this.queue === undefined ? Promise.resolve() : this.queue.writable();
  }

  /** Writes `last` after everything pending and ends the response. An admitted stream is opened first. */
  end(last: string): void {
    // Admitted but not started (a hub stream still subscribing): open it so it can end cleanly with `last`.
    if (this.state === 'admitted') this.start();
    if (this.state !== 'open') return;
    const rest = this.queue!.takeRest();
    const res = this.res;
    this.finish();
    if (!res.writableEnded && !res.destroyed) res.end(rest + last);
  }

  /** Characters waiting for this stream in `upstream` (the queue counts them as held). */
  get waitingChars(): number {
    return this.upstream === undefined ? 0 : this.upstream.waitingChars;
  }

  /**
   * More waits in `upstream`: the backlog rule runs now, as for a held frame. Before the head
   * is written (a hub stream still subscribing or reading its first replay page) nothing can
   * be leaving, so only the hard bound applies: past HARD_FACTOR x maxBufferedBytes it is cut.
   */
  backlogGrew(): void {
    if (this.state === 'open') this.queue!.checkBacklog(performance.now());
    else if (this.state === 'admitted' && this.waitingChars > HARD_FACTOR * this.admission.opts.maxBufferedBytes)
      this.cut('backlog');
  }

  // ---- events from the socket, the queue and the clock -----------------------

  drained(): void {
    this.queue?.drained();
  }

  /** The response closed underneath us (client left, or someone ended it). */
  gone(): void {
    if (this.state === 'open' || this.state === 'admitted') this.finish();
  }

  /** Cuts a client that fell too far behind; it reconnects and resumes with Last-Event-ID. */
  cut(reason: DropReason): void {
    if (this.state !== 'open' && this.state !== 'admitted') return;
    this.admission.counters.dropped[reason]++;
    streamDropped(this.admission.kind, this.req, this.channels, reason, this.res.writableLength + this.waitingChars);
    this.finish();
    this.res.destroy();
  }

  /** A write of this turn's output threw (a broken response). */
  drop(): void {
    this.cut('error');
  }

  coalesced(): void {
    this.admission.counters.coalesced++;
  }

  /** One beat of the shared clock: keep-alive when idle, cut when stuck. */
  tick(now: number): void {
    if (this.state !== 'open') return;
    const queue = this.queue!;
    if (queue.isBackedUp) {
      // Measured, not counted in beats: a beat that fired late (busy loop) must not make the cut early.
      if (queue.stalledFor(now) >= this.admission.opts.drainTimeout) return this.cut('drain');
      queue.checkBacklog(now);
      return;
    }
    const { keepAliveTicks } = this.admission.timing;
    if (queue.wrote) {
      queue.wrote = false;
      this.idleTicks = 0;
    } else if (keepAliveTicks > 0 && ++this.idleTicks >= keepAliveTicks) {
      this.idleTicks = 0;
      queue.write(KEEP_ALIVE_FRAME);
      queue.wrote = false; // a keep-alive does not count as activity
    }
  }

  /** The one way a stream ends: release every listener, timer and count; tell the owner. */
  private finish(): void {
    if (this.state === 'closed') return;
    const wasCounted = this.state !== 'new';
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    const res = this.res as Res;
    res.removeListener('close', onResponseClose);
    delete res[kConnection];
    this.queue?.close();
    if (this.queue !== undefined) leaveClock(this, this.admission.timing.period);
    if (this.durationTimer !== undefined) clearTimeout(this.durationTimer);
    this.durationTimer = undefined;
    if (wasCounted) this.admission.release(this);
    this.controller?.abort();
    if (wasOpen) streamClosed(this.admission.kind, this.req, this.channels, this.openedAt);
    const onEnd = this.onEnd;
    this.onEnd = undefined;
    if (onEnd !== undefined) onEnd(this);
  }
}

const KEEP_ALIVE_FRAME = encodeComment('keep-alive');
