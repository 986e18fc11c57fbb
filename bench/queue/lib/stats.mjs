// Small numeric helpers shared by every scenario: percentiles, rates and timing, so each
// system's figures are computed by the same code.

/** Milliseconds since an arbitrary origin, with sub-millisecond resolution. */
export const now = () => performance.now();

/** Converts another process's epoch milliseconds (`performance.timeOrigin + now()`) to `now()`. */
export const fromEpoch = (epochMs) => epochMs - performance.timeOrigin;

/** The p-th percentile (0..100) of `values` by nearest rank; NaN when empty. */
export function percentile(values, p) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** Jobs per second for `count` jobs in `ms` milliseconds. */
export function rate(count, ms) {
  return ms > 0 ? (count * 1000) / ms : Number.POSITIVE_INFINITY;
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Resolves with `promise`, or rejects with a `[bench] <what> timed out` error after `ms`, so one
 * stuck system cannot hold the whole run.
 */
export async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`[bench] ${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Counts dispatches ("job handed to user code") and resolves `waitFor(n)` once `n` have been seen.
 * Every system's worker or runner calls `hit(tag)` at that moment, so every figure is taken at the
 * same point of the job's life.
 */
export class DispatchLog {
  constructor() {
    /** @type {Map<string, number>} tag -> first dispatch time */
    this.times = new Map();
    /** @type {Map<string, number>} tag -> when user code handed the job's completion back */
    this.doneTimes = new Map();
    this.count = 0;
    /** Dispatches of a tag already dispatched (a job handed to user code twice). */
    this.duplicates = 0;
    this.last = 0;
    this.waiters = [];
  }

  hit(tag) {
    this.hitAt(tag, now());
  }

  /**
   * A dispatch seen at `t` (this process's `now()` scale): another process's dispatches come in
   * through here, converted from epoch time with `fromEpoch`.
   */
  hitAt(tag, t) {
    this.count += 1;
    if (tag !== undefined && this.times.has(tag)) this.duplicates += 1;
    if (t > this.last) this.last = t;
    if (tag !== undefined && !this.times.has(tag)) this.times.set(tag, t);
    if (this.waiters.length > 0) {
      this.waiters = this.waiters.filter((w) => {
        if (w.test()) {
          w.resolve();
          return false;
        }
        return true;
      });
    }
  }

  /** Records the moment a job's completion was handed back to the system by user code. */
  done(tag) {
    if (!this.doneTimes.has(tag)) this.doneTimes.set(tag, now());
  }

  /** Resolves, with the time of the n-th dispatch, once at least `n` dispatches were seen. */
  waitForCount(n) {
    return this.waitUntil(() => this.count >= n);
  }

  /** Resolves once `tag` was dispatched. */
  waitForTag(tag) {
    return this.waitUntil(() => this.times.has(tag));
  }

  waitUntil(test) {
    if (test()) return Promise.resolve(this.last);
    // Resolved synchronously inside hit(), so `last` is the time of the dispatch that passed.
    return new Promise((resolve) => this.waiters.push({ test, resolve: () => resolve(this.last) }));
  }

  reset() {
    this.times.clear();
    this.doneTimes.clear();
    this.count = 0;
    this.duplicates = 0;
    this.last = 0;
  }
}
