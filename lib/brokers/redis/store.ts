/**
 * Calls into the Function library: publishes (batched by batcher.ts, at most
 * once) and reads (heads, replays, catch-ups, fences).
 *
 * At most once: every call carries a random call id that Redis remembers for
 * longer than the call can run (a resend of the same call, by ioredis or by
 * us after a lost reply, returns the first result), a deadline Redis checks
 * against its own clock (a call that reaches Redis after we gave up stores
 * nothing), and the caller's idempotencyKeys (10 minutes).
 */
import { randomBytes } from 'node:crypto';
import { formatEventId, newEpoch } from '../../positions';
import type { BrokerEvent, Position, PublishInput } from '../broker';
import { SseRelayError } from '../../errors';
import type { CommandConnection } from './client';
import { BadReply, closedError, isReplyError, unavailable, within } from './failures';
import { Batcher, type Pending, type Round } from './batcher';
import { packEvents, parseBatch, parsePage, parseRead, type PageReply, type ReadReply } from './codec';
import { holds, type DeliveredMark } from './delivered';
import type { LayoutGate } from './layout';
import type { PartitionKeys } from './partitions';
import { EXPIRED, FN_BATCH, FN_PAGE, FN_READ } from './scripts';

const RETRY_DELAY_MS = 50;

/** Fewer replicas than waitReplicas confirmed a call in its time: final (asking again would find no more time). */
class Unconfirmed extends Error {}
/** Call ids: a random prefix per process and a counter (unique without a random draw per call). */
const CALL_PREFIX = randomBytes(12).toString('base64url');
let callCounter = 0;

export interface StoreHooks {
  /** The newest position the broker has seen in partition `p` (the rewind floor). */
  floor(p: number): Position | undefined;
  /** Redis acknowledged `seq` (the newest of a call) in `epoch` of partition `p`. */
  seen(p: number, epoch: string, seq: number): void;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

export class Store {
  private readonly batcher: Batcher;
  private closed = false;
  /** The epoch a call starts when a partition needs a new one (none yet, or a rewind); renewed once used. */
  private spare = newEpoch();
  /** Calls in flight: close() rejects them. */
  private readonly inflight = new Set<Pending[]>();

  constructor(
    private readonly conn: CommandConnection,
    private readonly keys: readonly PartitionKeys[],
    private readonly timeout: number,
    private readonly hooks: StoreHooks,
    private readonly layout: LayoutGate,
    /** Replicas that must confirm a call (WAIT) before its publishes resolve; 0: none. */
    private readonly waitReplicas = 0,
  ) {
    this.batcher = new Batcher(
      conn,
      keys.map((k) => k.slot),
      (p, round, items) => void this.run(p, round, items),
    );
  }

  publish(p: number, channel: string, input: PublishInput, history: number): Promise<BrokerEvent> {
    if (this.closed) return Promise.reject(closedError());
    return new Promise<BrokerEvent>((resolve, reject) => {
      this.batcher.add(p, { channel, input, history, deadline: Date.now() + this.timeout, resolve, reject });
    });
  }

  /** One batch call, retried with the same call id while its deadline allows. */
  private async run(p: number, round: Round, items: Pending[]): Promise<void> {
    this.inflight.add(items);
    const k = this.keys[p]!;
    const callId = CALL_PREFIX + (callCounter++).toString(36);
    const deadline = items[0]!.deadline; // the oldest: items are in publish order
    const keys: string[] = [k.base, k.dropped, k.call(callId)];
    const history = items[0]!.history;
    const events = packEvents(k, items, keys, history);
    let sent = false;
    /** An attempt was sent and its reply lost: it may have been stored, whatever later attempts hear. */
    let lost = false;
    let failure: unknown;
    try {
      for (;;) {
        try {
          // Connected, loaded and the layout checked: the call is sent within this turn (see CommandConnection.corked).
          if (!this.conn.ready || !this.conn.loaded || !this.layout.ok) await this.ready(deadline);
          const floor = this.hooks.floor(p);
          const args = [
            'FCALL',
            FN_BATCH,
            keys.length,
            ...keys,
            floor?.epoch ?? '',
            floor?.seq ?? 0,
            this.spare,
            this.conn.redisDeadline(deadline),
            this.timeout + 10_000,
            history,
            events,
          ];
          // Waited for a free round until no time was left: not sent, so certainly not published.
          if (!sent && Date.now() >= deadline) throw unavailable('no time left to send the call', 'not-published');
          sent = true;
          const call = this.conn.call(deadline, args, k.slot);
          // Pipelined right behind the call, on its connection: it covers the call's writes.
          const durable = this.waitReplicas > 0 ? this.waitFor(deadline, k.slot) : undefined;
          const parsed = parseBatch(await call, items.length);
          if (typeof parsed === 'string') throw new BadReply(parsed);
          this.seenAll(p, parsed.epoch, parsed.seqs); // stored (and maybe sent live) either way
          if (durable !== undefined) await durable;
          this.settle(p, items, parsed.epoch, parsed.seqs);
          return;
        } catch (err) {
          // the call may have started an epoch with the spare without our seeing it: never offer it again
          this.spare = newEpoch();
          if (this.closed) throw closedError();
          if (err instanceof BadReply || err instanceof Unconfirmed) throw unavailable(err.message, 'unknown');
          if (isReplyError(err)) {
            if (/function not found/i.test(err.message) && Date.now() < deadline) {
              this.conn.libraryLost();
              continue;
            }
            // Redis refused the call before it ran (EXPIRED, BUSY, READONLY, OOM, ...): nothing stored
            // by this attempt; but an earlier one whose reply was lost may have stored it.
            throw unavailable(
              err.message.startsWith(EXPIRED) ? 'the deadline passed before Redis ran the call' : err,
              lost ? 'unknown' : 'not-published',
            );
          }
          const outcome = sent ? 'unknown' : ((err as SseRelayError).outcome ?? 'not-published');
          if (outcome === 'unknown' && Date.now() + RETRY_DELAY_MS < deadline) {
            // The reply was lost with the connection: ask again under the same call id.
            lost = true;
            await sleep(RETRY_DELAY_MS);
            continue;
          }
          throw err instanceof SseRelayError && err.outcome === outcome ? err : unavailable(err, outcome);
        }
      }
    } catch (err) {
      failure = err;
    } finally {
      this.inflight.delete(items);
      this.batcher.done(round, p);
    }
    for (const it of items) it.reject(failure);
  }

  /** Connected, the library loaded and the layout checked (at once when all hold), within the deadline. */
  ready(deadline: number): Promise<void> {
    if (this.conn.ready && this.conn.loaded && this.layout.ok) return Promise.resolve();
    return within(
      this.conn
        .waitReady(deadline - Date.now())
        .then(() => this.conn.ensureLibrary())
        .then(() => this.layout.ensure()),
      deadline,
      'no reply in time',
      'not-published',
    );
  }

  /** The spare epoch became a partition's epoch: keep a fresh one for the next time one is needed. */
  private used(epoch: string): void {
    if (epoch === this.spare) this.spare = newEpoch();
  }

  /**
   * WAIT for `waitReplicas` replicas within the deadline. Fewer: the call is stored on the
   * master, but a failover may lose it, so its publishes reject with outcome 'unknown'.
   */
  private waitFor(deadline: number, slot: number): Promise<void> {
    // WAIT gives up at 80% of the time left, so its answer arrives before the deadline does.
    const ms = Math.max(1, Math.floor((deadline - Date.now()) * 0.8));
    const wait = this.conn.call(deadline, ['WAIT', this.waitReplicas, ms], slot);
    const checked = wait.then((n) => {
      if (typeof n !== 'number' || n < this.waitReplicas) {
        throw new Unconfirmed(
          `stored on the master, but ${String(n)} of the ${this.waitReplicas} replicas of waitReplicas confirmed it in time`,
        );
      }
    });
    checked.catch(() => undefined); // awaited only when the call itself succeeded
    return checked;
  }

  private seenAll(p: number, epoch: string, seqs: number[]): void {
    this.used(epoch);
    let max = 0;
    for (const s of seqs) if (s > max) max = s;
    this.hooks.seen(p, epoch, max);
  }

  private settle(p: number, items: Pending[], epoch: string, seqs: number[]): void {
    const partitions = this.keys.length;
    items.forEach((it, i) => {
      const seq = seqs[i]!;
      it.resolve({
        channel: it.channel,
        partition: p,
        epoch,
        seq,
        id: formatEventId(p, epoch, seq, partitions),
        data: it.input.data,
        event: it.input.event,
        coalesce: it.input.coalesce,
      });
    });
  }

  /**
   * One atomic read of partition `p`: its head and, per channel, whether history is
   * complete after the given seq and the entries after it. `expected` set and different
   * from Redis' epoch: every channel is read from the epoch's start. `count` > 0: at most
   * that many entries per channel.
   */
  read(
    p: number,
    channels: readonly { name: string; after: number }[],
    expected: string,
    floor?: Position,
    count = 0,
  ): Promise<ReadReply> {
    return this.call(p, FN_READ, channels, [expected, count], floor, (r) => parseRead(r, channels.length));
  }

  /**
   * One page of a catch-up of partition `p` (see scripts-page.ts): as read(), but only up to
   * a cut `to`, the same for every channel, at most `span` seqs past the lowest channel's
   * position and about `bytes` of entries (one entry more at most).
   */
  page(
    p: number,
    channels: readonly { name: string; after: number }[],
    expected: string,
    span: number,
    bytes: number,
  ): Promise<PageReply> {
    return this.call(p, FN_PAGE, channels, [expected, span, bytes], undefined, (r) => parsePage(r, channels.length));
  }

  private async call<R extends ReadReply>(
    p: number,
    fn: string,
    channels: readonly { name: string; after: number }[],
    extra: readonly (string | number)[],
    floor: Position | undefined,
    parse: (reply: unknown) => R | string,
  ): Promise<R> {
    if (this.closed) throw closedError();
    const k = this.keys[p]!;
    const deadline = Date.now() + this.timeout;
    const f = floor ?? this.hooks.floor(p);
    const args: (string | number)[] = ['FCALL', fn, 2 + channels.length, k.base, k.dropped];
    for (const c of channels) args.push(k.channel(c.name));
    args.push(f?.epoch ?? '', f?.seq ?? 0, this.spare, ...extra);
    for (const c of channels) args.push(c.after);
    for (let attempt = 0; ; attempt++) {
      await this.ready(deadline);
      let reply: unknown;
      try {
        reply = await this.conn.call(deadline, args, k.slot);
      } catch (err) {
        this.spare = newEpoch();
        if (isReplyError(err) && /function not found/i.test(err.message) && attempt < 3) {
          this.conn.libraryLost();
          continue;
        }
        throw this.closed ? closedError() : unavailable(err);
      }
      const parsed = parse(reply);
      if (typeof parsed === 'string') throw unavailable(parsed);
      this.used(parsed.epoch);
      this.hooks.seen(p, parsed.epoch, parsed.head);
      return parsed;
    }
  }

  /** Whether Redis still holds the events delivered at `marks` of partition `p` (see delivered.ts). */
  async holds(p: number, marks: readonly DeliveredMark[]): Promise<boolean> {
    if (this.closed) throw closedError();
    const k = this.keys[p]!;
    const deadline = Date.now() + this.timeout;
    await this.ready(deadline);
    const ask = (args: (string | number)[]): Promise<unknown> =>
      this.conn.call(deadline, args, k.slot).catch((err: unknown) => {
        throw this.closed ? closedError() : unavailable(err);
      });
    return holds(ask, k, this.keys.length, marks);
  }

  close(): void {
    this.closed = true;
    for (const it of this.batcher.close()) it.reject(closedError());
    for (const items of this.inflight) for (const it of items) it.reject(closedError());
  }
}
