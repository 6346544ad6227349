/**
 * The one error class sse-relay throws or rejects with, apart from the
 * `TypeError`/`RangeError` that bad arguments get. `code` is machine-readable
 * and stable; `message` is for people and may change. `ERR_BROKER_LAYOUT`: a
 * RedisBroker whose `partitions` differs from the layout recorded under its
 * prefix (a configuration error: not worth retrying; see the README).
 */
export type SseRelayErrorCode =
  'ERR_BROKER_CLOSED' | 'ERR_BROKER_LAYOUT' | 'ERR_BROKER_UNAVAILABLE' | 'ERR_HUB_CLOSED' | 'ERR_REDIS_MISSING';

/**
 * For a failed publish (`ERR_BROKER_UNAVAILABLE`): `'not-published'` = the event
 * was not stored and never will be; `'unknown'` = it may have been stored (a reply
 * lost with the connection): retry with the same `idempotencyKey` to find out
 * without publishing twice.
 */
export type PublishOutcome = 'not-published' | 'unknown';

export class SseRelayError extends Error {
  readonly code: SseRelayErrorCode;
  /** Set on errors of a publish: whether the event may have been stored. */
  readonly outcome: PublishOutcome | undefined;

  constructor(code: SseRelayErrorCode, message: string, options?: { cause?: unknown; outcome?: PublishOutcome }) {
    super(message, options);
    this.name = 'SseRelayError';
    this.code = code;
    this.outcome = options?.outcome;
  }
}
