// Time is a port for the vehicle SDK: the clock and one-shot timers behind an interface tests drive by hand.

/** An opaque timer handle returned by `Timers.setTimeout`. */
export type TimerHandle = object | number;

/** The clock and timers the client uses for keepalive, backoff, batching, throttling and IN_PROGRESS. */
export interface Timers {
  /** Milliseconds since the Unix epoch (also used to check a command's EXPIRES_AT). */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock and Node timers. */
export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

interface ManualTimer {
  readonly id: number;
  readonly at: number;
  readonly ms: number;
  readonly fn: () => void;
}

/**
 * Fake time for tests and simulations: nothing fires until `advance()` moves the clock. Timers due
 * at the same instant fire in the order they were set; a timer set while advancing fires in the
 * same `advance()` when it falls inside the window.
 */
export class ManualTimers implements Timers {
  private timers: ManualTimer[] = [];
  private seq = 0;

  constructor(private t = Date.UTC(2026, 0, 1)) {}

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: ManualTimer = { id: ++this.seq, at: this.t + Math.max(0, ms), ms, fn };
    this.timers.push(timer);
    return { id: timer.id };
  }

  clearTimeout(handle: TimerHandle): void {
    if (typeof handle !== 'object' || !('id' in handle)) return;
    const id = (handle as { id: number }).id;
    this.timers = this.timers.filter((t) => t.id !== id);
  }

  /** Timers not yet fired, soonest first: `ms` is the delay they were set with. */
  pending(): { at: number; ms: number }[] {
    return this.sorted().map(({ at, ms }) => ({ at, ms }));
  }

  /** Milliseconds until the next timer fires, or undefined when none is set. */
  nextIn(): number | undefined {
    const next = this.sorted()[0];
    return next === undefined ? undefined : next.at - this.t;
  }

  /** Moves the clock by `ms`, firing every timer that falls due, in time order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const next = this.sorted()[0];
      if (next === undefined || next.at > end) break;
      this.timers = this.timers.filter((t) => t.id !== next.id);
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = end;
  }

  /** Moves the clock to the next timer and fires it (and any due at the same instant). */
  runNext(): boolean {
    const next = this.nextIn();
    if (next === undefined) return false;
    this.advance(next);
    return true;
  }

  private sorted(): ManualTimer[] {
    return [...this.timers].sort((a, b) => a.at - b.at || a.id - b.id);
  }
}
