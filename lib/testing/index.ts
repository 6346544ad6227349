/**
 * `sse-relay/testing`: a test kit for Server-Sent Events endpoints (any
 * server, not only sse-relay's). No dependency beyond Node.
 *
 * - {@link createParser} / {@link parseStream}: the spec-exact stream parser a browser runs.
 * - {@link openStream}: a real HTTP client that records raw bytes and parsed events as they arrive.
 * - {@link collectEvents}: open, wait for events, close.
 * - {@link expectEvents}: compare event sequences with a readable diff.
 * - {@link listen} / {@link closeServer}: run an app on 127.0.0.1 and shut it down with its open streams.
 * - {@link runBrokerContract}: the behavioural suite every Broker must pass, for your own broker (jest/vitest globals).
 *
 * @packageDocumentation
 */
export { createParser, parseStream, type ParsedEvent, type SseParser } from './parse';
export { openStream, type StreamTarget, type OpenStreamOptions, type TestStream, type EventPredicate } from './client';
export { collectEvents, expectEvents, type CollectUntil, type ExpectedEvent } from './expect';
export { listen, closeServer } from './server';
export { runBrokerContract, Recorder } from './broker-contract';
/** How many shared stream clocks run in this process (0 once every stream ended): a leak check for tests. */
export { runningClocks } from '../stream/ticker';
