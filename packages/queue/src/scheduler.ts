// The scheduler loop of a Queue (the consumer side, as BullMQ's Worker is to its Queue): claim,
// submit, poll, recover, back off, wake up. Runner calls happen between store transactions,
// never inside one; the store's guarded updates make every outcome safe to record late, twice,
// or from another process. While submits are in flight their leases are renewed, so only a
// dead scheduler's claim is ever recovered.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import {
  isCrystalMathError,
  isTerminalRunnerState,
  type Runner,
  type RunnerHandle,
  type RunnerStatus,
} from '@crystalmath/core';
import type { ResolvedTarget } from './attorney.js';
import { decodeSpec, errorMessage } from './codec.js';
import { jobKey, type LeaseOutcome } from './store/rules.js';
import type { JobRow, QueueStore, StatusUpdate, SubmittedResult } from './store/store.js';
import type { BackoffOptions, Clock, Logger, SchedulerOptions, StoreHealth } from './types.js';

/** While the store is down, one log line at most this often (plus one at each change). */
const STORE_LOG_EVERY_MS = 30_000;

/** Retry delays when `backoff` is not given: 5 s, 10 s, 20 s, ... up to 10 min, +-20 %. */
export const DEFAULT_BACKOFF: Required<BackoffOptions> = {
  initialMs: 5_000,
  factor: 2,
  maxMs: 600_000,
  jitter: 0.2,
};

/**
 * Waits between scheduling rounds while the store fails (E_STORE): 100 ms doubling to 700 ms,
 * +-20 %. The cap keeps both promises of a store outage: under 2 connection attempts a second
 * while it is down (one per round), and work again within about a second of its return.
 */
export const STORE_BACKOFF: Required<BackoffOptions> = {
  initialMs: 100,
  factor: 2,
  maxMs: 700,
  jitter: 0.2,
};

/** What the scheduler needs from the Queue that owns it. */
export interface SchedulerHost {
  /** Reports an error that must not stop the loop (log, `error` event). */
  error(error: unknown, context: string): void;
  /** The store went down or came back (once per change). */
  storeChanged(change: StoreHealth): void;
  /** Delivers new event-log rows to in-process listeners. */
  notify(): void;
}

export interface SchedulerInternals {
  readonly store: QueueStore;
  readonly targets: ReadonlyMap<string, ResolvedTarget>;
  readonly logger: Logger | undefined;
  readonly clock: Clock;
  readonly scheduler: SchedulerOptions;
}

export class Scheduler {
  readonly #store: QueueStore;
  readonly #targets: ReadonlyMap<string, ResolvedTarget>;
  readonly #targetNames: readonly string[];
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #host: SchedulerHost;
  readonly #owner: string;
  readonly #tickMs: number;
  readonly #pollMs: number;
  readonly #leaseMs: number;
  readonly #claimBatch: number;
  readonly #submitConcurrency: number;
  readonly #submitTimeoutMs: number;
  readonly #lastPoll = new Map<Runner, number>();
  #running = false;
  #loop: Promise<void> | null = null;
  #wakeUp: (() => void) | null = null;
  #wakePending = false;
  #tickChain: Promise<unknown> = Promise.resolve();
  #nextRecovery = 0;
  #unsubscribe: (() => Promise<void>) | null = null;
  /** Consecutive rounds that failed with E_STORE (0: the store is up). */
  #storeFailures = 0;
  #storeDownSince = 0;
  #storeUpSince: number | null = null;
  #storeError: string | null = null;
  #lastStoreLog = 0;

  constructor(internals: SchedulerInternals, host: SchedulerHost) {
    this.#store = internals.store;
    this.#targets = internals.targets;
    this.#targetNames = [...internals.targets.keys()];
    this.#log = internals.logger ?? {};
    this.#clock = internals.clock;
    this.#host = host;
    const s = internals.scheduler;
    this.#owner = s.ownerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.#tickMs = s.tickMs ?? 1_000;
    this.#pollMs = s.pollIntervalMs ?? 2_000;
    this.#leaseMs = s.leaseMs ?? 60_000;
    this.#claimBatch = s.claimBatch ?? 256;
    this.#submitConcurrency = s.submitConcurrency ?? 16;
    this.#submitTimeoutMs = s.submitTimeoutMs ?? 600_000;
  }

  /** This scheduler's lease owner id. */
  get ownerId(): string {
    return this.#owner;
  }

  get running(): boolean {
    return this.#running;
  }

  /** The store as the loop last saw it. */
  get storeHealth(): StoreHealth {
    return this.#storeFailures === 0
      ? { state: 'up', since: this.#storeUpSince, error: null, failures: 0 }
      : {
          state: 'down',
          since: this.#storeDownSince,
          error: this.#storeError,
          failures: this.#storeFailures,
        };
  }

  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    // Claims this owner left behind in a previous life (it just started: none is in flight).
    await this.#serial(() => this.#recover(this.#owner));
    this.#nextRecovery = this.#clock.now() + this.#recoveryInterval();
    if (this.#store.subscribe) {
      try {
        this.#unsubscribe = await this.#store.subscribe(() => this.wake());
      } catch (error) {
        this.#host.error(error, 'subscribe to store notifications');
      }
    }
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.wake();
    await this.#loop;
    this.#loop = null;
    await this.#tickChain.catch(() => undefined);
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = null;
    await unsubscribe?.().catch((e: unknown) => this.#host.error(e, 'unsubscribe'));
  }

  /** One scheduling round now (after the one in progress, if any). */
  tick(): Promise<void> {
    return this.#serial(async () => {
      await this.#tick(true);
    });
  }

  /** Ends the current wait of the loop (work was enqueued or released). */
  wake(): void {
    this.#wakePending = true;
    const w = this.#wakeUp;
    this.#wakeUp = null;
    w?.();
  }

  /**
   * Waits `ms`, or less when `signal` aborts or (unless `ignoreWake`) when `wake()` is called;
   * a wake-up that came while nothing waited ends the next wait at once.
   */
  sleep(ms: number, signal?: AbortSignal, ignoreWake = false): Promise<void> {
    if (!ignoreWake && this.#wakePending) {
      this.#wakePending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      if (!ignoreWake) {
        this.#wakeUp = () => {
          this.#wakePending = false;
          done();
        };
      }
    });
  }

  /** Scheduling rounds never overlap (a hand-called tick() waits for the loop's). */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tickChain.then(fn, fn);
    this.#tickChain = next.catch(() => undefined);
    return next;
  }

  #recoveryInterval(): number {
    return Math.max(1_000, Math.floor(this.#leaseMs / 2));
  }

  async #run(): Promise<void> {
    while (this.#running) {
      this.#wakePending = false; // this round serves whatever woke it
      let again = false;
      try {
        again = await this.#serial(() => this.#tick(false));
        this.#storeUp();
      } catch (error) {
        if (isCrystalMathError(error, 'E_STORE')) {
          // The store is down or locked: back off (a wake-up, e.g. PostgreSQL's LISTEN
          // connection coming back, still ends the wait early), never spin.
          const delay = this.#storeDown(error);
          if (this.#running) await this.sleep(delay);
          continue;
        }
        this.#storeUp();
        this.#host.error(error, 'scheduler round');
      }
      if (!this.#running) break;
      if (!again) await this.sleep(this.#nextDelay());
      else await new Promise<void>((r) => setImmediate(r)); // let producers in between rounds
    }
  }

  /** Records a failed round; returns how long to wait before the next one. */
  #storeDown(error: Error): number {
    const now = Date.now();
    const message = error.message;
    this.#storeError = message;
    if (this.#storeFailures === 0) {
      this.#storeDownSince = now;
      this.#lastStoreLog = now;
      this.#log.warn?.('[queue] store down: scheduling paused, retrying with backoff', {
        error: message,
      });
      this.#host.storeChanged({ state: 'down', since: now, error: message, failures: 1 });
    } else if (now - this.#lastStoreLog >= STORE_LOG_EVERY_MS) {
      this.#lastStoreLog = now;
      this.#log.warn?.('[queue] store still down', {
        error: message,
        failures: this.#storeFailures + 1,
        downMs: now - this.#storeDownSince,
      });
    }
    this.#storeFailures++;
    const b = STORE_BACKOFF;
    const base = Math.min(b.maxMs, b.initialMs * b.factor ** (this.#storeFailures - 1));
    return Math.max(1, Math.round(base * (1 + b.jitter * (Math.random() * 2 - 1))));
  }

  #storeUp(): void {
    if (this.#storeFailures === 0) return;
    const now = Date.now();
    const failures = this.#storeFailures;
    this.#storeFailures = 0;
    this.#storeError = null;
    this.#storeUpSince = now;
    this.#log.info?.('[queue] store back: scheduling resumed', {
      downMs: now - this.#storeDownSince,
      failures,
    });
    this.#host.storeChanged({ state: 'up', since: now, error: null, failures: 0 });
  }

  #nextDelay(): number {
    let delay = this.#tickMs;
    const now = Date.now();
    for (const { runner } of this.#targets.values()) {
      const last = this.#lastPoll.get(runner) ?? 0;
      delay = Math.min(delay, Math.max(0, last + this.#pollInterval(runner) - now));
    }
    return Math.max(delay, 1);
  }

  #pollInterval(runner: Runner): number {
    return Math.max(this.#pollMs, runner.capabilities.minPollIntervalMs);
  }

  /** One round: recover expired leases (now and then), claim and submit, poll. True = go again. */
  async #tick(force: boolean): Promise<boolean> {
    const now = this.#clock.now();
    if (now >= this.#nextRecovery) {
      this.#nextRecovery = now + this.#recoveryInterval();
      await this.#recover(null);
    }
    const claimed = await this.#store.claim(
      this.#owner,
      now,
      this.#leaseMs,
      this.#claimBatch,
      this.#targetNames,
    );
    if (claimed.length > 0) await this.#submit(claimed);
    const ended = await this.#poll(force);
    this.#host.notify(); // not a wake-up: a round must not wake the loop for itself
    // A full batch may have left more; an ended job may have released dependents.
    return claimed.length >= this.#claimBatch || ended > 0;
  }

  async #submit(claimed: readonly JobRow[]): Promise<void> {
    const ok: SubmittedResult[] = [];
    let next = 0;
    // One deadline for the round's submits: past it they are abandoned (and their leases left
    // to expire), so a submit that never returns cannot hold its job forever.
    const deadline = AbortSignal.timeout(this.#submitTimeoutMs);
    const worker = async (): Promise<void> => {
      for (let row = claimed[next++]; row !== undefined; row = claimed[next++]) {
        const runner = this.#targets.get(row.target)!.runner;
        const id = Number(row.id);
        const attempt = Number(row.attempt);
        const key = jobKey(this.#store.storeId, id, attempt);
        try {
          ok.push({
            id,
            attempt,
            handle: await runner.submit({ key, spec: decodeSpec(row.spec) }, { signal: deadline }),
          });
        } catch (error) {
          // The submission may have landed before the error (a dropped connection): ask first.
          const found = canFind(runner)
            ? await runner
                .find(key, { signal: AbortSignal.timeout(this.#submitTimeoutMs) })
                .catch(() => null)
            : null;
          if (found) {
            ok.push({ id, attempt, handle: found });
            continue;
          }
          const reason = `submit failed: ${errorMessage(error)}`;
          const invalid =
            isCrystalMathError(error, 'E_VALIDATION') || isCrystalMathError(error, 'E_PATH_UNSAFE');
          try {
            await this.#store.recordSubmitFailed(
              id,
              attempt,
              this.#owner,
              reason,
              invalid ? null : this.#retryAt(row),
              this.#clock.now(),
            );
          } catch (storeError) {
            this.#host.error(storeError, `record failed submit of job ${id}`);
          }
          this.#log.warn?.('[queue] submit failed', { job: id, reason });
        }
      }
    };
    const renewal = this.#renewLeases(claimed, deadline);
    try {
      await Promise.all(
        Array.from({ length: Math.min(this.#submitConcurrency, claimed.length) }, worker),
      );
    } finally {
      await renewal.stop();
    }
    const toCancel = await this.#recordSubmitted(ok);
    for (const r of toCancel) {
      const row = claimed.find((c) => Number(c.id) === r.id)!;
      try {
        await this.#targets.get(row.target)!.runner.cancel(r.handle);
        await this.#store.markCancelled(r.id, this.#clock.now());
      } catch (error) {
        this.#host.error(error, `cancel job ${r.id}`);
      }
    }
  }

  /**
   * Records the handles, retrying a failed store write (connection lost, file locked) with the
   * store backoff while the claims' leases last: the handles exist only in memory, and the
   * guarded update makes a second try after an unknown outcome (commit sent, answer lost) a
   * no-op. Past the lease, the jobs are recovered through `find()` like a crashed scheduler's.
   */
  async #recordSubmitted(ok: readonly SubmittedResult[]): Promise<SubmittedResult[]> {
    const giveUp = Date.now() + this.#leaseMs / 2;
    for (let failures = 1; ; failures++) {
      try {
        return await this.#store.recordSubmitted(ok, this.#owner, this.#clock.now());
      } catch (error) {
        if (!isCrystalMathError(error, 'E_STORE') || !this.#running || Date.now() >= giveUp)
          throw error;
        const b = STORE_BACKOFF;
        const base = Math.min(b.maxMs, b.initialMs * b.factor ** (failures - 1));
        await this.sleep(base * (1 + b.jitter * (Math.random() * 2 - 1)), undefined, true);
      }
    }
  }

  /**
   * Extends the leases of `claimed` every third of `leaseMs` until `stop()` or the submit
   * deadline (as BullMQ extends its job locks), so a slow submit never looks abandoned to
   * another scheduler while a hung one still does after `submitTimeoutMs`. One short store
   * write per renewal, never inside a transaction around a runner call.
   */
  #renewLeases(claimed: readonly JobRow[], deadline: AbortSignal): { stop(): Promise<void> } {
    const ids = claimed.map((r) => Number(r.id));
    let pending: Promise<void> = Promise.resolve();
    const renew = (): void => {
      if (deadline.aborted) {
        clearInterval(timer);
        return;
      }
      pending = pending.then(async () => {
        const now = this.#clock.now();
        try {
          await this.#store.renewLeases(ids, this.#owner, now + this.#leaseMs, now);
        } catch (error) {
          this.#host.error(error, 'renew submit leases');
        }
      });
    };
    const timer = setInterval(renew, Math.max(1, Math.floor(this.#leaseMs / 3)));
    timer.unref();
    return {
      stop: async () => {
        clearInterval(timer);
        await pending;
      },
    };
  }

  /** Exponential backoff with jitter; null when the attempt budget is spent. */
  #retryAt(row: JobRow): number | null {
    const used = Number(row.attempt) - Number(row.attempt_base);
    if (used >= Number(row.max_attempts)) return null;
    const b = {
      ...DEFAULT_BACKOFF,
      ...(row.backoff ? (JSON.parse(row.backoff) as BackoffOptions) : {}),
    };
    const base = Math.min(b.maxMs, b.initialMs * b.factor ** Math.max(0, used - 1));
    const spread = base * b.jitter * (Math.random() * 2 - 1);
    return this.#clock.now() + Math.max(0, Math.round(base + spread));
  }

  /** One poll per runner with all its live handles; returns how many jobs ended. */
  async #poll(force: boolean): Promise<number> {
    const byRunner = new Map<Runner, string[]>();
    for (const [name, t] of this.#targets)
      byRunner.set(t.runner, [...(byRunner.get(t.runner) ?? []), name]);
    let ended = 0;
    for (const [runner, targets] of byRunner) {
      const now = Date.now();
      const last = this.#lastPoll.get(runner);
      // A hand-called tick() still respects the runner's own minimum (cluster etiquette).
      const min = force ? runner.capabilities.minPollIntervalMs : this.#pollInterval(runner);
      if (last !== undefined && now - last < min) continue;
      const live = await this.#store.liveJobs(targets);
      this.#lastPoll.set(runner, now);
      if (live.length === 0) continue;
      let statuses: RunnerStatus[];
      try {
        statuses = await runner.poll(live.map((r) => JSON.parse(r.handle!) as RunnerHandle));
      } catch (error) {
        this.#host.error(error, `poll ${runner.kind}`);
        continue;
      }
      const updates: StatusUpdate[] = [];
      for (const [i, row] of live.entries()) {
        const status = statuses[i];
        if (!status) continue;
        updates.push({ id: Number(row.id), attempt: Number(row.attempt), status });
        if (isTerminalRunnerState(status.state)) ended++;
        else if (Number(row.cancel_requested) === 1) {
          await runner
            .cancel(JSON.parse(row.handle!) as RunnerHandle)
            .catch((e: unknown) => this.#host.error(e, `cancel job ${row.id}`));
        }
      }
      await this.#store.applyStatuses(updates, (row) => this.#retryAt(row), this.#clock.now());
    }
    return ended;
  }

  /**
   * Heals claims whose scheduler died between claim and record: adopt the handle the runner
   * knows under the job key, resubmit (same key) if it never saw it, or fail the job when the
   * runner cannot tell (it does not declare `capabilities.find`).
   */
  async #recover(deadOwner: string | null): Promise<void> {
    const rows = await this.#store.expiredLeases(this.#clock.now(), this.#targetNames, deadOwner);
    for (const row of rows) {
      const runner = this.#targets.get(row.target)?.runner;
      if (!runner) continue;
      const id = Number(row.id);
      const attempt = Number(row.attempt);
      try {
        let outcome: LeaseOutcome;
        if (canFind(runner)) {
          const handle = await runner.find(jobKey(this.#store.storeId, id, attempt));
          outcome = handle ? { handle } : { resubmit: true };
        } else {
          outcome = {
            failReason:
              'submission outcome unknown after a crash and the runner has no find(): retry the job if it did not run',
          };
        }
        await this.#store.resolveLease(id, attempt, row.lease_owner, outcome, this.#clock.now());
      } catch (error) {
        this.#host.error(error, `recover job ${id}`);
      }
    }
  }
}

/** Whether the runner declares `find` (resolveTargets checks the method exists with it). */
function canFind(runner: Runner): runner is Runner & { find: NonNullable<Runner['find']> } {
  return runner.capabilities.find;
}
