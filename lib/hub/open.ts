/**
 * Opening one hub stream: validate (400) -> origin (403) -> authorise every
 * channel (403 / next(err)) -> admit (limits) -> subscribe -> replay -> open
 * -> live. Nothing is written before the stream is admitted; a broker that
 * cannot be reached gives 200 + `retry:` + end (never a status that makes
 * EventSource give up). Big histories are replayed page by page, each page
 * written as the client's socket drains.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Broker, BrokerEvent, Position, ReplayResult } from '../brokers/broker';
import { RETRY, jitter, refuse, type NextFunction } from '../http';
import { parseCursor } from '../positions';
import { encodeRetry } from '../protocol/encode';
import type { Admission } from '../stream/admission';
import { Connection } from '../stream/connection';
import type { Channels } from './channels';
import type { Delivery } from './fan-out';
import type { Authorize, Reauthorizer } from './reauthorize';
import { HubStream } from './stream';
import { replayed } from '../diagnostics';

/** Events asked of the broker per replay page. */
const PAGE_EVENTS = 500;
/** Characters written per piece of a replay before waiting for the socket to take more. */
const PIECE_CHARS = 64 * 1024;

/** What the open pipeline needs of its hub. */
export interface OpenContext {
  readonly broker: Broker;
  readonly authorize: Authorize;
  readonly history: number;
  readonly admission: Admission<Connection>;
  readonly channels: Channels;
  readonly delivery: Delivery;
  readonly reauth: Reauthorizer;
  readonly streams: Set<HubStream>;
  readonly partitionCount: number;
  partitionOf(channel: string): number;
  readonly closed: boolean;
}

/** Opens a stream of `channels` (already validated) for this request. */
export async function openStream(
  hub: OpenContext,
  req: IncomingMessage,
  res: ServerResponse,
  next: NextFunction,
  channels: readonly string[],
): Promise<void> {
  // A foreign origin is refused before authorize runs.
  if (hub.admission.origin(req) === false) {
    hub.admission.counters.refused[403]++;
    refuse(res, 403, { Vary: 'Origin' });
    return;
  }
  for (const channel of channels) {
    let ok: boolean;
    try {
      ok = (await hub.authorize(req, channel)) === true;
    } catch (err) {
      next(err);
      return;
    }
    if (!ok) {
      hub.admission.counters.refused[403]++;
      refuse(res, 403);
      return;
    }
  }
  if (res.destroyed || res.writableEnded) return; // the client left while we authorised
  const conn = new Connection(req, res, hub.admission);
  res.sse = conn;
  if (req.method === 'HEAD' || hub.closed) {
    if (hub.closed) hub.admission.counters.refused[503]++;
    // HEAD: the head alone. Shutting down: transient, so 200 + retry, never an error status.
    if (conn.admit()) conn.end(req.method === 'HEAD' ? '' : encodeRetry(jitter(RETRY.unavailable)));
    return;
  }
  if (!conn.admit()) return;
  conn.channels = channels;
  const stream = newStream(hub, conn, channels);
  hub.streams.add(stream);
  hub.channels.attach(stream);
  conn.onEnd = () => {
    hub.streams.delete(stream);
    hub.channels.detach(stream);
    if (hub.streams.size === 0) hub.reauth.stop();
  };
  try {
    await hub.channels.subscribe(channels);
    if (conn.closed) return;
    await position(hub, stream);
    if (conn.closed) return;
    goLive(hub, stream);
  } catch {
    // Broker unreachable: never a non-200 (EventSource would give up for good).
    if (conn.closed) return;
    hub.admission.counters.refused[503]++;
    conn.end(encodeRetry(jitter(RETRY.unavailable)));
  }
}

function newStream(hub: OpenContext, conn: Connection, channels: readonly string[]): HubStream {
  const parts = [...new Set(channels.map((ch) => hub.partitionOf(ch)))].sort((a, b) => a - b);
  // Streams whose ids depend on one partition only get identical frames when their channel sets match.
  const group = parts.length === 1 ? hub.channels.groupName([...channels].sort().join(',')) : undefined;
  return new HubStream(conn, channels, parts, hub.partitionCount, group);
}

/**
 * Where the stream starts: after the client's Last-Event-ID (replaying what
 * it missed), or, with none or one we cannot vouch for, at the broker's heads
 * (with a `reset` for the latter).
 */
async function position(hub: OpenContext, s: HubStream): Promise<void> {
  const { conn } = s;
  const lastEventId = conn.lastEventId;
  const parsed =
    lastEventId !== undefined && hub.history > 0 ? parseCursor(lastEventId, hub.partitionCount) : undefined;
  const covers = parsed !== undefined && s.partitions.every((p) => parsed.seqs.has(p));
  let page = await hub.broker.replay(s.channels, covers ? parsed.seqs : undefined, PAGE_EVENTS);
  if (conn.closed) return;
  conn.start();
  if (lastEventId === undefined) {
    for (const p of s.partitions) s.place(p, headOf(page, p));
    return;
  }
  const vouched = covers && parsed.matches(page.heads);
  if (!vouched || !page.complete) {
    if (vouched && hub.broker.fence !== undefined && (await fenceRewinds(hub, s, parsed.seqs, page))) {
      page = await hub.broker.replay(s.channels, undefined); // the new epoch's heads
      if (conn.closed) return;
    }
    replayDone(hub, s, lastEventId, 0, false);
    resetAt(hub, s, page, 'resume');
    return;
  }
  let replayed = 0;
  for (const p of s.partitions) s.place(p, { epoch: headOf(page, p).epoch, seq: parsed.seqs.get(p)! });
  for (;;) {
    replayed += page.events.length;
    await writePaced(hub, s, page.events);
    if (conn.closed || page.more !== true) break;
    s.buffer = []; // what arrived meanwhile is in the next page too
    page = await hub.broker.replay(s.channels, new Map(s.partitions.map((p) => [p, s.seqs[p]!])), PAGE_EVENTS);
    if (conn.closed) return;
    if (!page.complete || s.partitions.some((p) => headOf(page, p).epoch !== s.epochs[p])) {
      replayDone(hub, s, lastEventId, replayed, false);
      resetAt(hub, s, page, 'resume'); // history was trimmed or lost while we replayed
      return;
    }
  }
  if (conn.closed) return; // cut or gone mid-replay: this resume did not finish, complete or not
  replayDone(hub, s, lastEventId, replayed, true);
}

/** Counts a resume and tells the diagnostics channel. */
function replayDone(hub: OpenContext, s: HubStream, lastEventId: string, events: number, complete: boolean): void {
  if (complete) hub.admission.counters.replays.complete++;
  else hub.admission.counters.replays.reset++;
  replayed(s.conn.req, s.channels, lastEventId, events, complete);
}

function headOf(page: ReplayResult, p: number): Position {
  const head = page.heads.get(p);
  if (head === undefined) throw new Error('sse-relay: the broker returned no head for a partition of the stream');
  return head;
}

/** One `reset`, positioned at the heads of `page`. */
function resetAt(hub: OpenContext, s: HubStream, page: ReplayResult, cause: 'resume' | 'broker'): void {
  for (const p of s.partitions) s.place(p, headOf(page, p));
  s.resetAt = '';
  hub.delivery.reset(s, s.partitions[0]!, headOf(page, s.partitions[0]!), cause);
}

/**
 * The client saw positions ahead of the heads in the same epoch: history
 * rewound (a restart from an older snapshot). Tells the broker, which starts
 * a new epoch; true when it did.
 */
async function fenceRewinds(
  hub: OpenContext,
  s: HubStream,
  seqs: ReadonlyMap<number, number>,
  page: ReplayResult,
): Promise<boolean> {
  let fenced = false;
  for (const p of s.partitions) {
    const head = headOf(page, p);
    const seen = seqs.get(p)!;
    if (seen > head.seq) {
      await hub.broker.fence!({ partition: p, epoch: head.epoch, seq: seen });
      fenced = true;
    }
  }
  return fenced;
}

/** Writes replayed events in pieces, each after the socket took the one before. */
async function writePaced(hub: OpenContext, s: HubStream, events: readonly BrokerEvent[]): Promise<void> {
  let text = '';
  for (const ev of events) {
    if (text !== '' && hub.delivery.startsEpoch(s, ev)) {
      s.conn.write(text); // the reset it brings must come after what came before
      text = '';
    }
    text += hub.delivery.deliverOwn(s, ev);
    if (text.length >= PIECE_CHARS) {
      s.conn.write(text);
      text = '';
      await s.conn.writable();
      if (s.conn.closed) return;
    }
  }
  if (text !== '') s.conn.write(text);
}

/** Set-up done: resets that arrived meanwhile (as one), then what was buffered, then live. */
function goLive(hub: OpenContext, s: HubStream): void {
  hub.delivery.release(s);
  hub.reauth.track(s);
}
