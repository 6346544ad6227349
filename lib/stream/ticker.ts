/**
 * The shared clock: one interval per tick period for every open stream in the
 * process (not one timer per stream), unref'd, stopped when its last stream
 * leaves. Streams use it for keep-alive and the drain timeout.
 */

export interface Ticking {
  tick(now: number): void;
}

class Clock {
  readonly members = new Set<Ticking>();
  private readonly timer: NodeJS.Timeout;

  constructor(period: number) {
    this.timer = setInterval(() => {
      const now = performance.now();
      for (const member of this.members) member.tick(now);
    }, period);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

const clocks = new Map<number, Clock>();

export function joinClock(member: Ticking, period: number): void {
  let clock = clocks.get(period);
  if (clock === undefined) {
    clock = new Clock(period);
    clocks.set(period, clock);
  }
  clock.members.add(member);
}

export function leaveClock(member: Ticking, period: number): void {
  const clock = clocks.get(period);
  if (clock === undefined) return;
  clock.members.delete(member);
  if (clock.members.size === 0) {
    clock.stop();
    clocks.delete(period);
  }
}

/** How many shared intervals are running (0 once every stream has ended). A diagnostic, re-exported by `sse-relay/testing`. */
export function runningClocks(): number {
  return clocks.size;
}
