/**
 * The Server-Sent Events wire format, exactly as the WHATWG HTML standard
 * parses it (section 9.2 "Server-sent events"). Pure functions, no I/O.
 *
 * - Every field is `name: value\n`: one space after the colon, so a value that
 *   starts with a space keeps it (the parser strips exactly one).
 * - Data is split on CRLF, CR and LF (all three end a line in a browser) into
 *   one `data:` line each, so data can never start a new field or event.
 * - Event names and ids cannot be split that way, so a line break or NUL in
 *   them is refused with a TypeError.
 * - Falsy is not absent: `id: ''` resets the browser's last event id and is
 *   written; `retry: 0` is written.
 */

export type Serializer = (value: unknown) => string;

export interface EventFields {
  /** The payload. Strings are sent as they are, anything else through `serialize`. */
  data?: unknown;
  /** The event name (`event:` field); the browser dispatches it as this event type. */
  event?: string;
  /** The event id (`id:` field); the browser sends it back as `Last-Event-ID`. */
  id?: string | number;
  /** Reconnection delay in ms (`retry:` field): a non-negative integer. */
  retry?: number;
}

const BREAK = /\r\n|\r|\n/;

function hasBreak(text: string): boolean {
  return text.includes('\n') || text.includes('\r');
}

/** Throws TypeError when `value` cannot be the value of a single-line field. */
export function checkFieldValue(field: 'event' | 'id', value: unknown): string {
  if (typeof value === 'number') {
    if (field === 'id' && Number.isFinite(value)) return String(value);
    throw new TypeError(`sse-relay: ${field} must be a string, got ${String(value)}`);
  }
  if (typeof value !== 'string') {
    throw new TypeError(`sse-relay: ${field} must be a string, got ${typeof value}`);
  }
  if (hasBreak(value) || value.includes('\0')) {
    throw new TypeError(`sse-relay: ${field} must not contain CR, LF or NUL, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Throws RangeError unless `ms` is a non-negative safe integer. */
export function checkRetry(ms: unknown, what = 'retry'): number {
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 0) {
    throw new RangeError(
      `sse-relay: ${what} must be a non-negative integer (ms), got ${typeof ms === 'string' ? JSON.stringify(ms) : String(ms)}`,
    );
  }
  return ms;
}

/** Turns data into text: strings as they are, anything else through `serialize`. */
export function dataToText(data: unknown, serialize: Serializer): string {
  if (typeof data === 'string') return data;
  const text = serialize(data);
  if (typeof text !== 'string') {
    throw new TypeError(
      `sse-relay: serialize returned ${typeof text} for the data (undefined cannot be sent; send '' for an empty message)`,
    );
  }
  return text;
}

/** `prefix` + each line of `text` + `\n`; lines split on CRLF, CR and LF. */
function lines(prefix: string, text: string): string {
  if (!hasBreak(text)) return prefix + text + '\n';
  const parts = text.split(BREAK);
  let out = '';
  for (const part of parts) out += prefix + part + '\n';
  return out;
}

/** Only the `data:` lines of an event, for callers that validated the rest. */
export function encodeData(text: string): string {
  return lines('data: ', text);
}

/**
 * One event frame from values the caller has already checked (`id` and
 * `event` single-line, `data` already turned into `data:` lines by
 * `encodeData`): the hot path of fan-out and `res.sse.send`. Same layout as
 * `encodeEvent`.
 */
export function encodeFrame(id: string | undefined, event: string | undefined, dataLines: string): string {
  let head = '';
  if (id !== undefined) head = 'id: ' + id + '\n';
  if (event !== undefined) head += eventLine(event);
  return head + dataLines + '\n';
}

/** The last `event:` line built: most streams of events repeat one name, so the line is built once. */
let lastEvent: string | undefined;
let lastEventLine = '';

function eventLine(event: string): string {
  if (event !== lastEvent) {
    lastEventLine = 'event: ' + event + '\n';
    lastEvent = event;
  }
  return lastEventLine;
}

/**
 * Encodes one event. Field order: `id`, `event`, `retry`, then the `data:`
 * lines, then the blank line that dispatches it. Throws (TypeError or
 * RangeError) before producing anything when a field is invalid.
 */
export function encodeEvent(fields: EventFields, serialize: Serializer = JSON.stringify): string {
  if (fields === null || typeof fields !== 'object') {
    throw new TypeError('sse-relay: encodeEvent expects an object { data, event?, id?, retry? }');
  }
  let head = '';
  if (fields.id !== undefined) head += 'id: ' + checkFieldValue('id', fields.id) + '\n';
  if (fields.event !== undefined) head += 'event: ' + checkFieldValue('event', fields.event) + '\n';
  if (fields.retry !== undefined) head += 'retry: ' + checkRetry(fields.retry) + '\n';
  return head + lines('data: ', dataToText(fields.data, serialize)) + '\n';
}

/** `: text\n\n`, one `:` line per line of `text`; a comment is never dispatched. */
export function encodeComment(text: string = ''): string {
  if (typeof text !== 'string') {
    throw new TypeError(`sse-relay: comment text must be a string, got ${typeof text}`);
  }
  return lines(': ', text) + '\n';
}

/** `retry: ms\n\n`. */
export function encodeRetry(ms: number): string {
  return 'retry: ' + checkRetry(ms) + '\n\n';
}
