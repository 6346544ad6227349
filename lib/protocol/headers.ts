/** The response head of every stream (API.md §1). Frozen: never mutated per request. */
export const STREAM_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
});

/** Added for HTTP/1.x only: HTTP/2 forbids connection-specific headers. */
export const HTTP1_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  Connection: 'keep-alive',
});
