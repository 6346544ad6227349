/**
 * Pure validation and decoding: what callers hand the broker, and everything
 * read back from Redis (anyone can write to our keys and SPUBLISH to our
 * channels, so nothing read is trusted before it is checked).
 */
import { EPOCH, formatEventId } from '../../positions';
import { MAX_HISTORY, MAX_IDEMPOTENCY_KEY, type BrokerEvent, type PublishInput } from '../broker';
import { checkOptions } from '../../options';
import type { PartitionKeys } from './partitions';

/** Bytes before each packed event: key index (u16), data and options lengths (u32 each). */
const HEADER = 10;
/** Up to this size a call's buffer is sized for the worst case (3 UTF-8 bytes per UTF-16 unit). */
const PACK_SLACK_BYTES = 256 * 1024;

const SEQ = /^(?:0|[1-9][0-9]{0,15})$/;
const ENTRY_ID = /^([1-9][0-9]{0,15})-0$/;
const CHANNEL = /^[A-Za-z0-9_.:-]{1,200}$/;
const FIELD_BREAK = /[\r\n\0]/;
const INPUT_NAMES = ['data', 'event', 'coalesce', 'idempotencyKey'];

export function isSeq(value: unknown): value is string {
  return typeof value === 'string' && SEQ.test(value) && Number.isSafeInteger(Number(value));
}

function isField(value: unknown): value is string {
  return typeof value === 'string' && !FIELD_BREAK.test(value);
}

export function checkChannel(where: string, channel: unknown): asserts channel is string {
  if (typeof channel !== 'string' || !CHANNEL.test(channel)) {
    throw new TypeError(
      `sse-relay: RedisBroker.${where} channel must match ${String(CHANNEL)}, got ${JSON.stringify(channel)}`,
    );
  }
}

/** Validates one publish; returns the data size in bytes. */
export function checkPublish(input: PublishInput, history: number, maxDataBytes: number): void {
  if (input === null || typeof input !== 'object')
    throw new TypeError(
      'sse-relay: RedisBroker.publish input must be an object { data, event?, coalesce?, idempotencyKey? }',
    );
  checkOptions('RedisBroker.publish input', input, INPUT_NAMES);
  if (typeof input.data !== 'string')
    throw new TypeError(`sse-relay: RedisBroker.publish input.data must be a string, got ${typeof input.data}`);
  if (input.event !== undefined && !isField(input.event)) {
    throw new TypeError(
      `sse-relay: RedisBroker.publish input.event must be a string without CR, LF or NUL, got ${JSON.stringify(input.event)}`,
    );
  }
  if (input.coalesce !== undefined && (!isField(input.coalesce) || input.coalesce === '')) {
    throw new TypeError(
      `sse-relay: RedisBroker.publish input.coalesce must be a non-empty string without CR, LF or NUL, got ${JSON.stringify(input.coalesce)}`,
    );
  }
  const key = input.idempotencyKey;
  if (
    key !== undefined &&
    (typeof key !== 'string' || key === '' || key.length > MAX_IDEMPOTENCY_KEY || FIELD_BREAK.test(key))
  ) {
    throw new TypeError(
      `sse-relay: RedisBroker.publish input.idempotencyKey must be a string of 1..200 characters without CR, LF or NUL, got ${JSON.stringify(key)}`,
    );
  }
  if (typeof history !== 'number' || !Number.isSafeInteger(history) || history < 0 || history > MAX_HISTORY) {
    throw new RangeError(
      `sse-relay: RedisBroker.publish history must be an integer 0..1000000, got ${String(history)}`,
    );
  }
  const size = input.data.length > maxDataBytes / 3 ? Buffer.byteLength(input.data, 'utf8') : input.data.length;
  if (size > maxDataBytes) {
    throw new RangeError(
      `sse-relay: RedisBroker.publish data is ${size} bytes, more than maxDataBytes (${maxDataBytes})`,
    );
  }
}

/** One live message: `<epoch>\n<seq>\n<-|=event>\n<-|=coalesce>\n<data>`. Undefined when anything is off. */
export function decodeMessage(
  channel: string,
  partition: number,
  partitions: number,
  raw: string,
): BrokerEvent | undefined {
  const a = raw.indexOf('\n');
  const b = a < 0 ? -1 : raw.indexOf('\n', a + 1);
  const c = b < 0 ? -1 : raw.indexOf('\n', b + 1);
  const d = c < 0 ? -1 : raw.indexOf('\n', c + 1);
  if (d < 0) return undefined;
  const epoch = raw.slice(0, a);
  const s = raw.slice(a + 1, b);
  const ev = raw.slice(b + 1, c);
  const co = raw.slice(c + 1, d);
  if (!EPOCH.test(epoch) || !isSeq(s) || s === '0') return undefined;
  if ((ev !== '-' && ev[0] !== '=') || (co !== '-' && (co[0] !== '=' || co.length < 2))) return undefined;
  const seq = Number(s);
  return {
    channel,
    partition,
    epoch,
    seq,
    id: formatEventId(partition, epoch, seq, partitions),
    data: raw.slice(d + 1),
    event: ev === '-' ? undefined : ev.slice(1),
    coalesce: co === '-' ? undefined : co.slice(1),
  };
}

/** One stream entry `[id, [field, value, ...]]`. */
export function decodeEntry(
  channel: string,
  partition: number,
  partitions: number,
  epoch: string,
  entry: unknown,
): BrokerEvent | undefined {
  if (!Array.isArray(entry) || entry.length !== 2) return undefined;
  const [id, fields] = entry as unknown[];
  const m = typeof id === 'string' ? ENTRY_ID.exec(id) : null;
  if (m === null || !Array.isArray(fields) || fields.length % 2 !== 0) return undefined;
  const seq = Number(m[1]);
  if (!Number.isSafeInteger(seq)) return undefined;
  let data: unknown;
  let event: unknown;
  let coalesce: unknown;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i];
    if (name === 'd') data = fields[i + 1];
    else if (name === 'e') event = fields[i + 1];
    else if (name === 'c') coalesce = fields[i + 1];
  }
  if (typeof data !== 'string') return undefined;
  if (event !== undefined && !isField(event)) return undefined;
  if (coalesce !== undefined && (!isField(coalesce) || coalesce === '')) return undefined;
  return {
    channel,
    partition,
    epoch,
    seq,
    id: formatEventId(partition, epoch, seq, partitions),
    data,
    event: event as string | undefined,
    coalesce: coalesce as string | undefined,
  };
}

export interface ReadReply {
  readonly epoch: string;
  readonly head: number;
  readonly base: number;
  /**
   * Per channel: whether its history holds everything after the position asked; `kept`, the
   * seq after which it holds every event of the epoch (where its kept history begins, from
   * `base` to `head`); the entries read.
   */
  readonly streams: readonly { complete: boolean; kept: number; entries: unknown }[];
}

/** A catch-up page: entries up to `to` (the head when nothing is left after the page). */
export interface PageReply extends ReadReply {
  readonly to: number;
}

function seqOf(v: unknown): unknown {
  return typeof v === 'number' ? String(v) : v;
}

/** The reply of the read function; garbage stored in Redis is an error, never a position. */
export function parseRead(reply: unknown, streams: number): ReadReply | string {
  return parseReply(reply, streams, 3);
}

/** The reply of the page function: the read's, with `to` after the base. */
export function parsePage(reply: unknown, streams: number): PageReply | string {
  const r = parseReply(reply, streams, 4);
  if (typeof r === 'string') return r;
  const to = seqOf((reply as unknown[])[3]);
  if (!isSeq(to) || Number(to) > r.head) return 'invalid page end from Redis';
  return { ...r, to: Number(to) };
}

function parseReply(reply: unknown, streams: number, fields: number): ReadReply | string {
  if (!Array.isArray(reply) || reply.length !== fields + 3 * streams) return 'unexpected reply from Redis';
  const [epoch, head, base] = reply as unknown[];
  const h = seqOf(head);
  const b = seqOf(base);
  if (typeof epoch !== 'string' || !EPOCH.test(epoch) || !isSeq(h) || !isSeq(b))
    return 'invalid epoch or seq stored in Redis';
  const hd = Number(h);
  const bs = Number(b);
  const out: { complete: boolean; kept: number; entries: unknown }[] = [];
  for (let i = fields; i < reply.length; i += 3) {
    const k = seqOf(reply[i + 1]);
    if (!isSeq(k) || Number(k) < bs || Number(k) > hd) return 'invalid kept history mark from Redis';
    out.push({ complete: reply[i] === 1, kept: Number(k), entries: reply[i + 2] });
  }
  return { epoch, head: hd, base: bs, streams: out };
}

/**
 * The reply of the batch function: `[epoch, first seq]` (consecutive seqs) or `[epoch, seq...]`;
 * for a call already done, the same as one string.
 */
export function parseBatch(reply: unknown, count: number): { epoch: string; seqs: number[] } | string {
  const parts: unknown[] = typeof reply === 'string' ? reply.split(' ') : Array.isArray(reply) ? reply : [];
  if (parts.length === 2 && count > 1) {
    const first = typeof parts[1] === 'number' ? String(parts[1]) : parts[1];
    if (typeof parts[0] !== 'string' || !EPOCH.test(parts[0]) || !isSeq(first) || first === '0')
      return 'invalid epoch or seq stored in Redis';
    const s0 = Number(first);
    if (!Number.isSafeInteger(s0 + count)) return 'invalid seq stored in Redis';
    return { epoch: parts[0], seqs: Array.from({ length: count }, (_, i) => s0 + i) };
  }
  if (parts.length !== count + 1) return 'unexpected reply from Redis';
  const epoch = parts[0];
  if (typeof epoch !== 'string' || !EPOCH.test(epoch)) return 'invalid epoch stored in Redis';
  const seqs: number[] = [];
  for (let i = 1; i < parts.length; i++) {
    const s = typeof parts[i] === 'number' ? String(parts[i]) : parts[i];
    if (!isSeq(s) || s === '0') return 'invalid seq stored in Redis';
    seqs.push(Number(s));
  }
  return { epoch, seqs };
}

/**
 * The events of one call as the batch function's packed argument (see scripts.ts): one
 * Buffer written in place, rather than three arguments per event for the client to
 * concatenate. Adds each stream (and caller key mark) to `keys` once.
 */
export function packEvents(
  k: PartitionKeys,
  items: readonly { channel: string; input: PublishInput; history: number }[],
  keys: string[],
  history: number,
): Buffer {
  const index = new Map<string, number>(); // channel -> its stream's key index
  const kis = new Array<number>(items.length);
  const opts = new Array<string>(items.length);
  let units = 0; // UTF-16 code units: a UTF-8 byte count at most 3 times as large
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    let ki = index.get(it.channel);
    if (ki === undefined) {
      keys.push(k.channel(it.channel));
      index.set(it.channel, (ki = keys.length));
    }
    const { event, coalesce, idempotencyKey, data } = it.input;
    let opt = '';
    if (event !== undefined) opt += 'e' + event + '\n';
    if (coalesce !== undefined) opt += 'c' + coalesce + '\n';
    if (it.history !== history) opt += 'h' + it.history + '\n';
    if (idempotencyKey !== undefined) {
      keys.push(k.userKey(it.channel, idempotencyKey));
      opt += 'm' + keys.length + '\n';
    }
    kis[i] = ki;
    opts[i] = opt;
    units += data.length + opt.length;
  }
  // Small calls: room for the worst case, without measuring every string first; large ones: exact.
  let bytes = HEADER * items.length + 3 * units;
  if (bytes > PACK_SLACK_BYTES) {
    bytes = HEADER * items.length;
    for (let i = 0; i < items.length; i++) {
      const opt = opts[i]!;
      bytes += Buffer.byteLength(items[i]!.input.data) + (opt === '' ? 0 : Buffer.byteLength(opt));
    }
  }
  const buf = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (let i = 0; i < items.length; i++) {
    const opt = opts[i]!;
    const dl = buf.write(items[i]!.input.data, at + HEADER);
    const ol = opt === '' ? 0 : buf.write(opt, at + HEADER + dl);
    buf.writeUInt16LE(kis[i]!, at);
    buf.writeUInt32LE(dl, at + 2);
    buf.writeUInt32LE(ol, at + 6);
    at += HEADER + dl + ol;
  }
  const out = at === bytes ? buf : buf.subarray(0, at);
  return out;
}
