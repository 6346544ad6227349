import type { IncomingMessage, ServerResponse } from 'node:http';
import { Connection, Pool, SharedBatch, afterFlush, jitter } from './connection';
import { SseRelayError } from './errors';
import type { NextFunction } from './middleware';
import type { AnyEvents, EventMap, EventName, MessageData } from './events';
import { resolveOptions, type SseOptions } from './options';
import { checkFieldValue, dataToText, encodeData, encodeEvent, encodeRetry } from './protocol/encode';
import { MemoryBroker } from './brokers/memory';
import {
  formatId,
  parseId,
  type Broker,
  type BrokerEvent,
  type BrokerListener,
  type Position,
} from './brokers/broker';

/** A channel name: 1 to 200 of `A-Z a-z 0-9 _ . : -`. */
export const CHANNEL_NAME = /^[A-Za-z0-9_.:-]{1,200}$/;

/** Most channels one stream may ask for; more is a 400. */
const MAX_CHANNELS_PER_STREAM = 256;

export type Authorize = (req: IncomingMessage, channel: string) => boolean | Promise<boolean>;
export type SelectChannels = (req: IncomingMessage) => string | readonly string[] | Promise<string | readonly string[]>;
export type Handler = (req: IncomingMessage, res: ServerResponse, next: NextFunction) => void;

export interface HubOptions {
  /** Approves each channel for a request before anything is subscribed. Only `true` approves. Required. */
  authorize: Authorize;
  /** Where events go between publish and streams. Default: a new MemoryBroker (one process). */
  broker?: Broker;
  /** Events kept per channel for Last-Event-ID replay. Default 1000; 0 = none (every resume gets `reset`). */
  history?: number;
  /** Re-run `authorize` on open streams this often (ms); a no closes the stream. Default false (never). */
  reauthorizeEvery?: number | false;
  /** Options for the streams the hub opens (same as `sse()`). */
  sse?: SseOptions;
}

export interface PublishOptions<Name extends string = string> {
  /** The event name (`event:` field). */
  event?: Name;
  /**
   * Latest-wins key: for a client that is behind, a queued event with the same
   * key is replaced by this one instead of growing its backlog.
   */
  coalesce?: string;
}

export interface HubStats {
  /** Open streams of this hub. */
  connections: number;
  /** Channels with at least one open stream here. */
  channels: number;
  /** publish() calls resolved here. */
  published: number;
  /** Event frames written to streams (one per stream per event). */
  delivered: number;
  /** Streams cut for a limit (backlog, drain timeout). */
  dropped: number;
}

export interface Hub<E extends EventMap = AnyEvents> {
  /** A handler that subscribes the request to the channels `select` names (after validation and authorisation). */
  subscribe(select: SelectChannels): Handler;
  /** `GET /?channel=a&channel=b` and `GET /<channel>`; other methods go to `next()`. */
  router(): Handler;
  /** Publishes a named event to one channel; resolves with the event's id once the broker has it. */
  publish<K extends EventName<E>>(channel: string, data: E[K], options: PublishOptions<K> & { event: K }): Promise<string>;
  /** Publishes an event without a name (dispatched as `message`). */
  publish(channel: string, data: MessageData<E>, options?: PublishOptions<never>): Promise<string>;
  /** The id of the newest event of those channels (resume point for a page rendered now). */
  cursor(channels: string | readonly string[]): Promise<string>;
  stats(): HubStats;
  /** Sends `retry:` to every stream and ends it, stops timers, releases the broker. */
  close(): Promise<void>;
}

const RESET_EVENT = 'reset';

function sendStatus(res: ServerResponse, status: number, text: string, headers?: Record<string, string>): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...headers });
  res.end(text);
}

/** A stream the hub opened: its connection, channels and where it stands. */
class HubStream {
  /** Events that arrived while the stream was being set up; null once live. */
  buffer: BrokerEvent[] | null = [];
  /** Epoch of `lastSeq`; undefined until the first event or replay. */
  epoch: string | undefined = undefined;
  /** Newest seq written to this stream: anything at or below it is a duplicate. */
  lastSeq = 0;
  /** When re-authorisation is due (ms since epoch). */
  nextAuth = 0;
  authorizing = false;
  /** lastSeq at the last `reset` sent, -1 = none. */
  resetAt = -1;
  /** A broker reset that arrived while the stream was being set up. */
  pendingReset: Position | undefined = undefined;

  constructor(
    readonly conn: Connection,
    readonly channels: readonly string[],
  ) {}
}

function validateChannels(list: unknown): string[] | undefined {
  const input = typeof list === 'string' ? [list] : list;
  if (!Array.isArray(input) || input.length === 0 || input.length > MAX_CHANNELS_PER_STREAM) return undefined;
  const out: string[] = [];
  for (const name of input) {
    if (typeof name !== 'string' || !CHANNEL_NAME.test(name)) return undefined;
    if (!out.includes(name)) out.push(name);
  }
  return out;
}

function checkChannelArg(channel: unknown): string {
  if (typeof channel !== 'string' || !CHANNEL_NAME.test(channel)) {
    throw new TypeError(`sse-relay: a channel name must match ${CHANNEL_NAME}, got ${JSON.stringify(channel)}`);
  }
  return channel;
}

class HubImpl implements Hub, BrokerListener {
  private readonly broker: Broker;
  private readonly authorize: Authorize;
  private readonly history: number;
  private readonly reauthorizeEvery: number;
  private readonly pool: Pool;
  /** channel -> streams subscribed to it here. */
  private readonly channels = new Map<string, Set<HubStream>>();
  /** channel -> this turn's shared batch of frames (see onEvent). */
  private readonly batches = new Map<string, SharedBatch>();
  /** channel -> broker subscription in progress or done. */
  private readonly brokerSubs = new Map<string, Promise<void>>();
  private readonly streams = new Set<HubStream>();
  private reauthTimer: NodeJS.Timeout | undefined = undefined;
  private closed = false;
  private published = 0;
  private delivered = 0;

  constructor(options: HubOptions) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('sse-relay: createHub expects an options object with an authorize function');
    }
    if (typeof options.authorize !== 'function') {
      throw new TypeError('sse-relay: createHub option authorize must be a function (req, channel) => boolean');
    }
    const history = options.history ?? 1000;
    if (typeof history !== 'number' || !Number.isSafeInteger(history) || history < 0) {
      throw new RangeError(`sse-relay: createHub option history must be a non-negative integer, got ${String(history)}`);
    }
    const every = options.reauthorizeEvery ?? false;
    if (every !== false && (typeof every !== 'number' || !Number.isSafeInteger(every) || every <= 0)) {
      throw new RangeError(
        `sse-relay: createHub option reauthorizeEvery must be a positive integer (ms) or false, got ${String(every)}`,
      );
    }
    const broker = options.broker ?? new MemoryBroker();
    for (const method of ['publish', 'subscribe', 'unsubscribe', 'replay', 'close'] as const) {
      if (typeof (broker as unknown as Record<string, unknown>)[method] !== 'function') {
        throw new TypeError(`sse-relay: createHub option broker must implement Broker (missing ${method}())`);
      }
    }
    this.authorize = options.authorize;
    this.history = history;
    this.reauthorizeEvery = every === false ? 0 : every;
    this.broker = broker;
    this.pool = new Pool(resolveOptions(options.sse));
  }

  // ---- publishing ---------------------------------------------------------

  async publish(channel: string, data: unknown, options?: PublishOptions): Promise<string> {
    checkChannelArg(channel);
    let event: string | undefined;
    let coalesce: string | undefined;
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw new TypeError('sse-relay: publish options must be an object');
      if (options.event !== undefined) event = checkFieldValue('event', options.event);
      if (options.coalesce !== undefined) {
        if (typeof options.coalesce !== 'string' || options.coalesce === '') {
          throw new TypeError('sse-relay: publish option coalesce must be a non-empty string');
        }
        coalesce = options.coalesce;
      }
    }
    const text = dataToText(data, this.pool.opts.serialize);
    if (this.closed) throw new SseRelayError('ERR_HUB_CLOSED', 'sse-relay: the hub is closed');
    const ev = await this.broker.publish(channel, { data: text, event, coalesce }, this.history);
    this.published++;
    const flushed = afterFlush();
    if (flushed !== undefined) await flushed;
    return ev.id;
  }

  async cursor(channels: string | readonly string[]): Promise<string> {
    const list = typeof channels === 'string' ? [channels] : [...channels];
    for (const ch of list) checkChannelArg(ch);
    const { head } = await this.broker.replay(list, undefined);
    return formatId(head.epoch, head.seq);
  }

  // ---- delivery (BrokerListener) -----------------------------------------

  /**
   * Fan-out. The event is encoded once. Streams of this one channel alone
   * read this turn's shared batch of the channel (its frames are turned into
   * bytes once and the same Buffer goes to every socket); any other stream
   * gets the same frame string pushed to its own queue.
   */
  onEvent(ev: BrokerEvent): void {
    const set = this.channels.get(ev.channel);
    if (set === undefined) return;
    let frame: string | undefined;
    let batch: SharedBatch | undefined;
    let readers = 0;
    for (const s of set) {
      if (s.buffer !== null) {
        s.buffer.push(ev);
        continue;
      }
      if (!this.accept(s, ev)) continue;
      if (s.channels.length === 1 && ev.coalesce === undefined) {
        if (batch === undefined) batch = this.batchOf(ev.channel);
        if (s.conn.reads(batch) || s.conn.join(batch)) {
          readers++;
          continue;
        }
      }
      if (frame === undefined) frame = this.frame(ev);
      s.conn.push(frame, ev.coalesce);
    }
    if (readers > 0) batch!.append(frame ?? this.frame(ev), readers);
  }

  /** The channel's shared batch of this turn. */
  private batchOf(channel: string): SharedBatch {
    let batch = this.batches.get(channel);
    if (batch === undefined || !batch.open) {
      batch = new SharedBatch();
      this.batches.set(channel, batch);
    }
    return batch;
  }

  /**
   * The broker could not deliver everything of `channel` (history lost or
   * trimmed while its connection was down). Every stream on it gets `reset`
   * ("refetch your state") and continues from `head`; a stream still being
   * set up gets it before its first event.
   */
  onReset(channel: string, head: Position): void {
    const set = this.channels.get(channel);
    if (set === undefined) return;
    for (const s of set) {
      if (s.buffer !== null) s.pendingReset = head;
      else this.reset(s, head);
    }
  }

  /** Encodes an event once; every stream gets the same string. */
  private frame(ev: BrokerEvent): string {
    const head = ev.event === undefined ? 'id: ' + ev.id + '\n' : 'id: ' + ev.id + '\nevent: ' + ev.event + '\n';
    return head + encodeData(ev.data) + '\n';
  }

  /** Tells the page it missed events (refetch your state); later resumes start from `head`. */
  private reset(s: HubStream, head: Position): void {
    if (s.epoch !== head.epoch) {
      s.epoch = head.epoch;
      s.lastSeq = head.seq;
    } else if (head.seq > s.lastSeq) {
      s.lastSeq = head.seq;
    } else if (s.resetAt === s.lastSeq) {
      return; // already told at this position (one reset per stream, however many channels)
    }
    s.resetAt = s.lastSeq;
    s.conn.push(encodeEvent({ id: formatId(s.epoch, s.lastSeq), event: RESET_EVENT, data: '' }));
  }

  // ---- subscribing --------------------------------------------------------

  subscribe(select: SelectChannels): Handler {
    if (typeof select !== 'function') {
      throw new TypeError('sse-relay: hub.subscribe(select) expects a function (req) => channel | channel[]');
    }
    return (req, res, next) => {
      let selected: ReturnType<SelectChannels>;
      try {
        selected = select(req);
      } catch (err) {
        next(err);
        return;
      }
      if (selected !== null && typeof selected === 'object' && typeof (selected as Promise<unknown>).then === 'function') {
        (selected as Promise<string | readonly string[]>).then(
          (list) => this.handle(req, res, next, list),
          (err: unknown) => next(err),
        );
      } else {
        this.handle(req, res, next, selected as string | readonly string[]);
      }
    };
  }

  router(): Handler {
    return (req, res, next) => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        next();
        return;
      }
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const path = q === -1 ? url : url.slice(0, q);
      if (path === '/' || path === '') {
        const params = new URLSearchParams(q === -1 ? '' : url.slice(q + 1));
        this.handle(req, res, next, params.getAll('channel'));
        return;
      }
      const segment = path.slice(1);
      let channel: string;
      try {
        channel = decodeURIComponent(segment);
      } catch {
        sendStatus(res, 400, 'Bad Request');
        return;
      }
      if (segment.includes('/')) {
        sendStatus(res, 400, 'Bad Request');
        return;
      }
      this.handle(req, res, next, [channel]);
    };
  }

  private handle(req: IncomingMessage, res: ServerResponse, next: NextFunction, selected: unknown): void {
    this.setup(req, res, next, selected).catch((err: unknown) => {
      // Only a bug in sse-relay lands here: never leave the request hanging.
      if (!res.headersSent) next(err);
      else if (!res.writableEnded) res.destroy();
    });
  }

  /** validate (400) -> authorise (403) -> admit (limits) -> subscribe -> replay -> open -> live. */
  private async setup(req: IncomingMessage, res: ServerResponse, next: NextFunction, selected: unknown): Promise<void> {
    const channels = validateChannels(selected);
    if (channels === undefined) {
      sendStatus(res, 400, 'Bad Request');
      return;
    }
    // A foreign origin is refused before authorize runs.
    if (!this.pool.originOk(req, res)) return;
    for (const channel of channels) {
      let ok: boolean;
      try {
        ok = (await this.authorize(req, channel)) === true;
      } catch (err) {
        next(err);
        return;
      }
      if (!ok) {
        sendStatus(res, 403, 'Forbidden');
        return;
      }
    }
    if (res.destroyed || res.writableEnded) return; // the client left while we authorised
    const conn = new Connection(req, res, this.pool);
    res.sse = conn;
    if (req.method === 'HEAD') {
      if (conn.admit()) {
        conn.start();
        conn.end('');
      }
      return;
    }
    if (this.closed) {
      // Shutting down: a transient condition, so 200 + retry, never an error status.
      if (conn.admit()) {
        conn.start();
        conn.end(encodeRetry(jitter(1000, 4000)));
      }
      return;
    }
    if (!conn.admit()) return;
    const stream = new HubStream(conn, channels);
    this.attach(stream);
    conn.onEnd = () => this.detach(stream);
    const lastEventId = conn.lastEventId;
    try {
      await Promise.all(channels.map((ch) => this.ensureBrokerSub(ch)));
      if (conn.closed) return;
      let replay: readonly BrokerEvent[] = [];
      if (lastEventId !== undefined) {
        const after = this.history > 0 ? parseId(lastEventId) : undefined;
        const result = await this.broker.replay(channels, after);
        if (conn.closed) return;
        if (after !== undefined && result.complete) {
          replay = result.events;
          stream.epoch = after.epoch;
          stream.lastSeq = after.seq;
        } else {
          conn.start();
          this.reset(stream, result.head);
        }
      }
      conn.start();
      if (conn.closed) return;
      for (const ev of replay) this.deliverBuffered(stream, ev);
      if (stream.pendingReset !== undefined) this.reset(stream, stream.pendingReset);
      const buffered = stream.buffer!;
      stream.buffer = null;
      for (const ev of buffered) this.deliverBuffered(stream, ev);
      if (this.reauthorizeEvery > 0) {
        stream.nextAuth = Date.now() + this.reauthorizeEvery;
        this.startReauth();
      }
    } catch {
      // Broker unreachable: never a non-200 (EventSource would give up for good).
      if (conn.closed) return;
      conn.start();
      conn.end(encodeRetry(jitter(1000, 4000)));
    }
  }

  private deliverBuffered(s: HubStream, ev: BrokerEvent): void {
    if (this.accept(s, ev)) s.conn.push(this.frame(ev), ev.coalesce);
  }

  /**
   * Whether `ev` is new for stream `s` (then it counts as delivered). An event
   * of another epoch first tells the page with a reset: the broker lost history.
   */
  private accept(s: HubStream, ev: BrokerEvent): boolean {
    if (s.epoch !== ev.epoch) {
      if (s.epoch !== undefined) this.reset(s, { epoch: ev.epoch, seq: ev.seq - 1 });
      else s.epoch = ev.epoch;
    }
    if (ev.seq <= s.lastSeq) return false;
    s.lastSeq = ev.seq;
    this.delivered++;
    return true;
  }

  private attach(s: HubStream): void {
    this.streams.add(s);
    for (const ch of s.channels) {
      let set = this.channels.get(ch);
      if (set === undefined) {
        set = new Set();
        this.channels.set(ch, set);
      }
      set.add(s);
    }
  }

  private detach(s: HubStream): void {
    if (!this.streams.delete(s)) return;
    for (const ch of s.channels) {
      const set = this.channels.get(ch);
      if (set === undefined) continue;
      set.delete(s);
      if (set.size === 0) {
        this.channels.delete(ch);
        this.batches.delete(ch);
        const sub = this.brokerSubs.get(ch);
        this.brokerSubs.delete(ch);
        if (sub !== undefined) {
          sub.then(
            () => (this.channels.has(ch) || this.brokerSubs.has(ch) ? undefined : this.broker.unsubscribe(ch, this)),
            () => undefined,
          ).catch(() => undefined);
        }
      }
    }
    if (this.streams.size === 0) this.stopReauth();
  }

  private ensureBrokerSub(channel: string): Promise<void> {
    let sub = this.brokerSubs.get(channel);
    if (sub === undefined) {
      sub = this.broker.subscribe(channel, this);
      this.brokerSubs.set(channel, sub);
      // A subscription that completes after hub.close() is released at once.
      sub.then(() => (this.closed ? this.broker.unsubscribe(channel, this) : undefined)).catch(() => undefined);
      sub.catch(() => {
        if (this.brokerSubs.get(channel) === sub) this.brokerSubs.delete(channel);
      });
    }
    return sub;
  }

  // ---- re-authorisation ---------------------------------------------------

  private startReauth(): void {
    if (this.reauthTimer !== undefined) return;
    const period = Math.max(10, Math.floor(this.reauthorizeEvery / 4));
    this.reauthTimer = setInterval(() => this.reauthorizeDue(), period);
    this.reauthTimer.unref();
  }

  private stopReauth(): void {
    if (this.reauthTimer !== undefined) clearInterval(this.reauthTimer);
    this.reauthTimer = undefined;
  }

  private reauthorizeDue(): void {
    const now = Date.now();
    for (const s of this.streams) {
      if (s.buffer !== null || s.authorizing || s.nextAuth > now) continue;
      s.authorizing = true;
      this.reauthorize(s).then(
        (ok) => {
          s.authorizing = false;
          s.nextAuth = Date.now() + this.reauthorizeEvery;
          if (!ok) s.conn.close();
        },
        () => {
          s.authorizing = false;
          s.conn.close(); // fail closed
        },
      );
    }
  }

  private async reauthorize(s: HubStream): Promise<boolean> {
    for (const ch of s.channels) {
      if (s.conn.closed) return true;
      if ((await this.authorize(s.conn.req, ch)) !== true) return false;
    }
    return true;
  }

  // ---- lifecycle ----------------------------------------------------------

  stats(): HubStats {
    return {
      connections: this.pool.open.size,
      channels: this.channels.size,
      published: this.published,
      delivered: this.delivered,
      dropped: this.pool.dropped,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopReauth();
    this.pool.closeAll();
    const subs = [...this.brokerSubs.keys()];
    this.brokerSubs.clear();
    await Promise.allSettled(subs.map((ch) => this.broker.unsubscribe(ch, this)));
    await this.broker.close();
  }
}

/** Creates a hub: authorised channel subscriptions, fan-out through a broker, history and resume. */
export function createHub<E extends EventMap = AnyEvents>(options: HubOptions): Hub<E> {
  return new HubImpl(options) as Hub<E>;
}
