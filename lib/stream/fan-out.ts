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
  /** The shared frames this event goes to, and how many streams read each. */
  private touched: SharedFrames[] = [];
  private readers: number[] = [];

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
    for (let i = 0; i < touched.length; i++) touched[i]!.append(this.frame, this.readers[i]!);
    if (touched.length > 0) {
      this.touched = [];
      this.readers = [];
    }
    this.frame = '';
  }

  /** The group has no stream any more. */
  forget(group: string): void {
    this.frames.delete(group);
  }

  private framesOf(group: string): SharedFrames {
    let frames = this.frames.get(group);
    if (frames === undefined || !frames.open) {
      frames = turn.share();
      this.frames.set(group, frames);
    }
    return frames;
  }

  private count(frames: SharedFrames): void {
    const i = this.touched.indexOf(frames);
    if (i === -1) {
      this.touched.push(frames);
      this.readers.push(1);
    } else {
      this.readers[i]!++;
    }
  }
}
