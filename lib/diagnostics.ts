import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingMessage } from 'node:http';

/**
 * Tracing hooks on `node:diagnostics_channel`, for OpenTelemetry and anything
 * else that listens. Nothing is built or published while nobody subscribes:
 * every helper checks `hasSubscribers` first, so the cost is one property read.
 *
 * | channel | kind | payload |
 * |---|---|---|
 * | `sse-relay:publish` | TracingChannel (`tracing:sse-relay:publish:start/end/asyncStart/asyncEnd/error`) | {@link PublishContext} |
 * | `sse-relay:stream:open` | channel | {@link StreamOpenMessage} |
 * | `sse-relay:stream:close` | channel | {@link StreamCloseMessage} |
 * | `sse-relay:stream:drop` | channel | {@link StreamDropMessage} |
 * | `sse-relay:replay` | channel | {@link ReplayMessage} |
 * | `sse-relay:reset` | channel | {@link ResetMessage} |
 */

/** The context of one `hub.publish()`; the TracingChannel adds `result` (the id) or `error`. */
export interface PublishContext {
  channel: string;
  /** The event name, if any. */
  event: string | undefined;
  /** The coalesce key, if any. */
  coalesce: string | undefined;
  /** Length of the serialised data, in UTF-16 code units. */
  size: number;
  /** Set by the TracingChannel when publish resolved: the event's id. */
  result?: string;
  /** Set by the TracingChannel when publish rejected. */
  error?: unknown;
}

/** Which factory a stream belongs to. */
export type StreamKind = 'hub' | 'sse';

export interface StreamOpenMessage {
  kind: StreamKind;
  req: IncomingMessage;
  /** The hub channels of the stream (empty for `sse()`). */
  channels: readonly string[];
  /** The `Last-Event-ID` it resumes from, if any. */
  lastEventId: string | undefined;
}

export interface StreamCloseMessage {
  kind: StreamKind;
  req: IncomingMessage;
  channels: readonly string[];
  /** How long the stream was open, ms. */
  durationMs: number;
}

export interface StreamDropMessage {
  kind: StreamKind;
  req: IncomingMessage;
  channels: readonly string[];
  /** Why it was cut. */
  reason: 'backlog' | 'drain' | 'error';
  /** Bytes queued or buffered when it was cut. */
  bufferedBytes: number;
}

export interface ReplayMessage {
  req: IncomingMessage;
  channels: readonly string[];
  lastEventId: string;
  /** Events replayed (0 when not complete). */
  events: number;
  /** False: the stream gets `reset` instead. */
  complete: boolean;
}

export interface ResetMessage {
  /** The request of the stream that got the reset (one message per stream). */
  req: IncomingMessage;
  channels: readonly string[];
  /** `resume`: a Last-Event-ID that could not be replayed; `broker`: the broker lost history or changed epoch. */
  cause: 'resume' | 'broker';
  /** The id the `reset` event carries. */
  id: string;
}

export const publishChannel = diagnosticsChannel.tracingChannel<PublishContext>('sse-relay:publish');
export const streamOpenChannel = diagnosticsChannel.channel('sse-relay:stream:open');
export const streamCloseChannel = diagnosticsChannel.channel('sse-relay:stream:close');
export const streamDropChannel = diagnosticsChannel.channel('sse-relay:stream:drop');
export const replayChannel = diagnosticsChannel.channel('sse-relay:replay');
export const resetChannel = diagnosticsChannel.channel('sse-relay:reset');

/** The names, for `diagnostics_channel.subscribe(name, fn)`. */
export const CHANNELS = Object.freeze({
  publish: 'sse-relay:publish',
  streamOpen: 'sse-relay:stream:open',
  streamClose: 'sse-relay:stream:close',
  streamDrop: 'sse-relay:stream:drop',
  replay: 'sse-relay:replay',
  reset: 'sse-relay:reset',
});

type Sub = { hasSubscribers: boolean };
const tc = publishChannel as unknown as { start: Sub; end: Sub; asyncStart: Sub; asyncEnd: Sub; error: Sub };

/** Whether anything listens to `sse-relay:publish` (TracingChannel.hasSubscribers is newer than Node 20.0). */
export function publishTraced(): boolean {
  return (
    tc.start.hasSubscribers ||
    tc.end.hasSubscribers ||
    tc.asyncStart.hasSubscribers ||
    tc.asyncEnd.hasSubscribers ||
    tc.error.hasSubscribers
  );
}

/**
 * Runs `fn` (the body of `hub.publish`) inside the `sse-relay:publish` trace
 * when someone listens, else calls it directly. `context` is built by the
 * caller only if `publishTraced()`, or passed as a function that builds it:
 *
 *   return tracePublish(() => ({ channel, event, coalesce, size: text.length }), () => this.doPublish(...));
 */
export function tracePublish<T>(context: PublishContext | (() => PublishContext), fn: () => Promise<T>): Promise<T> {
  if (!publishTraced()) return fn();
  const ctx = typeof context === 'function' ? context() : context;
  return publishChannel.tracePromise(fn, ctx as PublishContext & object);
}

// One-line hooks for the streaming code: each returns at once when nobody listens.

export function streamOpened(
  kind: StreamKind,
  req: IncomingMessage,
  channels: readonly string[],
  lastEventId: string | undefined,
): void {
  if (streamOpenChannel.hasSubscribers)
    streamOpenChannel.publish({ kind, req, channels, lastEventId } satisfies StreamOpenMessage);
}

export function streamClosed(
  kind: StreamKind,
  req: IncomingMessage,
  channels: readonly string[],
  openedAt: number,
): void {
  if (streamCloseChannel.hasSubscribers) {
    streamCloseChannel.publish({
      kind,
      req,
      channels,
      durationMs: performance.now() - openedAt,
    } satisfies StreamCloseMessage);
  }
}

export function streamDropped(
  kind: StreamKind,
  req: IncomingMessage,
  channels: readonly string[],
  reason: StreamDropMessage['reason'],
  bufferedBytes: number,
): void {
  if (streamDropChannel.hasSubscribers) {
    streamDropChannel.publish({ kind, req, channels, reason, bufferedBytes } satisfies StreamDropMessage);
  }
}

export function replayed(
  req: IncomingMessage,
  channels: readonly string[],
  lastEventId: string,
  events: number,
  complete: boolean,
): void {
  if (replayChannel.hasSubscribers)
    replayChannel.publish({ req, channels, lastEventId, events, complete } satisfies ReplayMessage);
}

export function resetSent(
  req: IncomingMessage,
  channels: readonly string[],
  cause: ResetMessage['cause'],
  id: string,
): void {
  if (resetChannel.hasSubscribers) resetChannel.publish({ req, channels, cause, id } satisfies ResetMessage);
}
