/**
 * What a browser's EventSource does, over the test kit's raw client: open the
 * stream, and when it ends, wait the `retry:` the server asked for and open it
 * again with `Last-Event-ID`. Every event of every connection is kept in order.
 * `gate` (optional) is awaited before each reconnect: a fence the test opens
 * once the new instance is up, so no reconnect races the deploy.
 */
import { openStream, type TestStream } from '../../lib/testing';
import type { ParsedEvent } from '../../lib/testing';

export class Follower {
  /** Status of every connection attempt, in order. */
  readonly statuses: number[] = [];
  /** The Last-Event-ID sent on each attempt (undefined on the first). */
  readonly resumedFrom: (string | undefined)[] = [];
  private readonly finished: ParsedEvent[] = [];
  private current: TestStream | undefined;
  private stopped = false;
  /** Resolves on close(): a wait for the gate or for `retry` ends then, so close() never hangs. */
  private readonly stopping: Promise<void>;
  private stop!: () => void;
  private readonly loop: Promise<void>;

  constructor(
    private readonly url: string,
    private readonly gate: () => Promise<void> = async () => undefined,
    private readonly maxConnections = 5,
  ) {
    this.stopping = new Promise<void>((resolve) => (this.stop = resolve));
    this.loop = this.run();
    this.loop.catch(() => undefined);
  }

  /** Every event received so far, over every connection. */
  events(): ParsedEvent[] {
    return [...this.finished, ...(this.current?.events ?? [])];
  }

  /** The stream open right now. */
  stream(): TestStream | undefined {
    return this.current;
  }

  /** Resolves once `cond(events)` holds; rejects after `ms` (naming `what`) or when the loop failed. */
  async waitFor(cond: (events: ParsedEvent[]) => boolean, what: string, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms;
    let failure: unknown;
    this.loop.catch((err) => (failure = err));
    while (!cond(this.events())) {
      if (failure !== undefined) throw failure;
      if (Date.now() > deadline) {
        throw new Error(
          `timed out after ${ms} ms waiting for ${what}; got ${JSON.stringify(this.events().map((e) => e.data))}`,
        );
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private async run(): Promise<void> {
    let lastId: string | undefined;
    for (let n = 0; n < this.maxConnections && !this.stopped; n++) {
      if (n > 0) await Promise.race([this.gate(), this.stopping]);
      if (this.stopped) return;
      this.resumedFrom.push(lastId);
      const s = await openStream(this.url, { headers: lastId === undefined ? {} : { 'Last-Event-ID': lastId } });
      if (this.stopped) return void (await s.close()); // close() ran while this one was opening
      this.statuses.push(s.status);
      if (s.status !== 200) {
        await s.close();
        throw new Error(`stream answered ${s.status}: ${s.raw()}`);
      }
      this.current = s;
      while (!s.ended && !this.stopped) await s.waitForEnd(1000).catch(() => undefined);
      if (this.stopped) return;
      this.finished.push(...s.events);
      this.current = undefined;
      const last = this.finished.at(-1);
      if (last !== undefined) lastId = last.id;
      const retry = s.retries.at(-1) ?? 3000;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise((r) => (timer = setTimeout(r, retry))), this.stopping]);
      clearTimeout(timer);
    }
    if (!this.stopped) throw new Error(`gave up after ${this.maxConnections} connections`);
  }

  /** Closes the open stream and ends the loop. */
  async close(): Promise<void> {
    this.stopped = true;
    this.stop();
    await this.current?.close();
    await this.loop.catch(() => undefined);
  }
}
