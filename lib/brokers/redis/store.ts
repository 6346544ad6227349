/**
 * Calls into the Function library: publishes (batched per partition per
 * event-loop turn, at most once) and reads (heads, replays, catch-ups, fences).
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
import { BadReply, closedError, isReplyError, unavailable, type CommandConnection } from './client';
import { parseBatch, parseRead, type ReadReply } from './codec';
import type { PartitionKeys } from './partitions';
import { EXPIRED, FN_BATCH, FN_READ } from './scripts';

const MAX_EVENTS_PER_CALL = 512;
/**
 * Group commit, per Redis node: while Redis is reachable, a node has at most ROUNDS rounds of
 * calls in flight (a round: the calls one turn sends it, one per partition it serves, in one
 * write), and what is published meanwhile waits for the next round, so calls grow with the
 * load (one publish alone still leaves at once). A single node gets two rounds, so Redis runs
 * one while this process handles the replies of the other: with none in flight it is sent half
 * of what waits (when that is at least MIN_EVENTS_PER_CALL) and the rest a turn later. Several
 * nodes get one round each: they overlap with one another, and calls stay larger.
 */
const ROUNDS_ONE_NODE = 2;
const ROUNDS_PER_NODE = 1;
const MIN_EVENTS_PER_CALL = 16;
const MAX_BYTES_PER_CALL = 4 * 1024 * 1024;
const RETRY_DELAY_MS = 50;
/** Bytes before each packed event: key index (u16), data and options lengths (u32 each). */
const HEADER = 10;
/** Call ids: a random prefix per process and a counter (unique without a random draw per call). */
const CALL_PREFIX = randomBytes(12).toString('base64url');
let callCounter = 0;

interface Pending {
  readonly channel: string;
  readonly input: PublishInput;
  readonly history: number;
  readonly deadline: number;
  readonly resolve: (event: BrokerEvent) => void;
  readonly reject: (err: unknown) => void;
}

export interface StoreHooks {
  /** The newest position the broker has seen in partition `p` (the rewind floor). */
  floor(p: number): Position | undefined;
  /** Redis acknowledged `seq` (the newest of a call) in `epoch` of partition `p`. */
  seen(p: number, epoch: string, seq: number): void;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

function bounded<T>(promise: Promise<T>, deadline: number, outcome: 'not-published' | 'unknown'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(unavailable('no reply in time', outcome)), Math.max(0, deadline - Date.now()));
    timer.unref();
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** How many of the first publishes waiting fit in one call (events and bytes). */
function callSize(q: readonly Pending[]): number {
  const size = Math.min(MAX_EVENTS_PER_CALL, q.length);
  let end = 0;
  let bytes = 0;
  while (end < size && (end === 0 || bytes + q[end]!.input.data.length <= MAX_BYTES_PER_CALL)) {
    bytes += q[end]!.input.data.length;
    end++;
  }
  return end;
}

/** A node's rounds in flight. */
interface Node {
  running: number;
}

/** The calls one turn sent to one node. */
interface Round {
  readonly node: Node;
  calls: number;
}

export class Store {
  /** Per partition: its publishes waiting for a call. */
  private readonly queues: Pending[][];
  /** Per partition: the second half of a split batch, sent as its own call on the next turn. */
  private readonly halves: (Pending[] | undefined)[];
  private readonly nodes = new Map<string, Node>();
  private scheduled: NodeJS.Immediate | undefined = undefined;
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
  ) {
    this.queues = keys.map(() => []);
    this.halves = keys.map(() => undefined);
  }

  publish(p: number, channel: string, input: PublishInput, history: number): Promise<BrokerEvent> {
    if (this.closed) return Promise.reject(closedError());
    return new Promise<BrokerEvent>((resolve, reject) => {
      this.queues[p]!.push({ channel, input, history, deadline: Date.now() + this.timeout, resolve, reject });
      this.scheduled ??= setImmediate(this.flush);
    });
  }

  private readonly flush = (): void => {
    this.scheduled = undefined;
    this.conn.corked(this.flushLanes);
  };

  private readonly flushLanes = (): void => {
    // Not reachable: no limit (each call waits for the connection within its own deadline, in order).
    const capped = this.conn.ready && this.conn.loaded;
    const names = this.queues.map((_, p) => this.conn.nodeOf(this.keys[p]!.slot));
    const rounds = names.length > 1 && new Set(names).size > 1 ? ROUNDS_PER_NODE : ROUNDS_ONE_NODE;
    const sent = new Map<Node, Round>();
    let again = false;
    for (let p = 0; p < this.queues.length; p++) {
      const q = this.queues[p]!;
      if (q.length === 0 && this.halves[p] === undefined) continue;
      let node = this.nodes.get(names[p]!);
      if (node === undefined) this.nodes.set(names[p]!, (node = { running: 0 }));
      let round = sent.get(node);
      if (round === undefined) {
        if (capped && node.running >= rounds) continue;
        node.running++;
        sent.set(node, (round = { node, calls: 0 }));
      }
      let items = this.halves[p];
      if (items !== undefined) this.halves[p] = undefined;
      else if (capped && rounds > 1 && node.running === 1 && q.length >= 2 * MIN_EVENTS_PER_CALL) {
        items = q.splice(0, Math.min(callSize(q), Math.ceil(q.length / 2)));
        this.halves[p] = q.splice(0, callSize(q));
      } else items = q.splice(0, callSize(q));
      round.calls++;
      void this.run(p, round, items);
      if (q.length > 0 || this.halves[p] !== undefined) again = true;
    }
    if (again) this.scheduled ??= setImmediate(this.flush);
  };

  /** One batch call, retried with the same call id while its deadline allows. */
  private async run(p: number, round: Round, items: Pending[]): Promise<void> {
    this.inflight.add(items);
    const k = this.keys[p]!;
    const callId = CALL_PREFIX + (callCounter++).toString(36);
    const deadline = items[0]!.deadline; // the oldest: items are in publish order
    const keys: string[] = [k.base, k.dropped, k.call(callId)];
    const history = items[0]!.history;
    const events = this.pack(k, items, keys, history);
    let sent = false;
    let failure: unknown;
    try {
      for (;;) {
        try {
          // Connected and loaded: the call is sent within this turn (see CommandConnection.corked).
          if (!this.conn.ready || !this.conn.loaded) await this.ready(deadline);
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
          sent = true;
          const reply = await this.conn.call(deadline, args);
          const parsed = parseBatch(reply, items.length);
          if (typeof parsed === 'string') throw new BadReply(parsed);
          this.settle(p, items, parsed.epoch, parsed.seqs);
          return;
        } catch (err) {
          // the call may have started an epoch with the spare without our seeing it: never offer it again
          this.spare = newEpoch();
          if (this.closed) throw closedError();
          if (err instanceof BadReply) throw unavailable(err.message, 'unknown');
          if (isReplyError(err)) {
            if (/function not found/i.test(err.message) && Date.now() < deadline) {
              this.conn.libraryLost();
              continue;
            }
            // Redis refused the call before it ran (EXPIRED, BUSY, READONLY, OOM, ...): nothing stored.
            throw unavailable(
              err.message.startsWith(EXPIRED) ? 'the deadline passed before Redis ran the call' : err,
              'not-published',
            );
          }
          const outcome = sent ? 'unknown' : ((err as SseRelayError).outcome ?? 'not-published');
          if (outcome === 'unknown' && Date.now() + RETRY_DELAY_MS < deadline) {
            // The reply was lost with the connection: ask again under the same call id.
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
      if (--round.calls === 0) {
        round.node.running--;
        if (!this.closed) this.scheduled ??= setImmediate(this.flush);
      }
    }
    for (const it of items) it.reject(failure);
  }

  /**
   * The events of one call as the batch function's packed argument (see scripts.ts): one
   * Buffer written in place, rather than three arguments per event for the client to
   * concatenate. Adds each stream (and caller key mark) to `keys` once.
   */
  private pack(k: PartitionKeys, items: readonly Pending[], keys: string[], history: number): Buffer {
    const index = new Map<string, number>();
    const kis = new Array<number>(items.length);
    const opts = new Array<string>(items.length);
    let bytes = 0;
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const stream = k.channel(it.channel);
      let ki = index.get(stream);
      if (ki === undefined) {
        keys.push(stream);
        index.set(stream, (ki = keys.length));
      }
      const { event, coalesce, idempotencyKey, data } = it.input;
      let opt = '';
      if (event !== undefined) opt += 'e' + event + '\n';
      if (coalesce !== undefined) opt += 'c' + coalesce + '\n';
      if (it.history !== history) opt += 'h' + it.history + '\n';
      if (idempotencyKey !== undefined) {
        keys.push(k.userKey(it.channel, idempotencyKey));
        opt += 'm' + keys.length + '\n';
      }
      kis[i] = ki;
      opts[i] = opt;
      bytes += HEADER + Buffer.byteLength(data) + (opt === '' ? 0 : Buffer.byteLength(opt));
    }
    const out = Buffer.allocUnsafe(bytes);
    let at = 0;
    for (let i = 0; i < items.length; i++) {
      const opt = opts[i]!;
      const dl = out.write(items[i]!.input.data, at + HEADER);
      const ol = opt === '' ? 0 : out.write(opt, at + HEADER + dl);
      out.writeUInt16LE(kis[i]!, at);
      out.writeUInt32LE(dl, at + 2);
      out.writeUInt32LE(ol, at + 6);
      at += HEADER + dl + ol;
    }
    return out;
  }

  /** Connected and the library loaded (at once when both hold), within the deadline. */
  private ready(deadline: number): Promise<void> {
    if (this.conn.ready && this.conn.loaded) return Promise.resolve();
    return bounded(
      this.conn.waitReady(deadline - Date.now()).then(() => this.conn.ensureLibrary()),
      deadline,
      'not-published',
    );
  }

  /** The spare epoch became a partition's epoch: keep a fresh one for the next time one is needed. */
  private used(epoch: string): void {
    if (epoch === this.spare) this.spare = newEpoch();
  }

  private settle(p: number, items: Pending[], epoch: string, seqs: number[]): void {
    this.used(epoch);
    const partitions = this.keys.length;
    let max = 0;
    for (const s of seqs) if (s > max) max = s;
    this.hooks.seen(p, epoch, max);
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
  async read(
    p: number,
    channels: readonly { name: string; after: number }[],
    expected: string,
    floor?: Position,
    count = 0,
  ): Promise<ReadReply> {
    if (this.closed) throw closedError();
    const k = this.keys[p]!;
    const deadline = Date.now() + this.timeout;
    const f = floor ?? this.hooks.floor(p);
    const args: (string | number)[] = ['FCALL', FN_READ, 2 + channels.length, k.base, k.dropped];
    for (const c of channels) args.push(k.channel(c.name));
    args.push(f?.epoch ?? '', f?.seq ?? 0, this.spare, expected, count);
    for (const c of channels) args.push(c.after);
    for (let attempt = 0; ; attempt++) {
      await this.ready(deadline);
      let reply: unknown;
      try {
        reply = await this.conn.call(deadline, args);
      } catch (err) {
        this.spare = newEpoch();
        if (isReplyError(err) && /function not found/i.test(err.message) && attempt < 3) {
          this.conn.libraryLost();
          continue;
        }
        throw this.closed ? closedError() : unavailable(err);
      }
      const parsed = parseRead(reply, channels.length);
      if (typeof parsed === 'string') throw unavailable(parsed);
      this.used(parsed.epoch);
      this.hooks.seen(p, parsed.epoch, parsed.head);
      return parsed;
    }
  }

  close(): void {
    this.closed = true;
    if (this.scheduled !== undefined) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    for (const q of this.queues) for (const it of q.splice(0)) it.reject(closedError());
    for (const [p, half] of this.halves.entries()) {
      this.halves[p] = undefined;
      for (const it of half ?? []) it.reject(closedError());
    }
    for (const items of this.inflight) for (const it of items) it.reject(closedError());
  }
}
