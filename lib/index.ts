export { sse, type SseMiddleware, type NextFunction } from './middleware';
export type { SseStream, SendOptions } from './connection';
export type { SseOptions } from './options';
export {
  encodeEvent,
  encodeComment,
  encodeRetry,
  type EventFields,
  type Serializer,
} from './protocol/encode';
export { SseRelayError, type SseRelayErrorCode } from './errors';
