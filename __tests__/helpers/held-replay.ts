/**
 * A fence for resume races: a real broker whose next resume replay (one with
 * an `after`; with `page: n`, the n-th of them, i.e. the n-th page of the
 * first resume) the test holds in two places, so events can be published at
 * exactly the moments a resume is most fragile:
 *
 * 1. `asked` resolves when the hub asks for the replay (its subscription is
 *    live by then); the broker has not read its history yet.
 * 2. `snapshot()` lets the broker read it and resolves once it has; the hub
 *    does not have the answer yet.
 * 3. `answer()` hands the answer to the hub.
 *
 * Everything else goes straight to the inner broker.
 */
import type { Broker, ReplayResult } from '../../lib';

export class HeldReplay {
  readonly broker: Broker;
  readonly asked: Promise<void>;
  private onAsked!: () => void;
  private read!: () => void;
  private readonly mayRead = new Promise<void>((r) => (this.read = r));
  private onSnapshot!: () => void;
  private readonly snapshotTaken = new Promise<void>((r) => (this.onSnapshot = r));
  private reply!: () => void;
  private readonly mayAnswer = new Promise<void>((r) => (this.reply = r));
  private resumes = 0;

  constructor(inner: Broker, { page = 1 }: { page?: number } = {}) {
    this.asked = new Promise<void>((r) => (this.onAsked = r));
    this.broker = {
      partitions: inner.partitions,
      partitionOf: inner.partitionOf?.bind(inner),
      publish: (channel, input, history) => inner.publish(channel, input, history),
      subscribe: (channel, listener) => inner.subscribe(channel, listener),
      unsubscribe: (channel, listener) => inner.unsubscribe(channel, listener),
      replay: async (channels, after, limit): Promise<ReplayResult> => {
        if (after === undefined || ++this.resumes !== page) return inner.replay(channels, after, limit);
        this.onAsked();
        await this.mayRead;
        const result = await inner.replay(channels, after, limit);
        this.onSnapshot();
        await this.mayAnswer;
        return result;
      },
      fence: inner.fence?.bind(inner),
      close: () => inner.close(),
    };
  }

  /** Lets the broker read its history; resolves once it has (the hub has not seen the answer yet). */
  snapshot(): Promise<void> {
    this.read();
    return this.snapshotTaken;
  }

  /** Hands the answer to the hub. */
  answer(): void {
    this.reply();
  }
}
