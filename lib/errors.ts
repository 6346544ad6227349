/**
 * The one error class sse-relay throws or rejects with, apart from the
 * `TypeError`/`RangeError` that bad arguments get. `code` is machine-readable
 * and stable; `message` is for people and may change.
 */
export type SseRelayErrorCode =
  | 'ERR_BROKER_CLOSED'
  | 'ERR_BROKER_UNAVAILABLE'
  | 'ERR_HUB_CLOSED'
  | 'ERR_REDIS_MISSING';

export class SseRelayError extends Error {
  readonly code: SseRelayErrorCode;

  constructor(code: SseRelayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SseRelayError';
    this.code = code;
  }
}
