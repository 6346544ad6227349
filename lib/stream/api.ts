/** What `res.sse` is, as users see it: the stream API and the options of one send. */
import type { AnyEvents, EventMap, EventName, MessageData } from '../events';

/** Options of one `send()`. */
export interface SendOptions<Name extends string = string> {
  /** The event name (`event:` field). Without it the browser dispatches a `message` event. */
  event?: Name;
  /** The event id (`id:` field); the browser sends it back as `Last-Event-ID` when it reconnects. */
  id?: string | number;
}

/**
 * What `res.sse` is: one client's event stream. The stream opens lazily on
 * the first call (or `open()`); every method is safe to call after the stream
 * closed (it returns `false`). With a catalog (`SseStream<Events>`), event
 * names and payloads are type-checked.
 */
export interface SseStream<E extends EventMap = AnyEvents> {
  /** Sends one named event. `false` when the stream is closed or the write was queued behind backpressure. */
  send<K extends EventName<E>>(data: E[K], options: SendOptions<K> & { event: K }): boolean;
  /** Sends one event without a name (the browser dispatches `message`). */
  send(data: MessageData<E>, options?: SendOptions<never>): boolean;
  /** Sends a comment frame (`: text`), which the browser ignores. */
  comment(text?: string): boolean;
  /** Sets the browser's reconnection delay (`retry: ms`). */
  retry(ms: number): boolean;
  /** Opens the stream now (idempotent). `false` when it could not open (refused origin, limit) or is closed. */
  open(): boolean;
  /** Ends the response (idempotent). Before the stream opened it answers 204, which stops EventSource from reconnecting. */
  close(): void;
  /** The `Last-Event-ID` header, else the `lastEventId` query parameter. */
  readonly lastEventId: string | undefined;
  /** True once the client left or `close()` ran. */
  readonly closed: boolean;
  /** Aborted when the stream ends, for any reason. */
  readonly signal: AbortSignal;
}
