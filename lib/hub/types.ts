/** The hub's public types: options, publish options, stats, and the Hub interface. */
import type { Broker } from '../brokers/broker';
import type { AnyEvents, EventMap, EventName, MessageData } from '../events';
import type { Handler } from '../http';
import type { RefusedCounts } from '../metrics/counters';
import type { PublisherHandler, PublisherOptions } from '../publisher';
import type { SseOptions } from '../stream/options';
import type { Authorize } from './reauthorize';
import type { SelectChannels } from './routes';

export interface HubOptions {
  /** Approves each channel for a request before anything is subscribed. Only `true` approves. Required. */
  authorize: Authorize;
  /** Where events go between publish and streams. Default: a new MemoryBroker (one process). */
  broker?: Broker;
  /** Events kept per channel for Last-Event-ID replay. Default 1000; 0 = none (every resume gets `reset`). */
  history?: number;
  /** Re-run `authorize` on open streams this often (ms); a no closes the stream. Default false (never). */
  reauthorizeEvery?: number | false;
  /** How long (ms) one re-authorisation may take; no answer by then closes the stream (fail closed). Default 10000. */
  reauthorizeTimeout?: number;
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
  /**
   * Deduplication key: publishing again with a key already used (within 10
   * minutes) stores nothing and resolves with the first event's id. Use it to
   * retry safely after `ERR_BROKER_UNAVAILABLE`.
   */
  idempotencyKey?: string;
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
  /** Streams cut, by reason. */
  droppedBy: { backlog: number; drain: number; error: number };
  /**
   * Requests turned away, by status: 400 (bad channels), 403 (origin, authorize), 429 (per key),
   * 503 (200 + `retry:`: full, shutting down, broker unreachable).
   */
  refused: RefusedCounts;
  /** Resumes with Last-Event-ID: replayed completely, or answered with `reset`. */
  replays: { complete: number; reset: number };
  /** `reset` events sent (resumes and broker resets). */
  resets: number;
  /** Frames replaced by a newer one with the same coalescing key while a client was behind. */
  coalesced: number;
  /** Events a broker handed over that broke the Broker contract's rules, dropped. */
  invalid: number;
}

export interface Hub<E extends EventMap = AnyEvents> {
  /** A handler that subscribes the request to the channels `select` names (after validation and authorisation). */
  subscribe(select: SelectChannels): Handler;
  /** `GET /?channel=a&channel=b` and `GET /<channel>`; other methods go to `next()`. */
  router(): Handler;
  /** Publishes a named event to one channel; resolves with the event's id once the broker has it. */
  publish<K extends EventName<E>>(
    channel: string,
    data: E[K],
    options: PublishOptions<K> & { event: K },
  ): Promise<string>;
  /** Publishes an event without a name (dispatched as `message`). */
  publish(channel: string, data: MessageData<E>, options?: PublishOptions<never>): Promise<string>;
  /**
   * A handler for `POST` with `{ channel, data, event?, coalesce? }` (JSON or
   * form-encoded) that publishes on this hub after `options.authorize(req,
   * channel)` says a strict `true`: 201 + `{"id": "<id>"}` (see the README).
   */
  publisher(options: PublisherOptions): PublisherHandler;
  /** The id of the newest event of those channels (resume point for a page rendered now). */
  cursor(channels: string | readonly string[]): Promise<string>;
  stats(): HubStats;
  /** Sends `retry:` to every stream and ends it, stops timers, releases the broker. */
  close(): Promise<void>;
}
