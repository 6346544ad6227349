/**
 * One write per stream per event-loop turn. Frames pushed during a turn are
 * collected and written at its end (process.nextTick), so a burst of events
 * costs one `write()` per socket; frames that many streams share are turned
 * into bytes once (SharedFrames). The turn also counts what it produced, so a
 * publisher that loops on `await publish()` (microtasks only: sockets never
 * get to drain) can be made to yield to socket I/O.
 *
 * Adaptive batching: when the process is busy, the write-out waits and the
 * frames of later turns join it, so each socket gets one larger write. Busy
 * means: the previous write-out ended less than `maxWriteDelay` ms ago AND
 * the event loop spent less than half of that time idle (waiting for I/O).
 * The write-out then happens `maxWriteDelay` ms after the previous one ended
 * (a frame so waits less than `maxWriteDelay`, plus timer slop), or as soon
 * as one stream's (or group's) output reaches BATCH_CHARS. An idle process
 * writes at the end of the turn, as without batching. Each stream brings its
 * own `maxWriteDelay` (0 = never wait); the window is the smallest of the
 * streams in it.
 *
 * This is the only process-wide mutable state of the stream layer, and this
 * file owns it.
 */

import { performance } from 'node:perf_hooks';
import { chunkOfBytes } from './direct';

/** What a turn flushes: a stream with frames pending. */
export interface Flushable {
  flush(): void;
  /** Called when `flush()` threw: cut the stream, the others must still be written. */
  drop(): void;
}

/** Past this much output in one turn, `afterFlush()` makes publishers wait for socket I/O. */
const YIELD_CHARS = 64 * 1024;
/**
 * A stream (or group) with this much output waiting is written at once, window
 * or not: past a few KiB a write's fixed cost is small, and waiting longer only
 * adds latency (measured: 16 KiB doubled throughput's p99 for no CPU saved).
 */
export const BATCH_CHARS = 4 * 1024;
/** Busy: the event loop was idle less than this share of the time since the last write-out. */
const BUSY_IDLE_SHARE = 0.5;

/**
 * The frames of one group of streams in one event-loop turn (streams that
 * receive exactly the same frames: the same channel set), encoded to bytes
 * ONCE and the same Buffer written to each socket. A stream joins only before
 * the first frame was appended; a frame of its own (a reset, a comment) turns
 * its share into its own pending text, so order is always kept.
 */
export class SharedFrames {
  /** The frames so far. */
  text = '';
  private bytes: Buffer | undefined = undefined;
  private chunked: Buffer | undefined = undefined;
  private done = false;

  /** Still collecting this turn's frames (false once the turn was flushed). */
  get open(): boolean {
    return !this.done;
  }

  /** Adds a frame that `readers` streams receive. */
  append(frame: string, readers: number): void {
    this.text += frame;
    turn.produced(frame.length * readers);
    if (this.text.length >= BATCH_CHARS) turn.full();
  }

  /** The frames as UTF-8, encoded on the first call. */
  buffer(): Buffer {
    if (this.bytes === undefined) this.bytes = Buffer.from(this.text, 'utf8');
    return this.bytes;
  }

  /** The frames as one HTTP/1.1 chunk (the direct write path), framed on the first call. */
  chunk(): Buffer {
    if (this.chunked === undefined) this.chunked = chunkOfBytes(this.buffer());
    return this.chunked;
  }

  /** The turn was written: no more frames join. Its bytes stay for the streams that hold them back (backed-up readers). */
  close(): void {
    this.done = true;
    this.text = '';
  }
}

class Turn {
  private dirty: Flushable[] = [];
  private shared: SharedFrames[] = [];
  /** 'tick': writes at the end of this turn; 'timer': a batching window is open. */
  private scheduled: 'no' | 'tick' | 'timer' = 'no';
  /** The smallest maxWriteDelay of the streams marked since the last write-out (Infinity: none yet). */
  private delay = Infinity;
  /** Write at the end of this turn, whatever the load (a stream's output reached BATCH_CHARS). */
  private urgent = false;
  private timer: NodeJS.Timeout | undefined = undefined;
  /** When the last write-out ended (performance.now()), and the loop's idle time (ms) then. */
  private flushedAt = -Infinity;
  private idleAt = 0;
  /** Characters produced this turn, over all streams. */
  private chars = 0;
  private settling: Promise<void> | undefined = undefined;
  private readonly flushAll = (): void => this.flush();
  private readonly endOfTurn = (): void => this.decide();

  /** `stream` has frames to write; it accepts to wait up to `delay` ms for them under load (0: never). */
  mark(stream: Flushable, delay: number): void {
    this.dirty.push(stream);
    this.schedule(delay);
  }

  /** A new group's frames for this turn. */
  share(): SharedFrames {
    const frames = new SharedFrames();
    this.shared.push(frames);
    return frames;
  }

  produced(chars: number): void {
    this.chars += chars;
  }

  /** One stream's (or group's) output is big enough: write at the end of this turn. */
  full(): void {
    if (this.urgent) return;
    this.urgent = true;
    if (this.scheduled === 'timer') this.rescheduleNow();
  }

  private schedule(delay: number): void {
    if (delay < this.delay) {
      this.delay = delay;
      // A stream with a shorter bound joined an open window: the window must not outlast it.
      if (this.scheduled === 'timer') this.rearm();
    }
    if (this.scheduled !== 'no') return;
    this.scheduled = 'tick';
    process.nextTick(this.endOfTurn);
  }

  /** The end of the turn: write now, or, when the process is busy, open a batching window. */
  private decide(): void {
    if (this.scheduled !== 'tick') return;
    if (!this.urgent && this.delay > 0) {
      const now = performance.now();
      const since = now - this.flushedAt;
      if (since < this.delay) {
        const idle = performance.eventLoopUtilization().idle - this.idleAt;
        if (idle < since * BUSY_IDLE_SHARE) {
          this.scheduled = 'timer';
          this.timer = setTimeout(this.flushAll, Math.max(1, Math.ceil(this.delay - since)));
          return;
        }
      }
    }
    this.flush();
  }

  private rearm(): void {
    clearTimeout(this.timer);
    const wait = this.flushedAt + this.delay - performance.now();
    if (wait < 1) return this.rescheduleNow();
    this.timer = setTimeout(this.flushAll, Math.ceil(wait));
  }

  private rescheduleNow(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.scheduled = 'tick';
    this.urgent = true;
    process.nextTick(this.endOfTurn);
  }

  private flush(): void {
    const list = this.dirty;
    const shared = this.shared;
    this.dirty = [];
    this.shared = [];
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.scheduled = 'no';
    this.delay = Infinity;
    this.urgent = false;
    this.chars = 0;
    for (const stream of list) {
      try {
        stream.flush();
      } catch {
        stream.drop(); // one broken response must not keep the others from being written
      }
    }
    for (const frames of shared) frames.close();
    if (list.length > 0) {
      this.flushedAt = performance.now();
      this.idleAt = performance.eventLoopUtilization().idle;
    }
  }

  /**
   * When this turn produced more than YIELD_CHARS of output, a promise that
   * resolves after it was written AND the event loop ran socket I/O (one
   * shared setImmediate); otherwise the pending one, if any.
   */
  afterFlush(): Promise<void> | undefined {
    if (this.chars < YIELD_CHARS) return this.settling;
    if (this.settling === undefined) {
      this.settling = new Promise((resolve) =>
        setImmediate(() => {
          this.settling = undefined;
          resolve();
        }),
      );
    }
    return this.settling;
  }
}

/** The process's turn. */
export const turn = new Turn();
