/**
 * The catch-up of one partition after a lost subscriber connection or a new
 * epoch, in pages: each page is one call (scripts-page.ts) that reads every
 * caught-up channel after its position, up to one cut `to` that is the same
 * for all of them, so the partition's events reach the hub in increasing seq
 * order across channels, page after page. A page spans at most
 * `catchUpPage.seqs` seqs and about `catchUpPage.bytes` bytes, so one call
 * never holds Redis for long, whatever the backlog and the number of
 * channels, and the broker never holds more than a page of it.
 *
 * Progress is kept: a page moves the partition's `last` (and every channel's
 * floor) to its cut, so a catch-up that fails after some pages (a dropped
 * connection, a timeout) starts again from the last page delivered.
 *
 * Live messages: every page's read is a snapshot (phase SNAPSHOT, live
 * messages buffered while it is read). After a page that did not reach the
 * head, the buffer is dropped: Redis stored each of those events before it
 * sent it, so each is at or below a later page's head and that page reads it
 * from history (or finds it trimmed: a reset). Only the last page's buffer is
 * kept, as before paging: what arrived while it was read and is past it. So
 * the buffer holds at most what arrives during one call.
 *
 * A channel whose history after its position is gone (trimmed while the
 * subscriber connection was away or the catch-up was behind, deleted) gets its
 * reset where its kept history begins, and the same page reads what is kept:
 * a mark that moves only when the channel is trimmed again, so the hub can
 * read it at a stream's first reset, move every partition of the stream that
 * will reset at once, and the other partitions' resets of the same outage
 * then move nothing (one reset, not one per partition: lib/hub/fan-out.ts).
 * A page in another epoch than what was
 * delivered (Redis restarted, a replica promoted, in any page) resets every
 * channel to where the epoch began (or where its kept history begins, if it
 * was trimmed since), as a single read did.
 */
import type { BrokerEvent, PartitionPosition } from '../broker';
import type { PageReply } from './codec';
import type { Chan } from './partition';
import type { Store } from './store';

/**
 * The page budget (chosen by measurement, see README "Limits"): at most `seqs` seqs per page
 * (so at most that many entries, whatever the number of channels) and about `bytes` bytes of
 * entries (one entry more at most). Internal: tests lower it to page small backlogs.
 */
export const catchUpPage = { seqs: 2000, bytes: 1024 * 1024 };

/** A partition's phase: live; waiting for a catch-up (live messages dropped); a catch-up page being read (buffered). */
export const LIVE = 0;
export const WAITING = 1;
export const SNAPSHOT = 2;

/** What a catch-up reads and moves in its partition (partition.ts). */
export interface CatchUpHost {
  readonly index: number;
  liveEpoch: string | undefined;
  last: number;
  phase: number;
  needRecovery: boolean;
  /** A catch-up stopped between two pages to let a pass run (see catchUp): the next one goes on from there. */
  paging: boolean;
  /** The span its next page asks for (see catchUp). */
  span: number;
  readonly counters: { recoveries: number };
  /** The newest seq Redis vouched for, in the epoch it is in. */
  knownSeq(): number;
  /** The channels caught up: subscribed, armed, listened to. */
  catchingUp(): Chan[];
  /** Drops the live messages buffered or waiting for a check; returns those buffered. */
  takeLive(): { chan: Chan; event: BrokerEvent }[];
  /** A new epoch: nothing delivered counts in it (last 0, no marks, every floor 0). */
  rebase(): void;
  reset(chan: Chan, head: PartitionPosition): void;
  /** Delivers `events` (seq order), those above what Redis vouched for after a check. */
  deliver(events: readonly BrokerEvent[]): void;
  entries(channel: string, epoch: string, after: number, head: number, entries: unknown, out: BrokerEvent[]): void;
  checkDelivered(): Promise<boolean>;
  startRecovery(): void;
}

/** What a catch-up calls to read a page: Store.page. */
export type PageIO = Pick<Store, 'page'>;

/**
 * Pages until a page reaches the head (then the partition is live: true), or until
 * `yieldNow()` says, after a page, that something else waits for the partition (a subscribe):
 * false then, and the next call goes on after the last page delivered, with live messages
 * dropped meanwhile (later pages read them). Rejects when a read fails or the subscriber
 * connection was lost meanwhile (`isCurrent()` false): what was delivered stays. Each page
 * moves on (see scripts-page.ts), so the loop ends unless publishing outruns it (see README
 * "Limits").
 */
export async function catchUp(
  part: CatchUpHost,
  io: PageIO,
  isCurrent: () => boolean,
  yieldNow: () => boolean = () => false,
): Promise<boolean> {
  if (!part.paging) await part.checkDelivered(); // once per catch-up, not again after a pause
  let span = part.paging ? part.span : catchUpPage.seqs;
  part.paging = false;
  for (;;) {
    const chans = part.catchingUp();
    const afters = chans.map((c) => Math.max(c.floor, part.last));
    const from = Math.min(...afters);
    part.takeLive();
    part.phase = SNAPSHOT;
    let page: PageReply;
    try {
      const list = chans.map((c, i) => ({ name: c.name, after: afters[i]! }));
      page = await io.page(part.index, list, part.liveEpoch ?? '', span, catchUpPage.bytes);
    } catch (err) {
      if (part.phase === SNAPSHOT) part.phase = WAITING;
      part.takeLive();
      throw err;
    }
    if (!isCurrent() || part.phase !== SNAPSHOT) throw new Error('the subscriber connection was lost during catch-up');
    // From here on everything is synchronous: no message slips between the page and what follows.
    if (apply(part, chans, afters, page)) return true;
    // A page cut by its bytes read (and dropped) what was past the cut: the next one spans
    // what about 90% of the byte budget holds at this page's bytes per seq, so pages are full
    // and rarely cut by bytes; a page with nothing in it doubles the span.
    const bytes = pageBytes(page);
    const spanned = page.to - from;
    span = bytes > 0 && spanned > 0 ? Math.floor((spanned * 0.9 * catchUpPage.bytes) / bytes) : span * 2;
    span = Math.max(1, Math.min(catchUpPage.seqs, span));
    if (yieldNow()) {
      part.paging = true;
      part.span = span;
      part.phase = WAITING;
      part.takeLive();
      return false;
    }
  }
}

/** About what a page's entries weigh (ids, names and values, as the page function counts them). */
function pageBytes(page: PageReply): number {
  let n = 0;
  for (const { entries } of page.streams) {
    if (!Array.isArray(entries)) continue;
    for (const e of entries as unknown[]) {
      if (!Array.isArray(e)) continue;
      n += String(e[0]).length;
      if (Array.isArray(e[1])) for (const f of e[1] as unknown[]) n += typeof f === 'string' ? f.length : 0;
    }
  }
  return n;
}

/** Delivers one page; true when it reached the head (the partition is live again). */
function apply(part: CatchUpHost, chans: readonly Chan[], afters: readonly number[], page: PageReply): boolean {
  const final = page.to >= page.head;
  const rebased = part.liveEpoch !== undefined && part.liveEpoch !== page.epoch;
  if (rebased) part.rebase();
  const p = part.index;
  const events: BrokerEvent[] = [];
  const covered = new Map<Chan, number>();
  chans.forEach((chan, i) => {
    const { complete, kept, entries } = page.streams[i]!;
    let after = rebased ? page.base : afters[i]!;
    if (!complete) {
      // trimmed (or deleted) past its position: reset where its kept history begins, and the
      // page read it from there; a position past the head (nothing to read): at the head
      after = kept > after ? kept : page.head;
      chan.floor = after; // later pages read it after
    }
    if (rebased || !complete) part.reset(chan, { partition: p, epoch: page.epoch, seq: after });
    part.entries(chan.name, page.epoch, after, page.to, entries, events);
    covered.set(chan, after);
  });
  let again = false;
  const buffered = part.takeLive();
  if (final) {
    for (const { chan, event } of buffered) {
      const floor = covered.get(chan);
      if (floor === undefined) continue;
      if (event.epoch !== page.epoch) {
        again = true;
        continue;
      }
      if (event.seq > floor) events.push(event);
    }
  }
  events.sort((a, b) => a.seq - b.seq);
  part.liveEpoch = page.epoch;
  if (final) {
    part.phase = LIVE;
    part.needRecovery = false;
    part.counters.recoveries++;
  }
  part.deliver(events);
  part.last = Math.max(part.last, Math.min(page.to, part.knownSeq()));
  for (const chan of chans) chan.floor = Math.max(chan.floor, part.last);
  if (again) part.startRecovery();
  return final;
}
