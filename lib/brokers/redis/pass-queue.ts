/**
 * Serial passes per key (per partition): a call made while a pass is queued
 * joins it rather than queueing another, so any number of concurrent
 * subscribes and unsubscribes cost one pass each time the queue moves. After
 * each pass, in the same queue, runs `after` (the partition's catch-up), which
 * can ask whether a pass waits behind it and pause for it. A pass that failed
 * is retried after `retryMs` (every key `due()` names then, in one go).
 */

function noop(): void {}

export class PassQueue<K> {
  private readonly queues = new Map<K, { chain: Promise<void>; queued?: Promise<void> }>();
  private retryTimer: NodeJS.Timeout | undefined = undefined;
  private closed = false;

  constructor(
    private readonly pass: (key: K) => Promise<void>,
    /** Runs after each pass of `key` (`ok`: it succeeded), before the next one; must not throw. */
    private readonly after: (key: K, ok: boolean) => Promise<void> | void,
    /** The keys a retry runs a pass of. */
    private readonly due: () => K[],
    private readonly retryMs: number,
  ) {}

  /** Queues a pass of `key` (or joins the one queued); settles as that pass does. */
  run(key: K): Promise<void> {
    let q = this.queues.get(key);
    if (q === undefined) this.queues.set(key, (q = { chain: Promise.resolve() }));
    if (q.queued !== undefined) return q.queued;
    const queue = q;
    const pass = queue.chain.then(() => {
      queue.queued = undefined;
      return this.pass(key);
    });
    queue.queued = pass;
    queue.chain = pass.then(
      () => this.after(key, true),
      () => this.after(key, false),
    );
    queue.chain = queue.chain.then(noop, noop);
    return pass;
  }

  /** Whether a pass of `key` waits to run. */
  waiting(key: K): boolean {
    return this.queues.get(key)?.queued !== undefined;
  }

  /** A pass of each of `keys`, on its own: one that fails does not hold up the others, and is retried. */
  runEach(keys: Iterable<K>): void {
    if (this.closed) return;
    for (const key of keys) this.run(key).catch(() => this.retryLater());
  }

  /** In `retryMs` (once, however often asked meanwhile): a pass of every key `due()` names then. */
  retryLater(): void {
    if (this.retryTimer !== undefined || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.runEach(this.due());
    }, this.retryMs);
    this.retryTimer.unref();
  }

  /** No more retries; resolves once everything queued so far has run. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    await this.idle();
  }

  /** Resolves once everything queued so far has run. */
  async idle(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.chain));
  }
}
