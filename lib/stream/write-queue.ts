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
 * plus what is held) stays over `maxBufferedBytes` with no progress for
 * STALL_GRACE_MS, or when what is held alone passes HARD_FACTOR x
 * `maxBufferedBytes`. Memory per client is so bounded by one turn's output
 * plus HARD_FACTOR x maxBufferedBytes.
 */
import type { ServerResponse } from 'node:http';
import type { DropReason } from './admission';
import { turn, type Flushable, type SharedFrames } from './turn';

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
}

export class WriteQueue implements Flushable {
  /** Frames of this turn, not yet handed to the socket. */
  private pending = '';
  /** This turn's shared frames this stream reads, instead of `pending`. */
  private shared: SharedFrames | null = null;
  /** Frames held back while the socket is backed up; '' marks a replaced (coalesced) slot. */
  private held: string[] | null = null;
  private heldKeys: Map<string, number> | null = null;
  private holes = 0;
  private heldChars = 0;
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
    private readonly maxBufferedBytes: number,
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
      turn.mark(this);
    } else {
      this.pending += frame;
    }
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
    turn.mark(this);
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
        if (this.backedUp) this.hold(frames.text, undefined);
        else this.send(frames.buffer());
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

  private send(chunk: string | Buffer): boolean {
    const res = this.res;
    if (res.writableEnded || res.destroyed) {
      this.owner.gone();
      return false;
    }
    const ok = res.write(chunk);
    this.wrote = true;
    if (typeof res.flush === 'function') res.flush();
    if (!ok && !this.closed) {
      this.backedUp = true;
      this.stalledAt = performance.now();
      res.once('drain', this.onDrain);
    }
    return ok;
  }

  private hold(frame: string, key: string | undefined): false {
    let held = this.held;
    if (held === null) held = this.held = [];
    if (key !== undefined) {
      let keys = this.heldKeys;
      if (keys === null) keys = this.heldKeys = new Map();
      const at = keys.get(key);
      if (at !== undefined) {
        this.heldChars -= held[at]!.length;
        held[at] = '';
        this.owner.coalesced();
        if (++this.holes > 64 && this.holes * 2 > held.length) held = this.compact(held, keys);
      }
      keys.set(key, held.length);
    }
    held.push(frame);
    this.heldChars += frame.length;
    this.checkBacklog(performance.now());
    return false;
  }

  /** Cuts the client when its backlog is over the limit and it stopped reading (see the file's comment). */
  checkBacklog(now: number): void {
    if (this.closed) return;
    const max = this.maxBufferedBytes;
    if (this.heldChars > HARD_FACTOR * max) return this.owner.cut('backlog');
    const length = this.res.writableLength;
    if (length + this.heldChars <= max) {
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

  /** Drops the slots of replaced frames, so a long stall keeps one slot per live frame. */
  private compact(held: string[], keys: Map<string, number>): string[] {
    const live: string[] = [];
    const moved = new Map<number, number>();
    for (let i = 0; i < held.length; i++) {
      if (held[i] !== '') {
        moved.set(i, live.length);
        live.push(held[i]!);
      }
    }
    for (const [key, at] of keys) {
      const to = moved.get(at);
      if (to === undefined) keys.delete(key);
      else keys.set(key, to);
    }
    this.holes = 0;
    this.held = live;
    return live;
  }

  /** The socket drained: write what was held back, then wake whoever waits for it. */
  drained(): void {
    if (this.closed || !this.backedUp) return;
    this.backedUp = false;
    this.overSince = 0;
    const held = this.held;
    this.held = null;
    this.heldKeys = null;
    this.holes = 0;
    this.heldChars = 0;
    let chunk = held === null ? '' : held.join('');
    if (this.pending !== '') {
      chunk += this.pending;
      this.pending = '';
    }
    if (chunk !== '') this.send(chunk);
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
    if (this.held !== null) rest = this.held.join('') + rest;
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
    this.heldKeys = null;
    this.backedUp = false;
    this.res.removeListener('drain', this.onDrain);
    this.wake();
  }
}
