/**
 * One event to many streams, encoded once. Streams of the same group (the
 * hub gives streams the same group when they receive exactly the same frames:
 * the same channel set) share this turn's frames as ONE Buffer written to
 * every socket; any other stream gets the frame string in its own queue.
 * This is the only place that decides between the two.
 */
import type { Connection } from './connection';
import { turn, type SharedFrames } from './turn';

export class FanOut {
  /** group -> this turn's shared frames. */
  private readonly frames = new Map<string, SharedFrames>();
  private frame = '';
  private coalesce: string | undefined = undefined;
  /**
   * The shared frames this event goes to (the first `touchedCount` slots), and
   * how many streams read each. The arrays are reused from event to event, never
   * emptied (`length = 0` would free their storage and the next event allocate it again).
   */
  private readonly touched: (SharedFrames | undefined)[] = [];
  private readonly readers: number[] = [];
  private touchedCount = 0;
  /** The last group looked up during this event, and its frames (most streams of an event share one group). */
  private lastGroup: string | undefined = undefined;
  private lastFrames: SharedFrames | undefined = undefined;

  /** Starts delivering one event frame (with its latest-wins key, if any). */
  begin(frame: string, coalesce: string | undefined): void {
    this.frame = frame;
    this.coalesce = coalesce;
  }

  /** Delivers the current frame to `conn`, shared with its `group` when it can be. */
  to(conn: Connection, group: string | undefined): void {
    const queue = conn.writeQueue;
    if (queue === undefined) return;
    if (group !== undefined && this.coalesce === undefined) {
      const frames = this.framesOf(group);
      if (queue.isSharing(frames) || queue.share(frames)) {
        this.count(frames);
        return;
      }
    }
    queue.push(this.frame, this.coalesce);
  }

  /** `conn` does not take the current frame: it must not get it through its group's shared bytes either. */
  skip(conn: Connection, group: string | undefined): void {
    if (group === undefined) return;
    const frames = this.frames.get(group);
    if (frames !== undefined) conn.writeQueue?.leave(frames);
  }

  /** Ends the event: its frame is appended once to every group that reads it. */
  end(): void {
    const touched = this.touched;
    for (let i = 0; i < this.touchedCount; i++) {
      touched[i]!.append(this.frame, this.readers[i]!);
      touched[i] = undefined;
    }
    this.touchedCount = 0;
    this.frame = '';
    this.lastGroup = undefined;
    this.lastFrames = undefined;
  }

  /** The group has no stream any more. */
  forget(group: string): void {
    this.frames.delete(group);
    if (this.lastGroup === group) this.lastGroup = this.lastFrames = undefined;
  }

  private framesOf(group: string): SharedFrames {
    if (group === this.lastGroup && this.lastFrames!.open) return this.lastFrames!;
    let frames = this.frames.get(group);
    if (frames === undefined || !frames.open) {
      frames = turn.share();
      this.frames.set(group, frames);
    }
    this.lastGroup = group;
    this.lastFrames = frames;
    return frames;
  }

  private count(frames: SharedFrames): void {
    const touched = this.touched;
    const n = this.touchedCount;
    let i = 0;
    while (i < n && touched[i] !== frames) i++;
    if (i < n) {
      this.readers[i]!++;
      return;
    }
    touched[n] = frames;
    this.readers[n] = 1;
    this.touchedCount = n + 1;
  }
}
