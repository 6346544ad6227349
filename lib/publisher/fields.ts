/**
 * The fields of a publish request, from a JSON or form-encoded body (or what
 * a body parser in front already made of it): `channel`, `data`, `event?`,
 * `coalesce?`, nothing else. Any problem is one generic `undefined` (a 400):
 * the response never says which field, so it can never echo input.
 */
import { MAX_IDEMPOTENCY_KEY } from '../brokers/broker';
import { TextDecoder } from 'node:util';
import { CHANNEL_NAME } from '../channel-name';
import type { BodyKind } from './body';

export interface PublishFields {
  readonly channel: string;
  /** The text to publish: a JSON string as it is, any other JSON value as its JSON text. */
  readonly data: string;
  readonly event: string | undefined;
  readonly coalesce: string | undefined;
}

const FIELDS = new Set(['channel', 'data', 'event', 'coalesce']);
const FIELD_BREAK = /[\r\n\0]/;
/** An Idempotency-Key: 1 to MAX_IDEMPOTENCY_KEY visible ASCII characters, as every broker takes (the endpoint unquotes a quoted one; the CLI checks the same). */
export const IDEMPOTENCY_KEY = new RegExp(`^[\\x21-\\x7e]{1,${MAX_IDEMPOTENCY_KEY}}$`);

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decode(body: Buffer): string | undefined {
  try {
    return utf8.decode(body);
  } catch {
    return undefined;
  }
}

function optionalName(value: unknown): string | undefined | null {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '' || FIELD_BREAK.test(value)) return null;
  return value;
}

/** Checks an object of fields; `form` says every value must already be a string. */
function check(record: unknown, form: boolean): PublishFields | undefined {
  if (record === null || typeof record !== 'object' || Array.isArray(record) || Buffer.isBuffer(record))
    return undefined;
  const fields = record as Record<string, unknown>;
  for (const key of Object.keys(fields)) if (!FIELDS.has(key)) return undefined;
  const { channel, data } = fields;
  if (typeof channel !== 'string' || !CHANNEL_NAME.test(channel)) return undefined;
  if (data === undefined) return undefined;
  let text: string;
  if (typeof data === 'string') text = data;
  else if (form) return undefined;
  else text = JSON.stringify(data);
  const event = optionalName(fields.event);
  const coalesce = optionalName(fields.coalesce);
  if (event === null || coalesce === null) return undefined;
  return { channel, data: text, event, coalesce };
}

function fromJson(text: string): PublishFields | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return check(value, false);
}

function fromForm(text: string): PublishFields | undefined {
  const record: Record<string, string> = Object.create(null);
  for (const [key, value] of new URLSearchParams(text)) {
    if (Object.hasOwn(record, key)) return undefined; // a field given twice
    record[key] = value;
  }
  return check({ ...record }, true);
}

/** Fields from a raw body. */
export function parseBody(kind: BodyKind, body: Buffer | string): PublishFields | undefined {
  const text = typeof body === 'string' ? body : decode(body);
  if (text === undefined) return undefined;
  return kind === 'json' ? fromJson(text) : fromForm(text);
}

/** Fields from what a body parser in front left in `req.body` (an object, or the raw text/bytes). */
export function parseParsed(kind: BodyKind, body: unknown): PublishFields | undefined {
  if (typeof body === 'string' || Buffer.isBuffer(body)) return parseBody(kind, body);
  return check(body, kind === 'form');
}

/** The `Idempotency-Key` header: absent → undefined, invalid → null (a 400). */
export function idempotencyKey(header: string | string[] | undefined): string | undefined | null {
  if (header === undefined) return undefined;
  if (typeof header !== 'string') return null;
  const key = header.length >= 2 && header.startsWith('"') && header.endsWith('"') ? header.slice(1, -1) : header;
  return IDEMPOTENCY_KEY.test(key) ? key : null;
}
