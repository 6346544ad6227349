/**
 * One write per stream per event-loop turn. Frames pushed during a turn are
 * collected and written at its end (process.nextTick), so a burst of events
 * costs one `write()` per socket; frames that many streams share are turned
 * into bytes once (SharedFrames). The turn also counts what it produced, so a
 * publisher that loops on `await publish()` (microtasks only: sockets never
 * get to drain) can be made to yield to socket I/O.
 *
 * This is the only process-wide mutable state of the stream layer, and this
 * file owns it.
 */

/** What a turn flushes: a stream with frames pending. */
export interface Flushable {
  flush(): void;
  /** Called when `flush()` threw: cut the stream, the others must still be written. */
  drop(): void;
}

/** Past this much output in one turn, `afterFlush()` makes publishers wait for socket I/O. */
const YIELD_CHARS = 64 * 1024;

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
  private done = false;

  /** Still collecting this turn's frames (false once the turn was flushed). */
  get open(): boolean {
    return !this.done;
  }

  /** Adds a frame that `readers` streams receive. */
  append(frame: string, readers: number): void {
    this.text += frame;
    turn.produced(frame.length * readers);
  }

  /** The frames as UTF-8, encoded on the first call. */
  buffer(): Buffer {
    if (this.bytes === undefined) this.bytes = Buffer.from(this.text, 'utf8');
    return this.bytes;
  }

  close(): void {
    this.done = true;
    this.text = '';
    this.bytes = undefined;
  }
}

class Turn {
  private dirty: Flushable[] = [];
  private shared: SharedFrames[] = [];
  private scheduled = false;
  /** Characters produced this turn, over all streams. */
  private chars = 0;
  private settling: Promise<void> | undefined = undefined;
  private readonly flushAll = (): void => this.flush();

  /** `stream` has frames to write at the end of this turn. */
  mark(stream: Flushable): void {
    this.dirty.push(stream);
    this.schedule();
  }

  /** A new group's frames for this turn. */
  share(): SharedFrames {
    const frames = new SharedFrames();
    this.shared.push(frames);
    this.schedule();
    return frames;
  }

  produced(chars: number): void {
    this.chars += chars;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    process.nextTick(this.flushAll);
  }

  private flush(): void {
    const list = this.dirty;
    const shared = this.shared;
    this.dirty = [];
    this.shared = [];
    this.scheduled = false;
    this.chars = 0;
    for (const stream of list) {
      try {
        stream.flush();
      } catch {
        stream.drop(); // one broken response must not keep the others from being written
      }
    }
    for (const frames of shared) frames.close();
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
