/**
 * Event ids: how the positions a stream reached on each broker partition
 * become ONE `id:` (and come back from `Last-Event-ID`).
 *
 * - One partition (MemoryBroker, a single Redis): `<epoch>.<seq>`, e.g.
 *   `Qx3v9kT2aB0c.42`.
 * - Several partitions (Redis Cluster): `<check>.<p>-<seq>[.<p>-<seq>…]`, with
 *   one `<p>-<seq>` per partition of the stream's channels (partition and seq
 *   in base 36, partitions ascending), and `<check>` 8 base-36 characters
 *   hashed from the partition count and those partitions' epochs. A resume
 *   whose check does not match the partitions' current epochs gets `reset`.
 *
 * Both match `^[A-Za-z0-9._-]{1,128}$`: with at most 8 partitions the longest
 * id is 8 + 8 × (1 + 1 + 1 + 11) = 120 characters.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Position } from './brokers/broker';

export const EPOCH = /^[A-Za-z0-9_-]{1,32}$/;
const LEGACY = /^([A-Za-z0-9_-]{1,32})\.([0-9]{1,16})$/;
const CHECK = /^[0-9a-z]{8}$/;
const SEGMENT = /^([0-9a-z])-([0-9a-z]{1,11})$/;

/** A fresh random epoch: 12 url-safe characters. */
export function newEpoch(): string {
  return randomBytes(9).toString('base64url');
}

/** Checks already computed (epochs change rarely: a hash per event would cost more than the rest of its id). */
const checks = new Map<string, string>();
const MAX_CHECKS = 1024;

/** The 8-character check of `partitions` and the epochs of the listed partitions. */
function check(partitions: number, entries: ReadonlyArray<readonly [number, Position]>): string {
  let key = String(partitions);
  for (const [p, pos] of entries) key += '|' + p + ':' + pos.epoch;
  let c = checks.get(key);
  if (c === undefined) {
    const hex = createHash('sha256').update(key).digest('hex').slice(0, 11); // 44 bits
    c = parseInt(hex, 16).toString(36).padStart(8, '0').slice(-8);
    if (checks.size >= MAX_CHECKS) checks.clear();
    checks.set(key, c);
  }
  return c;
}

/** One stream's id: its position on each partition of its channels, ascending by partition. */
export function formatCursor(partitions: number, entries: ReadonlyArray<readonly [number, Position]>): string {
  if (partitions === 1) {
    const pos = entries[0]![1];
    return pos.epoch + '.' + pos.seq;
  }
  let id = check(partitions, entries);
  for (const [p, pos] of entries) id += '.' + p.toString(36) + '-' + pos.seq.toString(36);
  return id;
}

/** Per partition count and partition: the last epoch an event id was made for, and the id up to its seq. */
const eventIdHeads = new Map<number, { epoch: string; head: string }[]>();

/** The id of one event: the cursor of a stream on that event's partition alone. */
export function formatEventId(partition: number, epoch: string, seq: number, partitions = 1): string {
  if (partitions === 1) return epoch + '.' + seq; // the hot path: no arrays
  let heads = eventIdHeads.get(partitions);
  if (heads === undefined) eventIdHeads.set(partitions, (heads = []));
  let last = heads[partition];
  if (last === undefined || last.epoch !== epoch) {
    // what formatCursor writes before the seq: `<check>.<p>-`
    const head = check(partitions, [[partition, { epoch, seq }]]) + '.' + partition.toString(36) + '-';
    heads[partition] = last = { epoch, head };
  }
  return last.head + seq.toString(36);
}

/**
 * Whether `id` is exactly `formatEventId(partition, epoch, seq, 1)` (`<epoch>.<seq>`), checked
 * without building it: a broker's own id can then be used as it is.
 */
export function isSinglePartitionId(id: unknown, epoch: string, seq: number): boolean {
  if (typeof id !== 'string' || !Number.isSafeInteger(seq) || seq < 0) return false;
  const at = epoch.length + 1;
  if (id.length <= at || id.length > at + 16 || id.charCodeAt(at - 1) !== 0x2e || !id.startsWith(epoch)) return false;
  if (id.length > at + 1 && id.charCodeAt(at) === 0x30) return false; // a leading zero
  let n = 0;
  for (let i = at; i < id.length; i++) {
    const d = id.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return false;
    n = n * 10 + d;
  }
  return n === seq;
}

export interface ParsedId {
  /** partition -> the seq the client has seen. */
  readonly seqs: ReadonlyMap<number, number>;
  /** Whether the client's epochs are those of `heads` (the broker's current ones). */
  matches(heads: ReadonlyMap<number, Position>): boolean;
}

/** Parses one of our ids; anything else (garbage, too long, another server's, another layout) is undefined. */
export function parseCursor(id: string | undefined, partitions: number): ParsedId | undefined {
  if (id === undefined || id.length > 128) return undefined;
  if (partitions === 1) {
    const m = LEGACY.exec(id);
    if (m === null) return undefined;
    const seq = Number(m[2]);
    if (!Number.isSafeInteger(seq)) return undefined;
    const epoch = m[1]!;
    return {
      seqs: new Map([[0, seq]]),
      matches: (heads) => heads.get(0)?.epoch === epoch,
    };
  }
  const parts = id.split('.');
  if (parts.length < 2 || !CHECK.test(parts[0]!)) return undefined;
  const seqs = new Map<number, number>();
  let last = -1;
  for (let i = 1; i < parts.length; i++) {
    const m = SEGMENT.exec(parts[i]!);
    if (m === null) return undefined;
    const p = parseInt(m[1]!, 36);
    const seq = parseInt(m[2]!, 36);
    if (p <= last || p >= partitions || !Number.isSafeInteger(seq)) return undefined;
    last = p;
    seqs.set(p, seq);
  }
  const want = parts[0]!;
  return {
    seqs,
    matches: (heads) => {
      const entries: [number, Position][] = [];
      for (const p of seqs.keys()) {
        const head = heads.get(p);
        if (head === undefined) return false;
        entries.push([p, head]);
      }
      return check(partitions, entries) === want;
    },
  };
}
