/**
 * RedisBroker: the Broker contract over one Redis, for many processes.
 *
 * Key layout (all under `prefix`, default `sse-relay:`):
 *
 *   <prefix>meta               hash { epoch, seq }: the epoch and the global seq in ONE key, so
 *                              they can never be separated (a lost key means a new epoch)
 *   <prefix>dropped            hash channel -> seq of the newest event trimmed out of its history
 *   <prefix>h:<channel>        stream: the channel's history, entry id `<seq>-0`,
 *                              fields data / event / coalesce
 *   <prefix>c:<channel>        pub/sub channel: live events, `{"e":epoch,"s":"seq","d":data,"v":event,"c":coalesce}`
 *
 * `publish` is one Lua script (epoch, seq, XADD, trim, dropped mark, PUBLISH), so the
 * order of the history and the order of live delivery are the same global order.
 * `replay` is one Lua script too: one atomic snapshot of head, dropped marks and streams.
 *
 * Connections: the command connection (the caller's client, or one we open from `url`)
 * and ONE subscriber connection per broker (a `duplicate()`, opened on the first
 * subscribe), whatever the number of channels and listeners. A Redis channel is
 * SUBSCRIBEd when its first local listener arrives and UNSUBSCRIBEd after the last
 * leaves; all of that goes through one serial queue, so concurrent subscribe and
 * unsubscribe calls always leave Redis in the state the listeners ask for.
 *
 * Catch-up: ioredis reconnects by itself; we re-subscribe ourselves (autoResubscribe off, so
 * the set of Redis subscriptions is exactly ours), then take one snapshot of every subscribed
 * channel after the newest seq this broker delivered (live events that arrive meanwhile are
 * buffered), deliver the missing events in seq order, then the buffer, then go live. A channel
 * whose history no longer reaches back that far, or a new epoch (Redis lost its data), gets
 * `onReset` instead of a silent gap.
 *
 * Use Redis with `maxmemory-policy noeviction` (or no maxmemory): an evicted history key is
 * a gap nobody can see. Redis Cluster is not supported (one slot would hold every key anyway).
 */
import { createHash } from 'node:crypto';
import type { Redis as IORedisClient, RedisOptions } from 'ioredis';
import { SseRelayError } from '../errors';
import {
  formatId,
  newEpoch,
  type Broker,
  type BrokerEvent,
  type BrokerListener,
  type Position,
  type PublishInput,
  type ReplayResult,
} from './broker';

/** The part of an ioredis client that the option `redis` must have (an ioredis `Redis` instance fits). */
export interface RedisClientLike {
  readonly status: string;
  duplicate(override?: object): unknown;
}

export interface RedisBrokerOptions {
  /** Redis URL for the connections the broker opens, e.g. `redis://127.0.0.1:6379`. Ignored when `redis` is given. Default: ioredis' default (localhost:6379). */
  url?: string;
  /**
   * Your ioredis client. The broker runs its commands on it and `duplicate()`s it for
   * its one subscriber connection; `close()` never quits it. Default: a client opened from `url`.
   */
  redis?: RedisClientLike;
  /** Prefix of every key and pub/sub channel the broker uses. Default `'sse-relay:'`. */
  prefix?: string;
  /**
   * How long (ms) one operation may wait for a connection and its reply before it rejects with
   * `ERR_BROKER_UNAVAILABLE` (nothing queues forever while Redis is unreachable). Default 5000.
   */
  commandTimeout?: number;
}

export interface RedisBrokerStats {
  /** Redis channels this broker is subscribed to. */
  subscribed: number;
  /** Local listeners, over all channels. */
  listeners: number;
  /** Messages and history entries read from Redis that were malformed or out of order, and dropped. */
  invalid: number;
  /** Live messages dropped because their seq was already delivered (after a catch-up). */
  duplicates: number;
  /** Catch-ups done after a lost connection or a new epoch. */
  recoveries: number;
  /** `onReset` calls made (per listener and channel). */
  resets: number;
}

type IORedisCtor = new (...args: unknown[]) => IORedisClient;

const EPOCH = /^[A-Za-z0-9_-]{1,32}$/;
const SEQ = /^(?:0|[1-9][0-9]{0,15})$/;
const ENTRY_ID = /^([1-9][0-9]{0,15})-0$/;
const FIELD_BREAK = /[\r\n\0]/;
const DEFAULT_TIMEOUT = 5000;
/** Delay before a failed catch-up is tried again while the subscriber connection stays up. */
const RECOVERY_RETRY_MS = 1000;

// ---------------------------------------------------------------------------
// Lua

const PUBLISH_LUA = `
-- KEYS[1] meta {epoch, seq}, KEYS[2] dropped marks, KEYS[3] the channel's stream
-- ARGV[1] a fresh epoch, ARGV[2] channel, ARGV[3] history, ARGV[4] pub/sub channel,
-- ARGV[5] data, ARGV[6] event ('' = none, else '=' .. name), ARGV[7] coalesce (same)
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = string.format('%d', redis.call('HINCRBY', KEYS[1], 'seq', 1))
local history = tonumber(ARGV[3])
local msg = {e = epoch, s = seq, d = ARGV[5]}
local fields = {'data', ARGV[5]}
if ARGV[6] ~= '' then
  msg.v = string.sub(ARGV[6], 2)
  fields[#fields + 1] = 'event'
  fields[#fields + 1] = msg.v
end
if ARGV[7] ~= '' then
  msg.c = string.sub(ARGV[7], 2)
  fields[#fields + 1] = 'coalesce'
  fields[#fields + 1] = msg.c
end
if history > 0 then
  local added = redis.pcall('XADD', KEYS[3], seq .. '-0', unpack(fields))
  if type(added) == 'table' and added.err then
    -- not a stream of ours (ids ahead of ours, another type): start it again, and record
    -- that nothing of this channel before this event can be replayed
    redis.call('DEL', KEYS[3])
    redis.call('XADD', KEYS[3], seq .. '-0', unpack(fields))
    redis.call('HSET', KEYS[2], ARGV[2], string.format('%d', tonumber(seq) - 1))
  end
  local excess = redis.call('XLEN', KEYS[3]) - history
  if excess > 0 then
    local gone = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', excess)
    redis.call('XTRIM', KEYS[3], 'MAXLEN', history)
    redis.call('HSET', KEYS[2], ARGV[2], string.match(gone[#gone][1], '^%d+'))
  end
else
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[2], ARGV[2], seq)
end
redis.call('PUBLISH', ARGV[4], cjson.encode(msg))
return {epoch, seq}
`;

const SNAPSHOT_LUA = `
-- KEYS[1] meta {epoch, seq}, KEYS[2] dropped marks, KEYS[2 + i] stream of channel i
-- ARGV[1] a fresh epoch, ARGV[2] expected epoch ('' = head only), ARGV[3] mode:
--   'strict': stop at the first channel that cannot be complete (replay)
--   'rebase': every channel; on another epoch read every channel from 0 (catch-up)
-- ARGV[2 + 2i] channel i, ARGV[3 + 2i] the seq to read it after
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local head = redis.call('HGET', KEYS[1], 'seq') or '0'
local out = {epoch, head}
if ARGV[2] == '' then return out end
local strict = ARGV[3] == 'strict'
local rebase = false
if ARGV[2] ~= epoch then
  if strict then return out end
  rebase = true
end
local headn = tonumber(head)
for i = 1, #KEYS - 2 do
  local after = ARGV[3 + 2 * i]
  if rebase then after = '0' end
  local dropped = redis.call('HGET', KEYS[2], ARGV[2 + 2 * i]) or '0'
  out[#out + 1] = dropped
  if tonumber(after) > headn or tonumber(dropped) > tonumber(after) then
    if strict then return {epoch, head} end
    out[#out + 1] = {}
  else
    out[#out + 1] = redis.call('XRANGE', KEYS[2 + i], '(' .. after .. '-0', '+')
  end
end
return out
`;

interface Script {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

const PUBLISH_SCRIPT = script(PUBLISH_LUA);
const SNAPSHOT_SCRIPT = script(SNAPSHOT_LUA);

// ---------------------------------------------------------------------------
// helpers

function noop(): void {}

function loadIORedis(): IORedisCtor {
  let mod: { default?: IORedisCtor; Redis?: IORedisCtor };
  try {
    // Optional peer dependency: loaded only when a RedisBroker opens its own connection.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require('ioredis');
  } catch (err) {
    if ((err as NodeJS.ErrnoException | undefined)?.code === 'MODULE_NOT_FOUND') {
      throw new SseRelayError(
        'ERR_REDIS_MISSING',
        "sse-relay: RedisBroker needs the 'ioredis' package (version 5 or later): npm install ioredis",
        { cause: err },
      );
    }
    throw err;
  }
  const ctor = mod.Redis ?? mod.default ?? (mod as unknown as IORedisCtor);
  return ctor;
}

function closedError(): SseRelayError {
  return new SseRelayError('ERR_BROKER_CLOSED', 'sse-relay: the broker is closed');
}

function unavailable(reason: unknown): SseRelayError {
  if (reason instanceof SseRelayError) return reason;
  const text = reason instanceof Error ? reason.message : String(reason);
  return new SseRelayError('ERR_BROKER_UNAVAILABLE', `sse-relay: Redis is unavailable (${text})`, { cause: reason });
}

function isSeq(value: unknown): value is string {
  return typeof value === 'string' && SEQ.test(value) && Number.isSafeInteger(Number(value));
}

function isOptionalField(value: unknown): value is string | undefined {
  return value === undefined || (typeof value === 'string' && !FIELD_BREAK.test(value));
}

function isOptionalKey(value: unknown): value is string | undefined {
  return value === undefined || (typeof value === 'string' && value !== '');
}

/** Reads the head `[epoch, seq]` every script returns; garbage in Redis is an error, never an id. */
function parseHead(reply: unknown): { head: Position; rest: unknown[] } {
  if (!Array.isArray(reply) || reply.length < 2) throw unavailable('unexpected reply from Redis');
  const [epoch, seq] = reply as unknown[];
  if (typeof epoch !== 'string' || !EPOCH.test(epoch) || !isSeq(seq)) {
    throw unavailable('invalid epoch or seq stored in Redis');
  }
  return { head: { epoch, seq: Number(seq) }, rest: reply.slice(2) };
}

/** One listener call; a throwing listener breaks the contract but must not break delivery to the others. */
function call(fn: () => void): void {
  try {
    fn();
  } catch {
    // ignored: listeners must not throw
  }
}

/** One channel's local side. */
class Chan {
  readonly listeners = new Set<BrokerListener>();
  /** Redis acknowledged SUBSCRIBE on the current subscriber connection. */
  subscribed = false;
  /** Has a floor: subscribed at least once since its listeners arrived. */
  armed = false;
  /**
   * The head read just before the first SUBSCRIBE: every event of this channel published
   * after the subscription became active has a greater seq. Catch-up reads after
   * max(floor, last delivered).
   */
  floor = 0;

  constructor(
    readonly name: string,
    readonly key: string,
    readonly topic: string,
  ) {}
}

const LIVE = 0; // deliver as messages arrive
const WAITING = 1; // connection lost or epoch changed: drop messages, a catch-up will read them from history
const SNAPSHOT = 2; // catch-up snapshot in flight: buffer messages

/**
 * A broker over Redis (ioredis 5): history in one stream per channel, live events over
 * pub/sub, one subscriber connection per broker, catch-up after a lost connection.
 */
export class RedisBroker implements Broker {
  private readonly cmd: IORedisClient;
  private readonly ownsCmd: boolean;
  private sub: IORedisClient | undefined = undefined;
  private readonly prefix: string;
  private readonly timeout: number;
  private readonly metaKey: string;
  private readonly droppedKey: string;
  private readonly chans = new Map<string, Chan>();
  private readonly byTopic = new Map<string, Chan>();
  private readonly abort = new AbortController();
  /** Rejecters of operations in flight, called by close(). A Set, not one AbortSignal listener per command. */
  private readonly aborters = new Set<() => void>();
  /** The epoch a publish or snapshot creates when Redis has none; renewed once it was used. */
  private spareEpoch = newEpoch();
  private closing: Promise<void> | undefined = undefined;

  /** Epoch of `last` and of every floor; undefined until the first head is read. */
  private epoch: string | undefined = undefined;
  /** Newest seq delivered (or known delivered-or-reset) to the listeners of this broker. */
  private last = 0;
  private phase = LIVE;
  private buffer: { chan: Chan; event: BrokerEvent }[] = [];
  private needRecovery = false;
  /** Counts subscriber connection losses, so a catch-up that raced one is not trusted. */
  private generation = 0;
  private retryTimer: NodeJS.Timeout | undefined = undefined;

  /** Serial queue of subscription passes (SUBSCRIBE/UNSUBSCRIBE/catch-up). */
  private chain: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined = undefined;

  private invalid = 0;
  private duplicates = 0;
  private recoveries = 0;
  private resets = 0;

  private readonly onSubMessage = (topic: string, message: string): void => this.message(topic, message);
  private readonly onSubClose = (): void => this.connectionLost();
  private readonly onSubReady = (): void => {
    this.lastError = undefined;
    this.connectionReady();
  };
  private lastError: unknown = undefined;
  private readonly onError = (err: unknown): void => {
    this.lastError = err;
  };

  constructor(options: RedisBrokerOptions = {}) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('sse-relay: RedisBroker expects an options object { url?, redis?, prefix? }');
    }
    const { url, redis, prefix = 'sse-relay:', commandTimeout = DEFAULT_TIMEOUT } = options;
    if (url !== undefined && typeof url !== 'string') {
      throw new TypeError(`sse-relay: RedisBroker option url must be a string, got ${typeof url}`);
    }
    if (typeof prefix !== 'string') {
      throw new TypeError(`sse-relay: RedisBroker option prefix must be a string, got ${typeof prefix}`);
    }
    if (typeof commandTimeout !== 'number' || !Number.isSafeInteger(commandTimeout) || commandTimeout <= 0) {
      throw new RangeError(
        `sse-relay: RedisBroker option commandTimeout must be a positive integer (ms), got ${String(commandTimeout)}`,
      );
    }
    this.prefix = prefix;
    this.timeout = commandTimeout;
    this.metaKey = prefix + 'meta';
    this.droppedKey = prefix + 'dropped';
    if (redis !== undefined) {
      const client = redis as Partial<IORedisClient> | null;
      if (
        client === null ||
        typeof client !== 'object' ||
        typeof client.duplicate !== 'function' ||
        typeof client.evalsha !== 'function'
      ) {
        throw new TypeError('sse-relay: RedisBroker option redis must be an ioredis client (new Redis(...))');
      }
      this.cmd = redis as IORedisClient;
      this.ownsCmd = false;
    } else {
      const Redis = loadIORedis();
      const opts: RedisOptions = {
        // Never queue while Redis is unreachable: operations wait (bounded) for the connection.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        // A publish that may have run must not run twice after a reconnect.
        autoResendUnfulfilledCommands: false,
        connectionName: 'sse-relay',
      };
      this.cmd = url === undefined ? new Redis(opts) : new Redis(url, opts);
      this.cmd.on('error', this.onError);
      this.ownsCmd = true;
    }
  }

  // ---- connection plumbing --------------------------------------------------

  /** Resolves once `client` is ready, within `ms`; rejects when closed or out of time. */
  private waitReady(client: IORedisClient, ms: number): Promise<void> {
    if (this.abort.signal.aborted) return Promise.reject(closedError());
    if (client.status === 'ready') return Promise.resolve();
    if (client.status === 'end') return Promise.reject(unavailable(this.reason('the connection was closed')));
    if (client.status === 'wait') client.connect().catch(noop);
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        clearTimeout(timer);
        client.off('ready', onReady);
        client.off('end', onEnd);
        this.aborters.delete(onAbort);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onReady = (): void => done();
      const onEnd = (): void => done(unavailable(this.reason('the connection was closed')));
      const onAbort = (): void => done(closedError());
      const timer = setTimeout(() => done(unavailable(this.reason('not connected'))), Math.max(0, ms));
      timer.unref();
      client.once('ready', onReady);
      client.once('end', onEnd);
      this.aborters.add(onAbort);
    });
  }

  private reason(fallback: string): string {
    const err = this.lastError;
    return err instanceof Error && err.message ? `${fallback}: ${err.message}` : fallback;
  }

  /** `promise`, or ERR_BROKER_UNAVAILABLE after `ms`, or ERR_BROKER_CLOSED on close. */
  private timed<T>(promise: Promise<T>, ms: number, onTimeout?: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const signal = this.abort.signal;
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(closedError());
      };
      const timer = setTimeout(() => {
        this.aborters.delete(onAbort);
        onTimeout?.();
        reject(unavailable(`no reply within ${this.timeout} ms`));
      }, Math.max(0, ms));
      timer.unref();
      this.aborters.add(onAbort);
      promise.then(
        (value) => {
          clearTimeout(timer);
          this.aborters.delete(onAbort);
          resolve(value);
        },
        (err: unknown) => {
          clearTimeout(timer);
          this.aborters.delete(onAbort);
          reject(signal.aborted ? closedError() : unavailable(err));
        },
      );
    });
  }

  /** Runs a script on the command connection: waits for it (bounded), EVALSHA, EVAL on NOSCRIPT. */
  private async run(s: Script, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    if (this.abort.signal.aborted) throw closedError();
    const deadline = Date.now() + this.timeout;
    await this.waitReady(this.cmd, this.timeout);
    const attempt = async (): Promise<unknown> => {
      try {
        return await this.cmd.evalsha(s.sha, keys.length, ...keys, ...args);
      } catch (err) {
        if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
        return this.cmd.eval(s.source, keys.length, ...keys, ...args);
      }
    };
    return this.timed(attempt(), deadline - Date.now());
  }

  /** The subscriber connection, opened on first use. */
  private subscriber(): IORedisClient {
    if (this.sub !== undefined) return this.sub;
    const opts: RedisOptions = {
      // We re-subscribe ourselves after a reconnect, then catch up from history.
      autoResubscribe: false,
      autoResendUnfulfilledCommands: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      lazyConnect: false,
      connectionName: 'sse-relay:sub',
    };
    const sub = this.cmd.duplicate(opts);
    sub.on('error', this.onError);
    sub.on('message', this.onSubMessage);
    sub.on('close', this.onSubClose);
    sub.on('ready', this.onSubReady);
    this.sub = sub;
    return sub;
  }

  // ---- publish / replay ---------------------------------------------------

  async publish(channel: string, input: PublishInput, history: number): Promise<BrokerEvent> {
    if (this.abort.signal.aborted) throw closedError();
    if (typeof channel !== 'string' || channel === '') {
      throw new TypeError('sse-relay: RedisBroker.publish channel must be a non-empty string');
    }
    if (input === null || typeof input !== 'object' || typeof input.data !== 'string') {
      throw new TypeError('sse-relay: RedisBroker.publish input.data must be a string');
    }
    if (!isOptionalField(input.event)) {
      throw new TypeError('sse-relay: RedisBroker.publish input.event must be a string without CR, LF or NUL');
    }
    if (!isOptionalKey(input.coalesce)) {
      throw new TypeError('sse-relay: RedisBroker.publish input.coalesce must be a non-empty string');
    }
    if (typeof history !== 'number' || !Number.isSafeInteger(history) || history < 0) {
      throw new RangeError(`sse-relay: RedisBroker.publish history must be a non-negative integer, got ${String(history)}`);
    }
    const p = this.prefix;
    const reply = await this.run(
      PUBLISH_SCRIPT,
      [this.metaKey, this.droppedKey, p + 'h:' + channel],
      [
        this.spareEpoch,
        channel,
        history,
        p + 'c:' + channel,
        input.data,
        input.event === undefined ? '' : '=' + input.event,
        input.coalesce === undefined ? '' : '=' + input.coalesce,
      ],
    );
    const { head } = parseHead(reply);
    this.usedEpoch(head.epoch);
    return {
      channel,
      epoch: head.epoch,
      seq: head.seq,
      id: formatId(head.epoch, head.seq),
      data: input.data,
      event: input.event,
      coalesce: input.coalesce,
    };
  }

  /** Our spare epoch became Redis' epoch: keep a new one ready for the next time Redis has none. */
  private usedEpoch(epoch: string): void {
    if (epoch === this.spareEpoch) this.spareEpoch = newEpoch();
  }

  /**
   * One atomic snapshot: head, and per channel its dropped mark and the entries after its
   * `after` seq. `expected` undefined: head only.
   */
  private async snapshot(
    expected: string | undefined,
    mode: 'strict' | 'rebase',
    channels: readonly { name: string; after: number }[],
  ): Promise<{ head: Position; channels: { dropped: number; entries: unknown }[] | undefined }> {
    const keys = [this.metaKey, this.droppedKey];
    const args: (string | number)[] = [this.spareEpoch, expected ?? '', mode];
    for (const { name, after } of channels) {
      keys.push(this.prefix + 'h:' + name);
      args.push(name, String(after));
    }
    const { head, rest } = parseHead(await this.run(SNAPSHOT_SCRIPT, keys, args));
    this.usedEpoch(head.epoch);
    if (expected === undefined || rest.length !== channels.length * 2) return { head, channels: undefined };
    const out: { dropped: number; entries: unknown }[] = [];
    for (let i = 0; i < rest.length; i += 2) {
      const dropped = rest[i];
      if (!isSeq(dropped)) throw unavailable('invalid history mark stored in Redis');
      out.push({ dropped: Number(dropped), entries: rest[i + 1] });
    }
    return { head, channels: out };
  }

  /** Stream entries to events, validated: anything malformed is counted and skipped. */
  private entries(channel: string, epoch: string, after: number, head: number, entries: unknown, out: BrokerEvent[]): void {
    if (!Array.isArray(entries)) {
      this.invalid++;
      return;
    }
    for (const entry of entries as unknown[]) {
      const ev = this.entry(channel, epoch, entry);
      if (ev === undefined || ev.seq <= after || ev.seq > head) {
        this.invalid++;
        continue;
      }
      out.push(ev);
    }
  }

  private entry(channel: string, epoch: string, entry: unknown): BrokerEvent | undefined {
    if (!Array.isArray(entry) || entry.length !== 2) return undefined;
    const [id, fields] = entry as unknown[];
    const m = typeof id === 'string' ? ENTRY_ID.exec(id) : null;
    if (m === null || !Array.isArray(fields) || fields.length % 2 !== 0) return undefined;
    const seq = Number(m[1]);
    if (!Number.isSafeInteger(seq)) return undefined;
    let data: unknown;
    let event: unknown;
    let coalesce: unknown;
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i];
      const value = fields[i + 1];
      if (name === 'data') data = value;
      else if (name === 'event') event = value;
      else if (name === 'coalesce') coalesce = value;
    }
    if (typeof data !== 'string' || !isOptionalField(event) || !isOptionalKey(coalesce)) return undefined;
    return { channel, epoch, seq, id: formatId(epoch, seq), data, event, coalesce };
  }

  async replay(channels: readonly string[], after: Position | undefined): Promise<ReplayResult> {
    if (this.abort.signal.aborted) throw closedError();
    if (!Array.isArray(channels) || channels.some((c) => typeof c !== 'string' || c === '')) {
      throw new TypeError('sse-relay: RedisBroker.replay channels must be an array of non-empty strings');
    }
    const list = [...new Set(channels)];
    if (after === undefined) {
      const { head } = await this.snapshot(undefined, 'strict', []);
      return { complete: true, events: [], head };
    }
    const snap = await this.snapshot(
      after.epoch,
      'strict',
      list.map((name) => ({ name, after: after.seq })),
    );
    const { head } = snap;
    if (snap.channels === undefined || head.epoch !== after.epoch || after.seq > head.seq) {
      return { complete: false, events: [], head };
    }
    const events: BrokerEvent[] = [];
    for (let i = 0; i < list.length; i++) {
      const ch = snap.channels[i]!;
      if (ch.dropped > after.seq) return { complete: false, events: [], head };
      this.entries(list[i]!, head.epoch, after.seq, head.seq, ch.entries, events);
    }
    if (list.length > 1) events.sort((a, b) => a.seq - b.seq);
    return { complete: true, events, head };
  }

  // ---- subscriptions ------------------------------------------------------

  async subscribe(channel: string, listener: BrokerListener): Promise<void> {
    if (this.abort.signal.aborted) throw closedError();
    if (typeof channel !== 'string' || channel === '') {
      throw new TypeError('sse-relay: RedisBroker.subscribe channel must be a non-empty string');
    }
    if (
      listener === null ||
      typeof listener !== 'object' ||
      typeof listener.onEvent !== 'function' ||
      typeof listener.onReset !== 'function'
    ) {
      throw new TypeError('sse-relay: RedisBroker.subscribe listener must have onEvent() and onReset()');
    }
    let chan = this.chans.get(channel);
    if (chan === undefined) {
      chan = new Chan(channel, this.prefix + 'h:' + channel, this.prefix + 'c:' + channel);
      this.chans.set(channel, chan);
      this.byTopic.set(chan.topic, chan);
    }
    const added = !chan.listeners.has(listener);
    chan.listeners.add(listener);
    try {
      await this.sync();
    } catch (err) {
      if (added) {
        chan.listeners.delete(listener);
        if (chan.listeners.size === 0) this.sync().catch(noop);
      }
      throw this.abort.signal.aborted ? closedError() : unavailable(err);
    }
    if (this.abort.signal.aborted) throw closedError();
  }

  async unsubscribe(channel: string, listener: BrokerListener): Promise<void> {
    const chan = this.chans.get(channel);
    if (chan === undefined || !chan.listeners.delete(listener)) return;
    if (chan.listeners.size > 0 || this.abort.signal.aborted) return;
    // Never rejects: a failed UNSUBSCRIBE resets the subscriber connection, which drops it anyway.
    await this.sync().catch(noop);
  }

  /** Queues a pass that brings Redis in line with the listeners; passes run one at a time. */
  private sync(): Promise<void> {
    if (this.queued !== undefined) return this.queued;
    const pass = this.chain.then(() => {
      this.queued = undefined;
      return this.pass();
    });
    this.queued = pass;
    this.chain = pass.then(noop, noop);
    return pass;
  }

  private async pass(): Promise<void> {
    if (this.abort.signal.aborted) throw closedError();
    await this.reconcile();
    if (this.needRecovery && this.sub?.status === 'ready') {
      try {
        await this.recover();
      } catch {
        this.scheduleRecovery();
      }
    }
  }

  /** SUBSCRIBE channels that gained listeners, UNSUBSCRIBE those that lost them. */
  private async reconcile(): Promise<void> {
    const want: Chan[] = [];
    const drop: Chan[] = [];
    for (const chan of this.chans.values()) {
      if (chan.listeners.size > 0) {
        if (!chan.subscribed) want.push(chan);
      } else if (chan.subscribed) {
        drop.push(chan);
      } else {
        this.forget(chan);
      }
    }
    if (want.length === 0 && drop.length === 0) return;
    const sub = this.subscriber();
    const deadline = Date.now() + this.timeout;
    await this.waitReady(sub, this.timeout);
    const generation = this.generation;
    if (drop.length > 0) {
      await this.subCall(sub, sub.unsubscribe(...drop.map((c) => c.topic)), deadline);
      for (const chan of drop) {
        chan.subscribed = false;
        chan.armed = false; // a later SUBSCRIBE needs a fresh floor
        if (chan.listeners.size === 0) this.forget(chan);
      }
    }
    if (want.length > 0) {
      // The head before SUBSCRIBE: each channel's catch-up floor.
      const { head } = await this.snapshot(undefined, 'strict', []);
      if (this.epoch === undefined) this.epoch = head.epoch;
      else if (head.epoch !== this.epoch) this.startRecovery();
      await this.subCall(sub, sub.subscribe(...want.map((c) => c.topic)), deadline);
      if (generation !== this.generation) throw unavailable('the subscriber connection was lost');
      for (const chan of want) {
        chan.subscribed = true;
        if (!chan.armed) {
          chan.armed = true;
          chan.floor = head.epoch === this.epoch ? head.seq : 0;
        }
      }
    }
  }

  /**
   * A command on the subscriber connection: rejects at once when the connection drops (its
   * reply will never come: nothing is resent), and resets the connection when it times out.
   */
  private subCall<T>(sub: IORedisClient, command: Promise<T>, deadline: number): Promise<T> {
    let onClose = noop;
    const lost = new Promise<never>((_, reject) => {
      onClose = () => reject(unavailable('the subscriber connection was lost'));
      sub.once('close', onClose);
    });
    return this.timed(Promise.race([command, lost]), deadline - Date.now(), () => this.resetSubscriber()).finally(
      () => sub.off('close', onClose),
    );
  }

  private forget(chan: Chan): void {
    if (this.chans.get(chan.name) === chan) this.chans.delete(chan.name);
    if (this.byTopic.get(chan.topic) === chan) this.byTopic.delete(chan.topic);
  }

  /** A subscriber command timed out: its state is unknown, so start the connection again. */
  private resetSubscriber(): void {
    if (this.sub !== undefined && !this.abort.signal.aborted) this.sub.disconnect(true);
  }

  // ---- live delivery and catch-up -----------------------------------------

  private message(topic: string, raw: string): void {
    const chan = this.byTopic.get(topic);
    if (chan === undefined) return; // a channel we just left
    const event = this.decode(chan.name, raw);
    if (event === undefined) {
      this.invalid++;
      return;
    }
    if (this.phase === SNAPSHOT) {
      this.buffer.push({ chan, event });
      return;
    }
    if (this.phase === WAITING) return; // the catch-up reads it from history
    if (this.epoch === undefined) this.epoch = event.epoch;
    else if (event.epoch !== this.epoch) {
      // Redis lost its data under us (FLUSHALL, a restart we did not see): catch up in the new epoch.
      this.startRecovery();
      return;
    }
    if (event.seq <= this.last) {
      this.duplicates++; // already delivered by a catch-up (or forged): never twice, never backwards
      return;
    }
    this.last = event.seq;
    this.deliver(chan, event);
  }

  /** A pub/sub payload to an event; undefined when anything is off (anyone can PUBLISH). */
  private decode(channel: string, raw: string): BrokerEvent | undefined {
    let msg: unknown;
    try {
      msg = JSON.parse(raw);
    } catch {
      return undefined;
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return undefined;
    const { e, s, d, v, c } = msg as Record<string, unknown>;
    if (typeof e !== 'string' || !EPOCH.test(e) || !isSeq(s) || s === '0' || typeof d !== 'string') return undefined;
    if (!isOptionalField(v) || !isOptionalKey(c)) return undefined;
    const seq = Number(s);
    return { channel, epoch: e, seq, id: formatId(e, seq), data: d, event: v, coalesce: c };
  }

  private deliver(chan: Chan, event: BrokerEvent): void {
    for (const listener of chan.listeners) call(() => listener.onEvent(event));
  }

  private reset(chan: Chan, head: Position): void {
    for (const listener of chan.listeners) {
      this.resets++;
      call(() => listener.onReset(chan.name, head));
    }
  }

  private connectionLost(): void {
    this.generation++;
    let lost = false;
    for (const chan of this.chans.values()) {
      if (chan.subscribed) {
        chan.subscribed = false;
        lost = true;
      }
    }
    if (lost) this.startRecovery();
    else if (this.phase === SNAPSHOT) this.phase = WAITING;
  }

  private connectionReady(): void {
    if (this.needRecovery || [...this.chans.values()].some((c) => c.listeners.size > 0 && !c.subscribed)) {
      this.sync().catch(() => this.scheduleRecovery());
    }
  }

  private startRecovery(): void {
    this.needRecovery = true;
    this.phase = WAITING;
    this.buffer = [];
    if (this.sub?.status === 'ready') this.sync().catch(() => this.scheduleRecovery());
  }

  private scheduleRecovery(): void {
    if (this.retryTimer !== undefined || this.abort.signal.aborted || !this.needRecovery) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.needRecovery && this.sub?.status === 'ready') this.sync().catch(() => this.scheduleRecovery());
    }, RECOVERY_RETRY_MS);
    this.retryTimer.unref();
  }

  /**
   * Catch-up: one snapshot of every subscribed channel after what it has seen, then the
   * live messages that arrived meanwhile, merged in seq order without duplicates.
   */
  private async recover(): Promise<void> {
    const generation = this.generation;
    const chans = [...this.chans.values()].filter((c) => c.subscribed && c.armed && c.listeners.size > 0);
    const afters = chans.map((c) => Math.max(c.floor, this.last));
    // Messages that arrived before this point are in the snapshot (or behind a reset): only
    // the ones arriving while it is in flight need keeping.
    this.buffer = [];
    this.phase = SNAPSHOT;
    let snap: Awaited<ReturnType<RedisBroker['snapshot']>>;
    try {
      snap = await this.snapshot(
        this.epoch ?? '',
        'rebase',
        chans.map((c, i) => ({ name: c.name, after: afters[i]! })),
      );
    } catch (err) {
      if (this.phase === SNAPSHOT) this.phase = WAITING;
      this.buffer = [];
      throw err;
    }
    // From here on everything is synchronous: no message can slip between the snapshot and live.
    if (generation !== this.generation || this.abort.signal.aborted || this.phase !== SNAPSHOT) {
      throw unavailable('the subscriber connection was lost during catch-up');
    }
    const { head } = snap;
    const rebased = this.epoch !== undefined && this.epoch !== head.epoch;
    const events: BrokerEvent[] = [];
    /** Per channel, buffered events at or below this seq are already covered. */
    const covered = new Map<Chan, number>();
    if (snap.channels !== undefined) {
      for (let i = 0; i < chans.length; i++) {
        const chan = chans[i]!;
        const after = rebased ? 0 : afters[i]!;
        const { dropped, entries } = snap.channels[i]!;
        if (dropped > after || after > head.seq) {
          // History no longer reaches back far enough: say so, continue from the head.
          this.reset(chan, head);
          covered.set(chan, head.seq);
        } else {
          if (rebased) this.reset(chan, { epoch: head.epoch, seq: 0 });
          this.entries(chan.name, head.epoch, after, head.seq, entries, events);
          covered.set(chan, after);
        }
      }
    }
    let epochAgain = false;
    for (const { chan, event } of this.buffer) {
      const floor = covered.get(chan);
      if (floor === undefined) continue;
      if (event.epoch !== head.epoch) {
        epochAgain = true;
        continue;
      }
      if (event.seq > floor) events.push(event);
    }
    events.sort((a, b) => a.seq - b.seq);
    this.epoch = head.epoch;
    if (rebased) this.last = 0;
    this.buffer = [];
    this.phase = LIVE;
    this.needRecovery = false;
    this.recoveries++;
    let prev = 0;
    for (const event of events) {
      if (event.seq === prev) continue; // in the snapshot and in the buffer
      prev = event.seq;
      const chan = this.chans.get(event.channel);
      if (chan !== undefined) this.deliver(chan, event);
    }
    this.last = Math.max(this.last, head.seq, prev);
    for (const chan of chans) chan.floor = Math.max(chan.floor, this.last);
    if (epochAgain) this.startRecovery();
  }

  // ---- lifecycle ----------------------------------------------------------

  /** Counters for monitoring and tests. */
  stats(): RedisBrokerStats {
    let subscribed = 0;
    let listeners = 0;
    for (const chan of this.chans.values()) {
      if (chan.subscribed) subscribed++;
      listeners += chan.listeners.size;
    }
    return {
      subscribed,
      listeners,
      invalid: this.invalid,
      duplicates: this.duplicates,
      recoveries: this.recoveries, resets: this.resets };
  }

  close(): Promise<void> {
    if (this.closing === undefined) this.closing = this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.abort.abort();
    for (const reject of [...this.aborters]) reject();
    this.aborters.clear();
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    for (const chan of this.chans.values()) chan.listeners.clear();
    this.chans.clear();
    this.byTopic.clear();
    this.buffer = [];
    const sub = this.sub;
    if (sub !== undefined) {
      sub.off('message', this.onSubMessage);
      sub.off('close', this.onSubClose);
      sub.off('ready', this.onSubReady);
      await this.quit(sub); // its subscriptions end with it
      sub.off('error', this.onError);
    }
    if (this.ownsCmd) {
      await this.quit(this.cmd);
      this.cmd.off('error', this.onError);
    }
    await this.chain;
  }

  /** QUIT when connected (bounded), else disconnect; resolves once nothing of it is left open. */
  private async quit(client: IORedisClient): Promise<void> {
    if (client.status === 'end') return;
    if (client.status === 'reconnecting' || client.status === 'close') {
      // No socket, only ioredis' reconnect timer, which disconnect() clears ('end' never comes).
      client.disconnect();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const ended = new Promise<void>((resolve) => {
      client.once('end', () => resolve());
      timer = setTimeout(() => {
        client.disconnect();
        resolve();
      }, 2000);
    });
    if (client.status === 'ready') client.quit().catch(() => client.disconnect());
    else client.disconnect();
    await ended;
    clearTimeout(timer);
  }
}
