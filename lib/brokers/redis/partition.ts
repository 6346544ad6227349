/**
 * One partition's delivery state: its channels and listeners, the newest
 * position Redis vouched for (the floor: publish acks, reads), what was
 * delivered, live messages checked against Redis before they move anything,
 * and the catch-up after a lost connection or a new epoch.
 *
 * A live message at or below the floor is delivered (once, in seq order). One
 * above it (another process published, or someone forged it) waits for one
 * read of the head: Redis ran the publish before it sent the message, so a
 * message that arrived before that read was sent and is still above the head
 * was never stored: it is counted invalid and moves nothing.
 *
 * The catch-up itself pages through history (catch-up.ts); this file holds
 * what it reads and moves.
 *
 * A catch-up, and a partition that had no channel subscribed getting one
 * again, first check that Redis still holds the last few events delivered
 * here at their positions (delivered.ts); when they name other events the
 * partition is moved to a new epoch: every stream on it gets one `reset`, and
 * no id of the old numbering resumes anywhere.
 */
import type { BrokerEvent, BrokerListener, PartitionPosition, Position } from '../broker';
import { catchUp, LIVE, SNAPSHOT, WAITING, type CatchUpHost, type PageIO } from './catch-up';
import type { ReadReply } from './codec';
import { decodeEntry } from './codec';
import { Delivered, type DeliveredMark } from './delivered';
import type { PartitionKeys } from './partitions';
import type { Subscriber } from './subscriber';

export interface Counters {
  invalid: number;
  duplicates: number;
  recoveries: number;
  resets: number;
  reused: number;
}

export interface PartitionIO extends PageIO {
  read(p: number, channels: readonly { name: string; after: number }[], expected: string): Promise<ReadReply>;
  /** False when Redis holds another event (or, with older entries of its channel kept, none) at one of these positions. */
  holds(p: number, marks: readonly DeliveredMark[]): Promise<boolean>;
  /** Moves the partition to a new epoch if Redis still numbers it in `epoch`. */
  renumber(p: number, epoch: string): Promise<void>;
  /** Asks for a catch-up pass (sync) of this partition. */
  requestRecovery(part: Partition): void;
}

export class Chan {
  readonly listeners = new Set<BrokerListener>();
  subscribed = false;
  armed = false;
  /** The head read just before SSUBSCRIBE, in liveEpoch (0 in a new one): later events of this channel have greater seqs. */
  floor = 0;
  constructor(
    readonly name: string,
    readonly topic: string,
  ) {}
}

function call(fn: () => void): void {
  try {
    fn();
  } catch {
    // listeners must not throw; one that does must not break delivery to the others
  }
}

export class Partition implements CatchUpHost {
  readonly chans = new Map<string, Chan>();
  /** Newest position Redis vouched for (floor for rewind detection). */
  known: Position | undefined = undefined;
  /** Epoch of what was delivered, and the newest seq delivered in it. */
  liveEpoch: string | undefined = undefined;
  last = 0;
  /** Where the newest events delivered were. */
  private readonly delivered = new Delivered();
  phase = LIVE;
  needRecovery = false;
  paging = false;
  span = 0;
  private buffer: { chan: Chan; event: BrokerEvent }[] = [];
  private pending: { chan: Chan; event: BrokerEvent }[] = [];
  private verifying = false;
  /** The subscriber connection this partition's channels are on. */
  sub: Subscriber | undefined = undefined;

  constructor(
    readonly keys: PartitionKeys,
    private readonly partitions: number,
    private readonly io: PartitionIO,
    readonly counters: Counters,
  ) {}

  get index(): number {
    return this.keys.index;
  }

  hasListeners(): boolean {
    for (const c of this.chans.values()) if (c.listeners.size > 0) return true;
    return false;
  }

  /** Redis vouched for (epoch, seq). A new epoch with listeners here means a catch-up (with reset). */
  seen(epoch: string, seq: number): void {
    const k = this.known;
    if (k === undefined || k.epoch !== epoch || seq > k.seq) {
      this.known = { epoch, seq };
    }
    if (this.liveEpoch !== undefined && this.liveEpoch !== epoch && this.phase !== SNAPSHOT && this.hasListeners()) {
      this.startRecovery();
    }
  }

  // ---- live ----------------------------------------------------------------

  message(chan: Chan, event: BrokerEvent): void {
    if (this.phase === WAITING) return; // the catch-up reads it from history
    if (this.phase === SNAPSHOT) {
      this.buffer.push({ chan, event });
      return;
    }
    const k = this.known;
    if (
      this.pending.length === 0 &&
      k !== undefined &&
      event.epoch === k.epoch &&
      event.epoch === this.liveEpoch &&
      event.seq <= k.seq
    ) {
      this.deliverNew(chan, event);
      return;
    }
    this.pending.push({ chan, event });
    this.verify();
  }

  private deliverNew(chan: Chan, event: BrokerEvent): void {
    if (event.seq <= this.last) {
      this.counters.duplicates++;
      return;
    }
    this.last = event.seq;
    this.delivered.note(event);
    for (const listener of chan.listeners) call(() => listener.onEvent(event));
  }

  private verify(): void {
    if (this.verifying) return;
    this.verifying = true;
    const asked = this.pending.length;
    this.io.read(this.index, [], '').then(
      () => {
        this.verifying = false;
        if (this.phase !== LIVE) {
          this.pending = [];
          return;
        }
        const k = this.known!;
        const keep: { chan: Chan; event: BrokerEvent }[] = [];
        this.pending.forEach((m, i) => {
          const vouched = m.event.epoch === k.epoch && m.event.seq <= k.seq;
          if (vouched && keep.length === 0) {
            if (m.event.epoch === this.liveEpoch) this.deliverNew(m.chan, m.event);
          } else if (i < asked && !vouched) {
            this.counters.invalid++; // above what Redis holds: never stored
          } else {
            keep.push(m);
          }
        });
        this.pending = keep;
        if (keep.length > 0) this.verify();
      },
      () => {
        this.verifying = false;
        this.pending = [];
        this.startRecovery(); // could not check: read what is real from history
      },
    );
  }

  // ---- catch-up ------------------------------------------------------------

  startRecovery(): void {
    this.needRecovery = true;
    this.paging = false;
    this.phase = WAITING;
    this.buffer = [];
    this.pending = [];
    this.io.requestRecovery(this);
  }

  connectionLost(): void {
    let lost = false;
    for (const chan of this.chans.values()) {
      if (chan.subscribed) {
        chan.subscribed = false;
        lost = true;
      }
    }
    if (lost) this.startRecovery();
    else if (this.phase === SNAPSHOT) this.phase = WAITING;
  }

  reset(chan: Chan, head: PartitionPosition): void {
    for (const listener of chan.listeners) {
      this.counters.resets++;
      call(() => listener.onReset(chan.name, head));
    }
  }

  /**
   * Whether Redis still holds the newest events delivered here at their positions (see
   * delivered.ts). When they name other events (the numbering went back and was given out again), the
   * partition moves to a new epoch; true then.
   */
  async checkDelivered(): Promise<boolean> {
    const epoch = this.liveEpoch;
    const recent = epoch === undefined ? [] : this.delivered.of(epoch);
    if (epoch === undefined || recent.length === 0 || (await this.io.holds(this.index, recent))) return false;
    this.counters.reused++;
    this.delivered.clear();
    await this.io.renumber(this.index, epoch);
    return true;
  }

  /**
   * Before a partition none of whose streams is live here (nothing subscribed, no catch-up
   * due) subscribes again: no catch-up checked it if Redis went back meanwhile, so check now.
   * True when it was idle: what it delivered before concerns nobody here any more (see idle()).
   */
  async checkIdle(): Promise<boolean> {
    if (this.needRecovery) return false; // the catch-up checks
    for (const chan of this.chans.values()) if (chan.subscribed) return false;
    await this.checkDelivered();
    return true;
  }

  /**
   * An idle partition subscribes again in `epoch` (Redis' now): when that is another epoch,
   * nobody here was live on the old one, so there is nothing to catch up or reset (a new
   * listener starts at the head; the hub replays history itself). Its delivered state goes.
   */
  idle(epoch: string): void {
    if (this.liveEpoch === epoch) return;
    this.liveEpoch = epoch;
    this.last = 0;
    this.delivered.clear();
  }

  /** The catch-up (catch-up.ts): pages of history after what each channel has seen, then the buffered live messages; false when it paused for `yieldNow`. */
  recover(isCurrent: () => boolean, yieldNow?: () => boolean): Promise<boolean> {
    return catchUp(this, this.io, isCurrent, yieldNow);
  }

  knownSeq(): number {
    return this.known!.seq;
  }

  catchingUp(): Chan[] {
    return [...this.chans.values()].filter((c) => c.subscribed && c.armed && c.listeners.size > 0);
  }

  takeLive(): { chan: Chan; event: BrokerEvent }[] {
    const buffered = this.buffer;
    this.buffer = [];
    this.pending = [];
    return buffered;
  }

  rebase(): void {
    this.last = 0;
    this.delivered.clear();
    for (const chan of this.chans.values()) chan.floor = 0;
  }

  deliver(events: readonly BrokerEvent[]): void {
    let prev = 0;
    const k = this.known!;
    for (const event of events) {
      if (event.seq === prev) continue;
      if (k.epoch === event.epoch && event.seq > k.seq) {
        // buffered, published after the snapshot: checked like any live message
        this.pending.push({ chan: this.chans.get(event.channel)!, event });
        continue;
      }
      prev = event.seq;
      const chan = this.chans.get(event.channel);
      if (chan !== undefined) this.deliverNew(chan, event);
    }
    if (this.pending.length > 0) this.verify();
  }

  /** Stream entries to events, validated: anything malformed is counted and skipped. */
  entries(channel: string, epoch: string, after: number, head: number, entries: unknown, out: BrokerEvent[]): void {
    if (!Array.isArray(entries)) {
      this.counters.invalid++;
      return;
    }
    for (const entry of entries as unknown[]) {
      const ev = decodeEntry(channel, this.index, this.partitions, epoch, entry);
      if (ev === undefined || ev.seq <= after || ev.seq > head) {
        this.counters.invalid++;
        continue;
      }
      out.push(ev);
    }
  }
}
