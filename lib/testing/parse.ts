/**
 * A spec-exact, incremental Server-Sent Events parser: the algorithm a
 * browser's `EventSource` runs (WHATWG HTML §9.2.6 "Parsing an event stream"
 * and §9.2.7 "Interpreting an event stream"), for tests. No I/O.
 *
 * - One U+FEFF (BOM) at the very start of the stream is ignored; anywhere else it is text.
 * - Lines end with CRLF, a lone CR or a lone LF, even when a CRLF is split across chunks.
 * - `field: value`: exactly one space after the colon is stripped; a line
 *   without a colon is a field with an empty value; a line starting with a
 *   colon is a comment; field names are case-sensitive; unknown fields are ignored.
 * - `retry` is used only if its value is all ASCII digits; an `id` value
 *   containing NUL is ignored; the last event id persists across events until an `id` field changes it.
 * - A blank line dispatches: nothing when no `data` field was seen; one
 *   trailing LF is removed from the data; the event type defaults to `message`.
 * - An event not terminated by a blank line when the stream ends is never dispatched.
 */

/** One dispatched event, as `EventSource` would hand it to the page. */
export interface ParsedEvent {
  /** The event type: the last `event:` field, or `'message'`. */
  event: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
  /** The last event id (the `lastEventId` a browser shows): it persists across events until an `id:` field changes it. */
  id: string;
}

/** What {@link createParser} returns. */
export interface SseParser {
  /** Feeds the next piece of the stream (already decoded text); may be cut anywhere. */
  feed(chunk: string): void;
  /** Forgets everything, as for a new connection (partial line, buffers, last event id, BOM state). */
  reset(): void;
  /** The last event id as of now (persists across events). */
  readonly lastEventId: string;
}

const LF = 10;
const CR = 13;
const SPACE = 32;
const BOM = 0xfeff;
const DIGITS = /^[0-9]+$/;

/**
 * Creates an incremental parser.
 *
 * @param onEvent - called for each dispatched event, in order.
 * @param onComment - called for each comment line with its text (after the colon, one leading space stripped).
 * @param onRetry - called with the reconnection time (ms) of each valid `retry:` field.
 *
 * @example
 * ```ts
 * const events: ParsedEvent[] = [];
 * const parser = createParser((ev) => events.push(ev));
 * parser.feed('id: 1\ndata: a\r\n');
 * parser.feed('\ndata: b\n\n'); // events: [{ event: 'message', data: 'a', id: '1' }, { event: 'message', data: 'b', id: '1' }]
 * ```
 */
export function createParser(
  onEvent: (event: ParsedEvent) => void,
  onComment?: (text: string) => void,
  onRetry?: (ms: number) => void,
): SseParser {
  let started = false; // saw the first character (the BOM check is done)
  let partial = ''; // the current line, not terminated yet
  let skipLF = false; // the previous chunk ended with CR: a leading LF belongs to it
  let data = '';
  let sawData = false;
  let eventType = '';
  let lastIdBuffer = '';
  let lastEventId = '';

  function dispatch(): void {
    lastEventId = lastIdBuffer;
    if (!sawData) {
      data = '';
      eventType = '';
      return;
    }
    // The data buffer is every value + LF; remove the last LF.
    const event: ParsedEvent = {
      event: eventType === '' ? 'message' : eventType,
      data: data.slice(0, -1),
      id: lastEventId,
    };
    data = '';
    sawData = false;
    eventType = '';
    onEvent(event);
  }

  function field(name: string, value: string): void {
    switch (name) {
      case 'event':
        eventType = value;
        break;
      case 'data':
        data += value + '\n';
        sawData = true;
        break;
      case 'id':
        if (!value.includes('\0')) lastIdBuffer = value;
        break;
      case 'retry':
        if (DIGITS.test(value)) onRetry?.(parseInt(value, 10));
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  function line(text: string): void {
    if (text === '') return dispatch();
    const colon = text.indexOf(':');
    if (colon === 0) {
      if (onComment !== undefined) onComment(text.slice(text.charCodeAt(1) === SPACE ? 2 : 1));
      return;
    }
    if (colon === -1) return field(text, '');
    const start = text.charCodeAt(colon + 1) === SPACE ? colon + 2 : colon + 1;
    field(text.slice(0, colon), text.slice(start));
  }

  function feed(chunk: string): void {
    if (typeof chunk !== 'string') throw new TypeError('feed() expects a string (decode bytes as UTF-8 first)');
    if (chunk === '') return;
    let i = 0;
    if (!started) {
      started = true;
      if (chunk.charCodeAt(0) === BOM) i = 1;
    }
    if (skipLF) {
      skipLF = false;
      if (chunk.charCodeAt(i) === LF) i++;
    }
    const n = chunk.length;
    let from = i;
    while (i < n) {
      const c = chunk.charCodeAt(i);
      if (c !== LF && c !== CR) {
        i++;
        continue;
      }
      const text = partial === '' ? chunk.slice(from, i) : partial + chunk.slice(from, i);
      partial = '';
      i++;
      if (c === CR) {
        if (i === n) skipLF = true;
        else if (chunk.charCodeAt(i) === LF) i++;
      }
      from = i;
      line(text);
    }
    if (from < n) partial += chunk.slice(from);
  }

  function reset(): void {
    started = false;
    partial = '';
    skipLF = false;
    data = '';
    sawData = false;
    eventType = '';
    lastIdBuffer = '';
    lastEventId = '';
  }

  return {
    feed,
    reset,
    get lastEventId() {
      return lastEventId;
    },
  };
}

/** Parses a whole stream at once; returns its events, comments and retry values. */
export function parseStream(text: string): { events: ParsedEvent[]; comments: string[]; retries: number[] } {
  const events: ParsedEvent[] = [];
  const comments: string[] = [];
  const retries: number[] = [];
  createParser(
    (ev) => events.push(ev),
    (c) => comments.push(c),
    (ms) => retries.push(ms),
  ).feed(text);
  return { events, comments, retries };
}
