/**
 * The frames one stream holds back while its socket is backed up, in order:
 * frames of its own (text; with a key, latest wins: a new frame with the same
 * key replaces the held one) and a group's shared frames, kept as the group's
 * one Buffer, so a backed-up reader never copies or re-encodes what many
 * readers share.
 */
import type { SharedFrames } from './turn';

/** Where held frames go when the socket drained: text of the stream's own, or shared frames. */
export interface HeldSink {
  sendHeld(text: string, frames: SharedFrames | undefined): void;
}

export class HeldFrames {
  /** In order; '' marks a replaced (coalesced) slot. */
  private items: (string | SharedFrames)[] = [];
  private keys: Map<string, number> | null = null;
  private holes = 0;
  /** What is held, in characters of text plus bytes of shared frames. */
  size = 0;

  /** Holds a frame of the stream's own. True when it replaced a held frame with the same key. */
  add(frame: string, key: string | undefined): boolean {
    let replaced = false;
    if (key !== undefined) {
      const keys = (this.keys ??= new Map());
      const at = keys.get(key);
      if (at !== undefined) {
        this.size -= (this.items[at] as string).length;
        this.items[at] = '';
        replaced = true;
        if (++this.holes > 64 && this.holes * 2 > this.items.length) this.compact(keys);
      }
      keys.set(key, this.items.length);
    }
    this.items.push(frame);
    this.size += frame.length;
    return replaced;
  }

  /** Holds a group's shared frames (encoded now, once for the group, if they were not yet). */
  addShared(frames: SharedFrames): void {
    this.size += frames.buffer().length;
    this.items.push(frames);
  }

  /** Hands everything to `sink` in order, consecutive text joined into one piece. */
  writeTo(sink: HeldSink): void {
    let text = '';
    for (const item of this.items) {
      if (typeof item === 'string') text += item;
      else {
        if (text !== '') sink.sendHeld(text, undefined);
        text = '';
        sink.sendHeld('', item);
      }
    }
    if (text !== '') sink.sendHeld(text, undefined);
  }

  /** Everything held, as text. */
  text(): string {
    let text = '';
    for (const item of this.items) text += typeof item === 'string' ? item : item.buffer().toString('utf8');
    return text;
  }

  /** Drops the slots of replaced frames, so a long stall keeps one slot per live frame. */
  private compact(keys: Map<string, number>): void {
    const live: (string | SharedFrames)[] = [];
    const moved = new Map<number, number>();
    for (let i = 0; i < this.items.length; i++) {
      if (this.items[i] !== '') {
        moved.set(i, live.length);
        live.push(this.items[i]!);
      }
    }
    for (const [key, at] of keys) {
      const to = moved.get(at);
      if (to === undefined) keys.delete(key);
      else keys.set(key, to);
    }
    this.holes = 0;
    this.items = live;
  }
}
