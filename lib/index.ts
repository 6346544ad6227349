export { sse, type SseMiddleware, type NextFunction } from './middleware';
export type { EventMap, AnyEvents, EventName, MessageData } from './events';
export type { SseStream, SendOptions } from './stream/connection';
export type { SseOptions } from './stream/options';
export { encodeEvent, encodeComment, encodeRetry, type EventFields, type Serializer } from './protocol/encode';
export { SseRelayError, type SseRelayErrorCode } from './errors';
export {
  createHub,
  CHANNEL_NAME,
  type Hub,
  type HubOptions,
  type HubStats,
  type PublishOptions,
  type Authorize,
  type SelectChannels,
  type Handler,
} from './hub/index';
export { MemoryBroker, type MemoryBrokerOptions } from './brokers/memory';
export {
  RedisBroker,
  type RedisBrokerOptions,
  type RedisBrokerStats,
  type RedisClientLike,
  type ClusterNode,
} from './brokers/redis';
export type {
  Broker,
  BrokerEvent,
  BrokerListener,
  PartitionPosition,
  Position,
  PublishInput,
  ReplayResult,
} from './brokers/broker';
export {
  createPublisher,
  type PublishFn,
  type PublisherHandler,
  type PublisherOptions,
  type PublishAuthorize,
  type PublishDecision,
} from './publisher';

// ---- operations: metrics and tracing hooks (lib/metrics, lib/diagnostics) ----
export {
  metricsHandler,
  metricsText,
  metricsSnapshot,
  registerPromMetrics,
  METRIC_NAMES,
  type MetricsHandlerOptions,
  type MetricsSnapshot,
  type PromRegistryLike,
  type PromClientLike,
} from './metrics';
export {
  CHANNELS as DIAGNOSTICS_CHANNELS,
  type PublishContext,
  type StreamOpenMessage,
  type StreamCloseMessage,
  type StreamDropMessage,
  type ReplayMessage,
  type ResetMessage,
} from './diagnostics';
