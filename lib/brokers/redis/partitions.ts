/**
 * Where a channel lives: its partition (FNV-1a of the name, modulo the
 * partition count), the partition's hash tag (chosen so partitions sit evenly
 * over Redis Cluster's 16384 slots) and the keys built from it. Pure; shared by
 * the broker and (as a generated table) by the Redis Function library.
 *
 * Keys of partition p under `prefix` (`B` = `<prefix>{<tag>}`):
 *   B                  hash { e: epoch, s: newest seq, b: seq the epoch started after }
 *   B!d                hash channel -> seq of the newest event trimmed out of its history, and
 *                      +channel -> seq of its first event in this epoch (it has had a stream:
 *                      a missing one means its history is gone, not that it had none)
 *   B:<channel>        stream (history: entry id `<seq>-0`, fields d data, h history, e event,
 *                      c coalesce) AND sharded pub/sub channel
 *   B!b:<id>           at-most-once mark of one broker call (expires)
 *   B!k:<ch> <key>     an idempotencyKey given by the caller (expires after 10 minutes)
 */

export const SLOTS = 16384;

/** FNV-1a (32 bit) of the UTF-8 bytes of `s`. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  const bytes = Buffer.from(s, 'utf8');
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function partitionOf(channel: string, partitions: number): number {
  return partitions === 1 ? 0 : fnv1a(channel) % partitions;
}

const CRC_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** Redis Cluster's CRC16 (XMODEM). */
function crc16(bytes: Buffer): number {
  let crc = 0;
  for (let i = 0; i < bytes.length; i++) crc = ((crc << 8) & 0xffff) ^ CRC_TABLE[((crc >> 8) ^ bytes[i]!) & 0xff]!;
  return crc;
}

/** The cluster slot of a key (honouring a `{hash tag}`). */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open !== -1) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  return crc16(Buffer.from(key, 'utf8')) % SLOTS;
}

/**
 * The hash tag of partition `p` of `partitions`: `0` with one partition, else
 * `<partitions>.<p>.<n>` with the smallest n whose slot lies within 1/64 of
 * the slot space around the middle of the partition's share of it.
 */
function findTag(p: number, partitions: number): string {
  if (partitions === 1) return '0';
  const center = Math.floor(((p + 0.5) * SLOTS) / partitions);
  const tolerance = Math.floor(SLOTS / 128 / partitions);
  for (let n = 0; n < 1_000_000; n++) {
    const tag = `${partitions}.${p}.${n}`;
    if (Math.abs(keySlot(`{${tag}}`) - center) <= tolerance) return tag;
  }
  throw new Error('unreachable: no hash tag found');
}

export const MAX_PARTITIONS = 8;

/** TAGS[partitions][p]. */
export const TAGS: readonly (readonly string[])[] = (() => {
  const out: string[][] = [[]];
  for (let n = 1; n <= MAX_PARTITIONS; n++) {
    const row: string[] = [];
    for (let p = 0; p < n; p++) row.push(findTag(p, n));
    out.push(row);
  }
  return out;
})();

/** The key names of one partition. */
export class PartitionKeys {
  /** `<prefix>{<tag>}`: the meta hash. */
  readonly base: string;
  /** Hash channel -> seq of the newest event trimmed out of its history. */
  readonly dropped: string;
  readonly slot: number;

  constructor(
    prefix: string,
    readonly index: number,
    partitions: number,
  ) {
    this.base = `${prefix}{${TAGS[partitions]![index]!}}`;
    this.dropped = this.base + '!d';
    this.slot = keySlot(this.base);
  }

  /** History stream and sharded pub/sub channel of `channel`. */
  channel(channel: string): string {
    return this.base + ':' + channel;
  }

  call(id: string): string {
    return this.base + '!b:' + id;
  }

  userKey(channel: string, key: string): string {
    return this.base + '!k:' + channel + ' ' + key;
  }
}
