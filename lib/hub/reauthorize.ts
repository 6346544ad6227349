/**
 * Re-authorisation of open streams: one hub timer (not one per stream) runs
 * `authorize` again for every channel of each stream that is due; a `false`,
 * a throw, or no answer within `timeout` closes the stream (fail closed).
 */
import type { IncomingMessage } from 'node:http';
import type { HubStream } from './stream';

export type Authorize = (req: IncomingMessage, channel: string) => boolean | Promise<boolean>;

export class Reauthorizer {
  private timer: NodeJS.Timeout | undefined = undefined;

  constructor(
    private readonly authorize: Authorize,
    /** ms between checks of one stream; 0 = never. */
    private readonly every: number,
    /** ms one re-authorisation may take before it counts as a no. */
    private readonly timeout: number,
    private readonly streams: () => Iterable<HubStream>,
  ) {}

  /** A stream went live: schedule its first check. */
  track(s: HubStream): void {
    if (this.every === 0) return;
    s.nextAuth = Date.now() + this.every;
    if (this.timer !== undefined) return;
    const period = Math.max(10, Math.floor(this.every / 4));
    this.timer = setInterval(() => this.due(), period);
    this.timer.unref();
  }

  /** No stream left (or the hub closed). */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private due(): void {
    const now = Date.now();
    for (const s of this.streams()) {
      if (s.buffer !== null || s.authorizing || s.nextAuth > now) continue;
      s.authorizing = true;
      this.check(s).then(
        (ok) => {
          s.authorizing = false;
          s.nextAuth = Date.now() + this.every;
          if (!ok) s.conn.close();
        },
        () => {
          s.authorizing = false;
          s.conn.close(); // fail closed
        },
      );
    }
  }

  /** True when every channel is still allowed; false on a no or when the answer takes longer than `timeout`. */
  private check(s: HubStream): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.timeout);
      timer.unref();
    });
    const answer = (async () => {
      for (const ch of s.channels) {
        if (s.conn.closed) return true;
        if ((await this.authorize(s.conn.req, ch)) !== true) return false;
      }
      return true;
    })();
    return Promise.race([answer, late]).finally(() => clearTimeout(timer));
  }
}
