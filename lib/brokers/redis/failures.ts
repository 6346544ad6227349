/**
 * What a failed Redis operation becomes: the broker's errors (closed,
 * unavailable with whether the outcome is known) and how to read ioredis'
 * ones (a reply error from Redis, a refused connection).
 */
import { SseRelayError } from '../../errors';

/** A reply we cannot use (garbage stored in Redis): definite, not worth asking again. */
export class BadReply extends Error {}

export function closedError(): SseRelayError {
  return new SseRelayError('ERR_BROKER_CLOSED', 'sse-relay: the broker is closed');
}

export function unavailable(reason: unknown, outcome: 'not-published' | 'unknown' = 'not-published'): SseRelayError {
  if (reason instanceof SseRelayError) return reason;
  const text = reason instanceof Error ? reason.message : String(reason);
  const err = new SseRelayError('ERR_BROKER_UNAVAILABLE', `sse-relay: Redis is unavailable (${text})`, {
    cause: reason,
    outcome,
  });
  return err;
}

/** A reply error from Redis itself (the command ran, or was refused by Redis before it ran). */
export function isReplyError(err: unknown): err is Error {
  return err instanceof Error && err.name === 'ReplyError';
}

/** Redis refused the connection (nothing listens there): operations fail at once, not after their timeout. */
export function refusedError(err: unknown): boolean {
  const e = err as { code?: string; lastNodeError?: { code?: string } } | undefined;
  return e?.code === 'ECONNREFUSED' || e?.lastNodeError?.code === 'ECONNREFUSED';
}

/** `p`, or ERR_BROKER_UNAVAILABLE (`why`, with `outcome`) at `deadline` (ms since the epoch), whichever comes first. */
export function within<T>(
  p: Promise<T>,
  deadline: number,
  why: string,
  outcome: 'not-published' | 'unknown' = 'not-published',
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(unavailable(why, outcome)), Math.max(0, deadline - Date.now()));
    timer.unref();
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
