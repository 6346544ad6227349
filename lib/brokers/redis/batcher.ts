/**
 * Which publishes go in which batch call, and when: group commit per Redis
 * node. While Redis is reachable, a node has at most ROUNDS rounds of calls
 * in flight (a round: the calls one turn sends it, one per partition it
 * serves, in one write: see CommandConnection.corked), and what is published
 * meanwhile waits for the next round, so calls grow with the load (one
 * publish alone still leaves at once).
 *
 * A single node gets two rounds, so Redis runs one while this process handles
 * the replies of the other: with none in flight, what waits (when that is at
 * least MIN_EVENTS_PER_CALL per round) is cut in two calls, both sent in this
 * turn but in two writes (the second once the first has left), so Redis
 * starts on the first before the second arrives. Several nodes get one round each: they overlap with one
 * another, and calls stay larger. Not reachable: no limit (each call waits
 * for the connection within its own deadline, in publish order).
 *
 * On a cluster a partition has at most one call in flight, and its batches are never cut in
 * parts: the cluster client may send a call on (MOVED, ASK, a TRYAGAIN retried after a delay)
 * while the slot moves, and the partition's next call, sent to the new master at once, would
 * then be stored before it. One connection to one Redis keeps calls in the order they were sent.
 */
import type { BrokerEvent, PublishInput } from '../broker';
import type { CommandConnection } from './client';

const ROUNDS_ONE_NODE = 2;
const ROUNDS_PER_NODE = 1;
const MIN_EVENTS_PER_CALL = 16;
export const MAX_EVENTS_PER_CALL = 512;
export const MAX_BYTES_PER_CALL = 4 * 1024 * 1024;

export interface Pending {
  readonly channel: string;
  readonly input: PublishInput;
  readonly history: number;
  readonly deadline: number;
  readonly resolve: (event: BrokerEvent) => void;
  readonly reject: (err: unknown) => void;
}

/** A node's rounds in flight. */
interface Node {
  running: number;
}

/** The calls one turn sent to one node; `Batcher.done` once per call. */
export interface Round {
  readonly node: Node;
  calls: number;
}

/** How many of the first publishes waiting fit in one call (events and bytes). */
function callSize(q: readonly Pending[]): number {
  const size = Math.min(MAX_EVENTS_PER_CALL, q.length);
  let end = 0;
  let bytes = 0;
  while (end < size && (end === 0 || bytes + q[end]!.input.data.length <= MAX_BYTES_PER_CALL)) {
    bytes += q[end]!.input.data.length;
    end++;
  }
  return end;
}

export class Batcher {
  /** Per partition: its publishes waiting for a call. */
  private readonly queues: Pending[][];
  /** Per partition: the later parts of a batch cut in parts, each its own call in its own write. */
  private readonly parts: Pending[][][];
  /** Per partition: its calls in flight. */
  private readonly calls: number[];
  private readonly nodes = new Map<string, Node>();
  private scheduled: NodeJS.Immediate | undefined = undefined;
  private closed = false;

  /** `send(p, round, items)` starts one call (synchronously up to its write when connected). */
  constructor(
    private readonly conn: CommandConnection,
    private readonly slots: readonly number[],
    private readonly send: (p: number, round: Round, items: Pending[]) => void,
  ) {
    this.queues = slots.map(() => []);
    this.parts = slots.map(() => []);
    this.calls = slots.map(() => 0);
  }

  add(p: number, pending: Pending): void {
    this.queues[p]!.push(pending);
    this.scheduled ??= setImmediate(this.flush);
  }

  /** One call of `round`, for partition `p`, settled. */
  done(round: Round, p: number): void {
    this.calls[p]!--;
    if (--round.calls > 0) return;
    round.node.running--;
    if (!this.closed) this.scheduled ??= setImmediate(this.flush);
  }

  /** Stops; returns every publish that was still waiting (for the caller to reject). */
  close(): Pending[] {
    this.closed = true;
    if (this.scheduled !== undefined) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    const left: Pending[] = [];
    for (const q of this.queues) left.push(...q.splice(0));
    for (const parts of this.parts) for (const part of parts.splice(0)) left.push(...part);
    return left;
  }

  private readonly flush = (): void => {
    this.scheduled = undefined;
    this.conn.corked(this.flushNow);
  };

  private readonly flushNow = (): void => {
    const capped = this.conn.ready && this.conn.loaded;
    const names = this.slots.map((slot) => this.conn.nodeOf(slot));
    const rounds = names.length > 1 && new Set(names).size > 1 ? ROUNDS_PER_NODE : ROUNDS_ONE_NODE;
    const ordered = this.conn.cluster; // one call in flight per partition (see the file's comment)
    const sent = new Map<Node, Round>();
    let again = false;
    let split = false;
    for (let p = 0; p < this.queues.length; p++) {
      const q = this.queues[p]!;
      const parts = this.parts[p]!;
      if (q.length === 0 && parts.length === 0) continue;
      if (ordered && this.calls[p]! > 0) continue; // done() flushes again
      let node = this.nodes.get(names[p]!);
      if (node === undefined) this.nodes.set(names[p]!, (node = { running: 0 }));
      let round = sent.get(node);
      if (round === undefined) {
        if (capped && node.running >= rounds) continue;
        node.running++;
        sent.set(node, (round = { node, calls: 0 }));
      }
      let items = parts.shift();
      if (items === undefined) {
        if (capped && !ordered && rounds > 1 && node.running === 1 && q.length >= rounds * MIN_EVENTS_PER_CALL) {
          const part = Math.ceil(q.length / rounds);
          items = q.splice(0, Math.min(callSize(q), part));
          for (let k = 1; k < rounds && q.length > 0; k++) parts.push(q.splice(0, Math.min(callSize(q), part)));
          split = parts.length > 0;
        } else items = q.splice(0, callSize(q));
      }
      round.calls++;
      this.calls[p]!++;
      this.send(p, round, items);
      if (q.length > 0 || parts.length > 0) again = true;
    }
    // The rest of a batch just cut in parts: in this turn, in its own write (see above).
    if (split) process.nextTick(this.flushParts);
    else if (again) this.scheduled ??= setImmediate(this.flush);
  };

  private readonly flushParts = (): void => {
    if (!this.closed) this.conn.corked(this.flushNow);
  };
}
