/**
 * A switchover behind one address (a VIP, a DNS name, a proxy standing for
 * "the master"): the node a command connection leads to was made a replica and
 * answers every write READONLY, while the address already leads to the new
 * master. A connection the broker opened is dropped so that ioredis reconnects
 * through the address; the caller's client is the caller's (ioredis'
 * reconnectOnError). Once a function call succeeds again (the connection
 * reached a master), the subscriber connections are told to follow.
 */

/** Our connection answered READONLY is dropped at most this often (the address may lead to the replica a while yet). */
const RESET_MS = 1000;

export interface Socket {
  destroy(): void;
  readonly destroyed?: boolean;
}

export class Switchover {
  /** A READONLY reply came, and no function call has succeeded since. */
  private demoted = false;
  private resetAt = -Infinity;

  constructor(
    /** Whether the broker opened the connection (and may drop it). */
    private readonly owned: boolean,
    /** The connection's socket now. */
    private readonly current: () => Socket | undefined,
    /** After a READONLY, the first function call that succeeds. */
    private readonly promoted: () => void,
  ) {}

  /** A reply error to a command sent on `sent`. */
  refused(err: Error, sent: Socket | undefined): void {
    if (!err.message.startsWith('READONLY')) return;
    this.demoted = true;
    if (!this.owned || sent === undefined || sent.destroyed === true || this.current() !== sent) return;
    const now = performance.now();
    if (now - this.resetAt < RESET_MS) return;
    this.resetAt = now;
    sent.destroy(); // ioredis reconnects (to where the address leads now)
  }

  /** A command succeeded; `write`: one Redis refuses on a replica (our functions). */
  ran(write: boolean): void {
    if (!this.demoted || !write) return;
    this.demoted = false;
    this.promoted();
  }
}
