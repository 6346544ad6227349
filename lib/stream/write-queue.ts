/**
 * One stream's bytes on their way to the socket: this turn's frames (or the
 * group's shared frames), the frames held back while the socket is backed up
 * (with latest-wins coalescing slots), and the decision to cut a client that
 * stopped reading.
 *
 * The cut rule: what one event-loop turn produced for a client that was
 * keeping up is written at once, whatever its size (publishers are made to
 * yield by the turn, not by cutting readers). While the socket is backed up,
 * later frames are held here. A client is cut when its backlog (Node's buffer
 * plus what is held, plus what waits for it before the queue: a hub stream's
 * live events while its resume is replayed) stays over `maxBufferedBytes`
 * with no progress for STALL_GRACE_MS, or when what is held (and waits)
 * alone passes HARD_FACTOR x `maxBufferedBytes`. Memory per client is so
 * bounded by one turn's output plus HARD_FACTOR x maxBufferedBytes.
 *
 * Every write goes through `res.write`, or, where that is safe, straight to
 * the socket with the same chunk framing and the same backpressure
 * accounting (direct.ts). What is held back lives in held.ts.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { DropReason } from './admission';
import { chunkOfText, needDrain } from './direct';
import { HeldFrames, type HeldSink } from './held';
import { BATCH_CHARS, turn, type Flushable, type SharedFrames } from './turn';

/** How long a backlog over the limit may go without any byte leaving before the client is cut. */
export const STALL_GRACE_MS = 1000;
/** Held-back frames past this multiple of maxBufferedBytes cut the client at once. */
export const HARD_FACTOR = 4;

type Res = ServerResponse & { flush?: () => void };

/** What the queue tells the stream that owns it. */
export interface QueueOwner {
  /** The client must be cut (it reconnects and resumes with Last-Event-ID). */
  cut(reason: DropReason): void;
  /** The response ended or was destroyed underneath us. */
  gone(): void;
  /** A frame replaced a held one with the same key. */
  coalesced(): void;
  /** Characters that wait for this stream before they reach the queue: counted as held. */
  readonly waitingChars: number;
}

/** Where a stream's frames wait before they reach its queue (a hub stream's set-up buffer). */
export interface Upstream {
  /** What waits there now, in characters. */
  readonly waitingChars: number;
}

export class WriteQueue implements Flushable, HeldSink {
  /** Frames of this turn, not yet handed to the socket. */
  private pending = '';
  /** This turn's shared frames this stream reads, instead of `pending`. */
  private shared: SharedFrames | null = null;
  /** Frames held back while the socket is backed up. */
  private held: HeldFrames | null = null;
  /** True while the socket holds writes back (between a `false` write and `drain`). */
  private backedUp = false;
  /** When the socket last started to hold writes back (performance.now()). */
  private stalledAt = 0;
  /** While the backlog is over the limit: since when without progress, and its size then. */
  private overSince = 0;
  private overLength = 0;
  private waiters: (() => void)[] | null = null;
  private closed = false;
  /** Something was written since the owner last looked (keep-alive idle tracking). */
  wrote = false;

  constructor(
    private readonly res: Res,
    /** Set: the direct write path (lib/stream/direct.ts), chunks go straight to this socket. */
    private readonly socket: Socket | undefined,
    private readonly maxBufferedBytes: number,
    /** How long this stream's frames may wait for a batched write under load (ms, 0 = never). */
    private readonly maxWriteDelay: number,
    private readonly owner: QueueOwner,
    private readonly onDrain: () => void,
  ) {}

  get isBackedUp(): boolean {
    return this.backedUp;
  }

  /** How long the socket has been backed up (0 when it is not). */
  stalledFor(now: number): number {
    return this.backedUp ? now - this.stalledAt : 0;
  }

  /** Writes a frame now (after anything pending), or holds it while the socket is backed up. */
  write(frame: string): boolean {
    if (this.closed) return false;
    if (this.backedUp) return this.hold(frame, undefined);
    if (this.shared !== null) this.unshare();
    if (this.pending !== '') {
      frame = this.pending + frame;
      this.pending = '';
    }
    return this.send(frame);
  }

  /**
   * Adds a frame to this turn's output (one write per stream per turn). With
   * `key`, a held frame with the same key is replaced by this one (latest wins).
   */
  push(frame: string, key?: string): boolean {
    if (this.closed) return false;
    if (this.backedUp) return this.hold(frame, key);
    turn.produced(frame.length);
    if (this.shared !== null) this.unshare();
    if (this.pending === '') {
      this.pending = frame;
      turn.mark(this, this.maxWriteDelay);
    } else {
      this.pending += frame;
    }
    if (this.pending.length >= BATCH_CHARS) turn.full();
    return true;
  }

  /** True when this stream reads `frames` this turn. */
  isSharing(frames: SharedFrames): boolean {
    return this.shared === frames;
  }

  /**
   * Joins `frames` (still empty): this turn the stream gets them as shared
   * bytes. False when it has output of its own pending or is backed up; then
   * the caller pushes frames one by one.
   */
  share(frames: SharedFrames): boolean {
    if (this.closed || this.backedUp || this.pending !== '' || this.shared !== null || frames.text !== '') return false;
    this.shared = frames;
    turn.mark(this, this.maxWriteDelay);
    return true;
  }

  /** Stops reading `frames` (the stream skips a frame the others get): what it shared so far becomes its own. */
  leave(frames: SharedFrames): void {
    if (this.shared === frames) this.unshare();
  }

  /** A frame of its own arrives: the shared frames so far become its own pending text. */
  private unshare(): void {
    this.pending = this.shared!.text + this.pending;
    this.shared = null;
  }

  /** Writes this turn's output (called by the turn). */
  flush(): void {
    if (this.shared !== null) {
      const frames = this.shared;
      this.shared = null;
      if (!this.closed && frames.text !== '') {
        if (this.backedUp) this.holdShared(frames);
        else this.send('', frames);
      }
      return;
    }
    if (this.pending === '' || this.closed) return;
    const frame = this.pending;
    this.pending = '';
    if (this.backedUp) this.hold(frame, undefined);
    else this.send(frame);
  }

  /** Writing this turn's output threw (a broken response): cut. */
  drop(): void {
    this.owner.cut('error');
  }

  /** Writes `text`, or the shared `frames` (one Buffer for the whole group), on this stream's write path. */
  private send(text: string, frames?: SharedFrames): boolean {
    const res = this.res;
    const socket = this.socket;
    if (res.writableEnded || res.destroyed || (socket !== undefined && (socket.destroyed || !socket.writable))) {
      this.owner.gone();
      return false;
    }
    let ok: boolean;
    if (socket !== undefined) {
      ok = frames !== undefined ? socket.write(frames.chunk()) : socket.write(chunkOfText(text), 'utf8');
      if (!ok) needDrain(res); // as res.write does: the response emits 'drain' when its socket does
    } else {
      ok = res.write(frames !== undefined ? frames.buffer() : text);
      if (typeof res.flush === 'function') res.flush();
    }
    this.wrote = true;
    if (!ok && !this.closed && !this.backedUp) {
      this.backedUp = true;
      this.stalledAt = performance.now();
      res.once('drain', this.onDrain);
    }
    return ok;
  }

  private hold(frame: string, key: string | undefined): false {
    if ((this.held ??= new HeldFrames()).add(frame, key)) this.owner.coalesced();
    this.checkBacklog(performance.now());
    return false;
  }

  private holdShared(frames: SharedFrames): void {
    (this.held ??= new HeldFrames()).addShared(frames);
    this.checkBacklog(performance.now());
  }

  /** Cuts the client when its backlog is over the limit and it stopped reading (see the file's comment). */
  checkBacklog(now: number): void {
    if (this.closed) return;
    const max = this.maxBufferedBytes;
    const held = (this.held === null ? 0 : this.held.size) + this.owner.waitingChars;
    if (held > HARD_FACTOR * max) return this.owner.cut('backlog');
    const length = this.res.writableLength;
    if (length + held <= max) {
      this.overSince = 0;
      return;
    }
    if (this.overSince === 0 || length < this.overLength) {
      // Over the limit just now, or bytes left since we last looked: the client is reading.
      this.overSince = now;
      this.overLength = length;
      return;
    }
    if (now - this.overSince >= STALL_GRACE_MS) this.owner.cut('backlog');
  }

  /** Writes one piece of what was held (HeldFrames.writeTo). */
  sendHeld(text: string, frames: SharedFrames | undefined): void {
    if (!this.closed) this.send(text, frames);
  }

  /** The socket drained: write what was held back, then wake whoever waits for it. */
  drained(): void {
    if (this.closed || !this.backedUp) return;
    this.backedUp = false;
    this.overSince = 0;
    const held = this.held;
    this.held = null;
    const pending = this.pending;
    this.pending = '';
    if (held === null) {
      if (pending !== '') this.send(pending);
    } else {
      // One writev for everything held: Node's own buffer takes what the socket does not yet.
      const target = this.socket ?? this.res;
      target.cork();
      held.writeTo(this);
      if (pending !== '') this.send(pending);
      target.uncork();
    }
    if (!this.backedUp) this.wake();
  }

  /** Resolves once the socket is not backed up (at once when it is not), or the stream closed. */
  writable(): Promise<void> {
    if (!this.backedUp || this.closed) return Promise.resolve();
    return new Promise((resolve) => (this.waiters ??= []).push(resolve));
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = null;
    if (waiters !== null) for (const resolve of waiters) resolve();
  }

  /** Everything not yet written, in order (for a last write before `end()`). */
  takeRest(): string {
    if (this.shared !== null) this.unshare();
    let rest = this.pending;
    if (this.held !== null) rest = this.held.text() + rest;
    this.pending = '';
    this.held = null;
    return rest;
  }

  /** The stream ended: forget everything, release the drain listener and waiters. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = '';
    this.shared = null;
    this.held = null;
    this.backedUp = false;
    this.res.removeListener('drain', this.onDrain);
    this.wake();
  }
}
