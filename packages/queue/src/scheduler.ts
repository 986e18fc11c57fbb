// The scheduler loop of a Queue (the consumer side, as BullMQ's Worker is to its Queue): claim,
// submit, poll, recover, back off, wake up. Runner calls happen between store transactions,
// never inside one; the store's guarded updates make every outcome safe to record late, twice,
// or from another process. While submits are in flight their leases are renewed, so only a
// dead scheduler's claim is ever recovered. Each target has its own lane (recover, then submit)
// and each runner its own poll, run beside the loop: a target that hangs or is unreachable holds
// only its own lane, for at most its deadlines, then waits out its backoff.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { ArtifactStore } from '@crystalmath/core';
import {
  isCrystalMathError,
  isPermanentTargetError,
  isTerminalRunnerState,
  isTransientTargetError,
  type Runner,
  type RunnerHandle,
  type RunnerStatus,
  rootErrorCode,
} from '@crystalmath/core';
import type { ResolvedTarget } from './attorney.js';
import { decodeSpec, errorMessage } from './codec.js';
import { Collector, sweepStaging } from './collector.js';
import { DEFAULT_HEARTBEAT_MS, Heartbeat } from './heartbeat.js';
import { stageFromJobs } from './inputs.js';
import { callRunner, type RunnerOperation, TargetHealth } from './runner-call.js';
import { jobKey, type LeaseOutcome } from './store/rules.js';
import type { JobRow, QueueStore, StatusUpdate, SubmittedResult } from './store/store.js';
import type {
  BackoffOptions,
  Clock,
  Logger,
  SchedulerOptions,
  StoreHealth,
  TargetHealthEvent,
  TargetUnreachable,
} from './types.js';

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
  /** A target became unreachable, or answers again. */
  targetHealth(event: TargetHealthEvent): void;
}

const NEVER_REACHED = 'the target answers again and never saw the submit: resubmitting';

/** How long start() waits for its first heartbeat write before going on (the write goes on). */
const FIRST_BEAT_WAIT_MS = 1_000;

/** How long stop() waits for runner calls in flight before aborting them. */
export const DEFAULT_STOP_TIMEOUT_MS = 5_000;

/** A claim whose submit outcome is unknown (the target stopped answering): resolved by find(). */
interface Parked {
  readonly row: JobRow;
  readonly at: number;
  /** The abandoned submit call has settled (a late find cannot race it any more). */
  settled: boolean;
  /** What the abandoned call returned after all, if it did. */
  handle: RunnerHandle | null;
}

export interface SchedulerInternals {
  readonly store: QueueStore;
  readonly targets: ReadonlyMap<string, ResolvedTarget>;
  readonly logger: Logger | undefined;
  readonly clock: Clock;
  readonly scheduler: SchedulerOptions;
  /** Where outputs are collected, or null when collection is off. */
  readonly artifacts: { readonly store: ArtifactStore; readonly stagingDir: string } | null;
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
  readonly #stopTimeoutMs: number;
  readonly #lastPoll = new Map<Runner, number>();
  readonly #health = new Map<string, TargetHealth>();
  /** Each target's lane in flight (recover + submit), at most one per target. */
  readonly #lanes = new Map<string, Promise<void>>();
  /** Each runner's poll in flight, at most one per runner. */
  readonly #polls = new Map<Runner, Promise<void>>();
  readonly #parked = new Map<string, Map<number, Parked>>();
  /**
   * Per target, by job id: store writes of a lane that failed with E_STORE (the store is down),
   * done again, in order, by the target's next lane before it claims anything. Every one is
   * guarded (state, attempt, lease owner), so one that comes too late changes nothing.
   */
  readonly #pending = new Map<string, Map<number, () => Promise<void>>>();
  /** Pending writes are tried again from then on (the store backoff after a failed one). */
  #pendingNotBefore = 0;
  #stopSignal = new AbortController();
  #running = false;
  #recoverOwn = false;
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
  readonly #heartbeat: Heartbeat;
  readonly #collector: Collector | null;
  readonly #stagingDir: string | null;
  readonly #artifactStore: ArtifactStore | null;

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
    this.#stopTimeoutMs = s.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    for (const [name, t] of internals.targets)
      this.#health.set(name, new TargetHealth(t.unreachableBackoff));
    this.#heartbeat = new Heartbeat({
      store: this.#store,
      clock: this.#clock,
      owner: this.#owner,
      targets: this.#targetNames,
      intervalMs: s.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
      health: () => {
        const down = new Map<string, TargetUnreachable>();
        for (const [name, h] of this.#health) if (h.unreachable) down.set(name, h.unreachable);
        return down;
      },
      storeDown: () => this.#storeFailures > 0,
      error: (error, context) => host.error(error, context),
    });
    const a = internals.artifacts;
    this.#stagingDir = a?.stagingDir ?? null;
    this.#artifactStore = a?.store ?? null;
    this.#collector =
      a === null
        ? null
        : new Collector({
            store: this.#store,
            artifacts: a.store,
            stagingDir: a.stagingDir,
            targets: this.#targets,
            clock: this.#clock,
            logger: this.#log,
            concurrency: s.collectConcurrency ?? 4,
            retry: (row) => this.#retryAt(row),
            call: (target, operation, call) => this.#call(target, operation, call),
            error: (error, context) => this.#host.error(error, context),
            ended: () => this.wake(),
          });
  }

  /** This scheduler's lease owner id. */
  get ownerId(): string {
    return this.#owner;
  }

  /** Why a target of this process cannot be reached now, or null. */
  unreachable(target: string): TargetUnreachable | null {
    return this.#health.get(target)?.unreachable ?? null;
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
    if (this.#stopSignal.signal.aborted) this.#stopSignal = new AbortController();
    // Claims this owner left behind in a previous life go to the first round's lanes.
    this.#recoverOwn = true;
    this.#nextRecovery = this.#clock.now() + this.#recoveryInterval();
    this.#collector?.kick();
    if (this.#stagingDir !== null) {
      // Staging copies a crash left behind; younger ones may be another process's collection.
      const maxAge = Math.max(...[...this.#targets.values()].map((t) => t.deadlines.collectMs), 0);
      await sweepStaging(this.#stagingDir, maxAge + 60_000, Date.now());
    }
    if (this.#store.subscribe) {
      try {
        this.#unsubscribe = await this.#store.subscribe(() => this.wake());
      } catch (error) {
        this.#host.error(error, 'subscribe to store notifications');
      }
    }
    this.#loop = this.#run();
    // Recorded in the store for every process (`queue.schedulers()`); a store that is slow to
    // answer delays start() by FIRST_BEAT_WAIT_MS at most.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#heartbeat.start(),
      new Promise<void>((r) => {
        timer = setTimeout(r, FIRST_BEAT_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  /**
   * Ends the loop; waits for runner calls in flight at most `stopTimeoutMs`, then aborts their
   * signals (their claims stay leased and are resolved through find() later) and returns.
   */
  async stop(): Promise<void> {
    this.#running = false;
    this.wake();
    const inFlight = (): Promise<unknown> =>
      Promise.all([
        this.#loop,
        this.#tickChain.catch(() => undefined),
        ...this.#lanes.values(),
        ...this.#polls.values(),
        ...(this.#collector?.inFlight() ?? []),
      ]);
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      inFlight().then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), this.#stopTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (late) {
      this.#log.warn?.('[queue] stop: runner calls still in flight, abandoning them', {
        afterMs: this.#stopTimeoutMs,
      });
      this.#stopSignal.abort();
      await inFlight(); // every runner call rejects at once now; only short store writes remain
    }
    this.#loop = null;
    await this.#heartbeat.stop();
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = null;
    await unsubscribe?.().catch((e: unknown) => this.#host.error(e, 'unsubscribe'));
  }

  /** One scheduling round now (after the one in progress, if any), and the runner calls it started. */
  tick(): Promise<void> {
    return this.#serial(async () => {
      await this.#tick(true);
      await Promise.all([
        ...this.#lanes.values(),
        ...this.#polls.values(),
        ...(this.#collector?.inFlight() ?? []),
      ]);
      // What this round's polls moved to `collecting` is collected in the same round by hand.
      if (this.#collector) {
        this.#collector.start(this.#targetNames, this.#recoveryInterval());
        await Promise.all(this.#collector.inFlight());
      }
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
    void this.#heartbeat.beat();
  }

  #nextDelay(): number {
    let delay = this.#tickMs;
    const now = Date.now();
    for (const [name, { runner }] of this.#targets) {
      const last = this.#lastPoll.get(runner) ?? 0;
      delay = Math.min(delay, Math.max(0, last + this.#pollInterval(runner) - now));
      const down = this.#health.get(name)!.unreachable;
      if (down) delay = Math.min(delay, Math.max(0, down.retryAt - now));
      if (this.#pending.get(name)?.size)
        delay = Math.min(delay, Math.max(0, this.#pendingNotBefore - now));
    }
    return Math.max(delay, 1);
  }

  #pollInterval(runner: Runner): number {
    return Math.max(this.#pollMs, runner.capabilities.minPollIntervalMs);
  }

  /** Targets whose lane may start now: none in flight, not waiting out an outage's backoff. */
  #freeTargets(): string[] {
    const now = Date.now();
    return this.#targetNames.filter(
      (t) => !this.#lanes.has(t) && !this.#health.get(t)!.waiting(now),
    );
  }

  /**
   * One round: read what to recover (now and then), claim for the free targets, start their
   * lanes and the polls that are due, without waiting for any runner. True = go again.
   */
  async #tick(force: boolean): Promise<boolean> {
    const now = this.#clock.now();
    const free = this.#freeTargets();
    let expired: JobRow[] = [];
    if ((now >= this.#nextRecovery || this.#recoverOwn) && free.length > 0) {
      const own = this.#recoverOwn ? this.#owner : null;
      this.#recoverOwn = false;
      this.#nextRecovery = now + this.#recoveryInterval();
      expired = await this.#store.expiredLeases(now, free, own);
    }
    // An unreachable target whose try is due is probed with its parked claims, else one claim.
    // A target with store writes still to do gets them done first, and claims in a later round.
    const claiming = free.filter((t) => !this.#pending.get(t)?.size);
    const healthy = claiming.filter((t) => this.#health.get(t)!.unreachable === null);
    const probed = claiming.filter(
      (t) => this.#health.get(t)!.unreachable !== null && !this.#parked.get(t)?.size,
    );
    const claimed =
      healthy.length === 0
        ? []
        : await this.#store.claim(this.#owner, now, this.#leaseMs, this.#claimBatch, healthy);
    for (const t of probed)
      claimed.push(...(await this.#store.claim(this.#owner, now, this.#leaseMs, 1, [t])));
    for (const target of free) {
      const recover = expired.filter((r) => r.target === target);
      const mine = claimed.filter((r) => r.target === target);
      const flush =
        Date.now() >= this.#pendingNotBefore ? (this.#pending.get(target)?.size ?? 0) : 0;
      const waiting = (this.#parked.get(target)?.size ?? 0) + flush;
      if (recover.length + mine.length + waiting === 0) continue;
      const lane = this.#lane(target, recover, mine)
        .catch((error: unknown) => this.#laneError(error, `target ${target}`))
        .finally(() => {
          this.#lanes.delete(target);
          this.wake();
        });
      this.#lanes.set(target, lane);
    }
    // A round by hand keeps its order (claim, submit, then poll what was submitted); the loop
    // does not wait: the next round polls what this one submitted.
    if (force) await Promise.all(this.#lanes.values());
    this.#collector?.start(
      this.#targetNames.filter((t) => !this.#health.get(t)!.waiting(Date.now())),
      this.#recoveryInterval(),
    );
    this.#startPolls(force);
    this.#host.notify(); // not a wake-up: a round must not wake the loop for itself
    return claimed.length >= this.#claimBatch;
  }

  // ---------------------------------------------------------------- target health

  #call<T>(
    target: string,
    operation: RunnerOperation,
    call: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const t = this.#targets.get(target)!;
    const deadline = t.deadlines[`${operation}Ms`];
    return callRunner(target, operation, deadline, this.#stopSignal.signal, call);
  }

  /** Records an unreachable-target fault; one event and one log line per outage. */
  #unreachable(target: string, error: unknown): void {
    const health = this.#health.get(target)!;
    const lastError = errorMessage(error);
    if (health.failed(Date.now(), lastError)) {
      const since = health.unreachable!.since;
      this.#log.warn?.('[queue] target unreachable: its jobs wait', { target, error: lastError });
      this.#host.targetHealth({ type: 'target:unreachable', at: since, target, since, lastError });
      void this.#heartbeat.beat();
    }
  }

  #reachable(target: string): void {
    const since = this.#health.get(target)!.answered();
    if (since === null) return;
    const at = Date.now();
    this.#log.info?.('[queue] target reachable again', { target, downMs: at - since });
    this.#host.targetHealth({ type: 'target:reachable', at, target, since });
    void this.#heartbeat.beat();
  }

  // ---------------------------------------------------------------- lanes: recover, submit

  /**
   * A target's lane: first the claims whose outcome is unknown (parked here, or expired leases),
   * resolved through find(); then the new claims, submitted. It ends early, releasing the
   * claims it did not try, as soon as the target proves unreachable.
   */
  async #lane(
    target: string,
    expired: readonly JobRow[],
    claimed: readonly JobRow[],
  ): Promise<void> {
    const pending = this.#pending.get(target);
    if (pending?.size) {
      if (Date.now() < this.#pendingNotBefore) return;
      for (const [id, write] of [...pending]) {
        pending.delete(id);
        try {
          await write();
        } catch (error) {
          // Still down: this one and the rest wait for the next try, after the store backoff.
          if (!pending.has(id)) pending.set(id, write);
          if (isCrystalMathError(error, 'E_STORE'))
            this.#pendingNotBefore = Date.now() + this.#storeDown(error);
          else this.#host.error(error, `store write of job ${id}`);
          return;
        }
      }
    }
    const parked = this.#parked.get(target) ?? new Map<number, Parked>();
    this.#parked.set(target, parked);
    const unknown: { row: JobRow; owner: string | null; handle: RunnerHandle | null }[] = [];
    const now = Date.now();
    for (const p of parked.values()) {
      // An abandoned call that never settled is given the lease's time, as a crashed one is.
      if (p.settled || now - p.at >= this.#leaseMs)
        unknown.push({ row: p.row, owner: this.#owner, handle: p.handle });
    }
    for (const row of expired)
      if (!parked.has(Number(row.id)) && !pending?.has(Number(row.id)))
        unknown.push({ row, owner: row.lease_owner, handle: null });
    // The first one probes the target; the rest go together once it answered.
    const one = async (u: (typeof unknown)[number]): Promise<boolean> => {
      const resolved = await this.#resolve(target, u.row, u.owner, u.handle);
      if (resolved === 'unreachable') return false;
      parked.delete(Number(u.row.id));
      return true;
    };
    if (unknown.length > 0) {
      const [first, ...rest] = unknown;
      if (!(await one(first!))) return this.#release(claimed, target);
      const results = await Promise.all(rest.map(one));
      if (results.includes(false)) return this.#release(claimed, target);
    }
    if (claimed.length > 0) await this.#submit(target, claimed);
  }

  /**
   * Resolves one claim whose submit outcome is unknown: adopt the handle the runner knows under
   * the job key, resubmit the SAME attempt if it never saw it, or fail the job when the runner
   * cannot tell (no `capabilities.find`).
   */
  async #resolve(
    target: string,
    row: JobRow,
    owner: string | null,
    known: RunnerHandle | null,
  ): Promise<'done' | 'unreachable'> {
    const runner = this.#targets.get(target)!.runner;
    const id = Number(row.id);
    const attempt = Number(row.attempt);
    try {
      let outcome: LeaseOutcome;
      if (known) outcome = { handle: known };
      else if (canFind(runner)) {
        const key = jobKey(this.#store.storeId, id, attempt);
        const handle = await this.#call(target, 'find', (signal) => runner.find(key, { signal }));
        this.#reachable(target);
        outcome = handle
          ? { handle }
          : { resubmit: true, ...(owner === this.#owner ? { reason: NEVER_REACHED } : {}) };
      } else {
        outcome = {
          failReason:
            'submission outcome unknown after a crash and the runner has no find(): retry the job if it did not run',
        };
      }
      await this.#storeOrLater(target, id, `recover job ${id}`, () =>
        this.#store.resolveLease(id, attempt, owner, outcome, this.#clock.now()),
      );
    } catch (error) {
      if (!isCrystalMathError(error, 'E_STORE') && isTransientTargetError(error)) {
        this.#unreachable(target, error);
        return 'unreachable';
      }
      this.#host.error(error, `recover job ${id}`);
    }
    return 'done';
  }

  /**
   * One store write of a lane. When it fails with E_STORE (the store is down, locked past its
   * deadline, or damaged), the outage is reported as the loop reports it (`store:down`), never
   * as the job's or the target's fault, and the write is kept to be done again by the target's
   * next lane; other errors are thrown.
   */
  async #storeOrLater(
    target: string,
    id: number,
    what: string,
    write: () => Promise<unknown>,
  ): Promise<void> {
    try {
      await write();
    } catch (error) {
      if (!isCrystalMathError(error, 'E_STORE')) throw error;
      this.#pendingNotBefore = Date.now() + this.#storeDown(error);
      this.#log.warn?.('[queue] store write failed: kept to be done again', {
        target,
        job: id,
        what,
        error: error.message,
      });
      this.#later(target, id, write);
    }
  }

  /** Keeps a store write of a job to be done again by its target's next lane. */
  #later(target: string, id: number, write: () => Promise<unknown>): void {
    const pending = this.#pending.get(target) ?? new Map<number, () => Promise<void>>();
    this.#pending.set(target, pending);
    pending.set(id, async () => {
      await write();
    });
  }

  /** An error that ended a lane or a poll: a store outage is reported as such, once. */
  #laneError(error: unknown, context: string): void {
    if (isCrystalMathError(error, 'E_STORE')) this.#storeDown(error);
    else this.#host.error(error, context);
  }

  /** Claims not tried (the target is unreachable): back to ready, same attempt, no event noise. */
  async #release(rows: readonly JobRow[], target: string): Promise<void> {
    const why = `target ${target} unreachable: waiting for it`;
    for (const row of rows) {
      const id = Number(row.id);
      try {
        await this.#storeOrLater(target, id, `release job ${id}`, () =>
          this.#store.resolveLease(
            id,
            Number(row.attempt),
            this.#owner,
            { resubmit: true, reason: why },
            this.#clock.now(),
          ),
        );
      } catch (error) {
        this.#host.error(error, `release job ${row.id}`);
      }
    }
  }

  async #submit(target: string, claimed: readonly JobRow[]): Promise<void> {
    const runner = this.#targets.get(target)!.runner;
    const health = this.#health.get(target)!;
    const ok: SubmittedResult[] = [];
    const untried: JobRow[] = [];
    // Probing an unreachable target: one call first, the rest once it answers. Once a call
    // finds the target unreachable, the claims not yet tried go back untouched.
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let row = claimed[next++]; row !== undefined; row = claimed[next++]) {
        if (health.unreachable !== null || this.#stopSignal.signal.aborted) untried.push(row);
        else await this.#submitOne(target, runner, row, ok);
      }
    };
    const renewal = this.#renewLeases(claimed);
    try {
      if (health.unreachable !== null) {
        next = 1;
        await this.#submitOne(target, runner, claimed[0]!, ok);
      }
      const width = Math.min(this.#submitConcurrency, claimed.length - next);
      await Promise.all(Array.from({ length: Math.max(1, width) }, worker));
    } finally {
      await renewal.stop();
    }
    await this.#release(untried, target);
    await this.#recordSubmitted(target, ok);
  }

  /** Cancels on the runner the submissions of jobs cancelled meanwhile, and records it. */
  async #cancelSubmitted(target: string, toCancel: readonly SubmittedResult[]): Promise<void> {
    const runner = this.#targets.get(target)!.runner;
    for (const r of toCancel) {
      try {
        await this.#call(target, 'cancel', (signal) => runner.cancel(r.handle, { signal }));
      } catch (error) {
        if (isTransientTargetError(error)) this.#unreachable(target, error);
        else this.#host.error(error, `cancel job ${r.id}`);
        continue;
      }
      await this.#storeOrLater(target, r.id, `record the cancel of job ${r.id}`, () =>
        this.#store.markCancelled(r.id, this.#clock.now()),
      ).catch((error: unknown) => this.#host.error(error, `cancel job ${r.id}`));
    }
  }

  /**
   * Records the handles, retrying a failed store write (connection lost, file locked) with the
   * store backoff while the claims' leases last: the handles exist only in memory, and the
   * guarded update makes a second try after an unknown outcome (commit sent, answer lost) a
   * no-op. Past half the lease (or at stop), each handle is kept as a pending write of its
   * target, done by the target's next lane once the store answers: the job is adopted with the
   * handle its runner returned, never submitted again and never failed for the store's fault.
   */
  async #recordSubmitted(target: string, ok: readonly SubmittedResult[]): Promise<void> {
    if (ok.length === 0) return;
    const giveUp = Date.now() + this.#leaseMs / 2;
    for (let failures = 1; ; failures++) {
      try {
        const toCancel = await this.#store.recordSubmitted(ok, this.#owner, this.#clock.now());
        await this.#cancelSubmitted(target, toCancel);
        return;
      } catch (error) {
        if (!isCrystalMathError(error, 'E_STORE')) throw error;
        this.#pendingNotBefore = Date.now() + this.#storeDown(error);
        if (!this.#running || Date.now() >= giveUp) {
          for (const r of ok)
            this.#later(target, r.id, async () =>
              this.#cancelSubmitted(
                target,
                await this.#store.recordSubmitted([r], this.#owner, this.#clock.now()),
              ),
            );
          return;
        }
        const b = STORE_BACKOFF;
        const base = Math.min(b.maxMs, b.initialMs * b.factor ** (failures - 1));
        await this.sleep(
          base * (1 + b.jitter * (Math.random() * 2 - 1)),
          this.#stopSignal.signal,
          true,
        );
      }
    }
  }

  async #submitOne(
    target: string,
    runner: Runner,
    row: JobRow,
    ok: SubmittedResult[],
  ): Promise<void> {
    const id = Number(row.id);
    const attempt = Number(row.attempt);
    const key = jobKey(this.#store.storeId, id, attempt);
    let inner: Promise<RunnerHandle> | undefined;
    try {
      const handle = await this.#call(target, 'submit', async (signal) => {
        // Inputs from other jobs: copied out of the artifact store first (within the deadline).
        const staged = await stageFromJobs(
          row,
          decodeSpec(row.spec),
          this.#store,
          this.#artifactStore,
          this.#stagingDir,
          signal,
        );
        inner = runner.submit({ key, spec: staged.spec }, { signal }).finally(() => staged.done());
        return inner;
      });
      this.#reachable(target);
      ok.push({ id, attempt, handle });
      return;
    } catch (error) {
      if (this.#stopSignal.signal.aborted) return; // leased: the next start resolves it
      if (isTransientTargetError(error)) {
        // The outcome is unknown (the command may have started): resolved through find()
        // once the target answers, never submitted again blindly.
        this.#unreachable(target, error);
        this.#park(target, row, inner);
        return;
      }
      await this.#submitFailed(target, runner, row, error);
    }
  }

  #park(target: string, row: JobRow, inner: Promise<RunnerHandle> | undefined): void {
    const parked = this.#parked.get(target)!;
    const p: Parked = { row, at: Date.now(), settled: inner === undefined, handle: null };
    parked.set(Number(row.id), p);
    inner?.then(
      (handle) => {
        p.handle = handle;
        p.settled = true;
      },
      () => {
        p.settled = true;
      },
    );
  }

  /** A submit that failed for a reason of the job or a permanent fault of the target. */
  async #submitFailed(target: string, runner: Runner, row: JobRow, error: unknown): Promise<void> {
    const id = Number(row.id);
    const attempt = Number(row.attempt);
    const key = jobKey(this.#store.storeId, id, attempt);
    // The submission may have landed before the error (a dropped connection): ask first.
    const found = canFind(runner)
      ? await this.#call(target, 'find', (signal) => runner.find(key, { signal })).catch(() => null)
      : null;
    if (found) {
      await this.#recordSubmitted(target, [{ id, attempt, handle: found }]);
      return;
    }
    const code = rootErrorCode(error);
    const message = errorMessage(error);
    const reason = `submit failed: ${code && !message.includes(code) ? `${code}: ` : ''}${message}`;
    // A bad spec, or a target whose credentials or settings are refused: another attempt
    // cannot help, so the job fails now with the typed reason.
    const invalid =
      isCrystalMathError(error, 'E_VALIDATION') ||
      isCrystalMathError(error, 'E_PATH_UNSAFE') ||
      isPermanentTargetError(error);
    const retryAt = invalid ? null : this.#retryAt(row);
    try {
      await this.#storeOrLater(target, id, `record the failed submit of job ${id}`, () =>
        this.#store.recordSubmitFailed(
          id,
          attempt,
          this.#owner,
          reason,
          retryAt,
          this.#clock.now(),
        ),
      );
    } catch (storeError) {
      this.#host.error(storeError, `record failed submit of job ${id}`);
    }
    this.#log.warn?.('[queue] submit failed', { job: id, reason });
  }

  /**
   * Extends the leases of `claimed` every third of `leaseMs` until `stop()` (as BullMQ extends
   * its job locks), so a slow submit never looks abandoned to another scheduler. One short
   * store write per renewal, never inside a runner call's transaction.
   */
  #renewLeases(claimed: readonly JobRow[]): { stop(): Promise<void> } {
    const ids = claimed.map((r) => Number(r.id));
    let pending: Promise<void> = Promise.resolve();
    const renew = (): void => {
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

  // ---------------------------------------------------------------- polls

  /** Starts one poll per runner that is due, has no poll in flight and a reachable target. */
  #startPolls(force: boolean): void {
    const byRunner = new Map<Runner, string[]>();
    for (const [name, t] of this.#targets)
      byRunner.set(t.runner, [...(byRunner.get(t.runner) ?? []), name]);
    const now = Date.now();
    for (const [runner, names] of byRunner) {
      if (this.#polls.has(runner)) continue;
      const targets = names.filter((t) => !this.#health.get(t)!.waiting(now));
      if (targets.length === 0) continue;
      const last = this.#lastPoll.get(runner);
      // A hand-called tick() still respects the runner's own minimum (cluster etiquette).
      const min = force ? runner.capabilities.minPollIntervalMs : this.#pollInterval(runner);
      if (last !== undefined && now - last < min) continue;
      this.#lastPoll.set(runner, now);
      const poll = this.#poll(runner, targets)
        .then((ended) => {
          if (ended > 0) this.wake(); // an ended job may have released dependents
        })
        .catch((error: unknown) => this.#laneError(error, `poll ${runner.kind}`))
        .finally(() => {
          this.#polls.delete(runner);
          this.#host.notify();
        });
      this.#polls.set(runner, poll);
    }
  }

  /** One poll of `runner` with all the live handles of `targets`; returns how many jobs ended. */
  async #poll(runner: Runner, targets: readonly string[]): Promise<number> {
    const live = await this.#store.liveJobs(targets);
    if (live.length === 0) return 0;
    // A runner shared by targets is polled once, within the longest of their deadlines.
    const lead = targets.reduce((a, b) =>
      this.#targets.get(b)!.deadlines.pollMs > this.#targets.get(a)!.deadlines.pollMs ? b : a,
    );
    let statuses: RunnerStatus[];
    try {
      statuses = await this.#call(lead, 'poll', (signal) =>
        runner.poll(
          live.map((r) => JSON.parse(r.handle!) as RunnerHandle),
          { signal },
        ),
      );
    } catch (error) {
      if (this.#stopSignal.signal.aborted) return 0;
      if (isTransientTargetError(error)) for (const t of targets) this.#unreachable(t, error);
      else this.#host.error(error, `poll ${runner.kind}`);
      return 0;
    }
    for (const t of targets) this.#reachable(t);
    let ended = 0;
    const updates: StatusUpdate[] = [];
    for (const [i, row] of live.entries()) {
      const status = statuses[i];
      if (!status) continue;
      const collect = isTerminalRunnerState(status.state) && this.#collector?.wants(row, status);
      updates.push({
        id: Number(row.id),
        attempt: Number(row.attempt),
        status,
        ...(collect ? { collect: true } : {}),
      });
      if (isTerminalRunnerState(status.state)) ended++;
      else if (Number(row.cancel_requested) === 1) {
        const handle = JSON.parse(row.handle!) as RunnerHandle;
        await this.#call(row.target, 'cancel', (signal) => runner.cancel(handle, { signal })).catch(
          (e: unknown) => {
            if (isTransientTargetError(e)) this.#unreachable(row.target, e);
            else this.#host.error(e, `cancel job ${row.id}`);
          },
        );
      }
    }
    await this.#store.applyStatuses(updates, (row) => this.#retryAt(row), this.#clock.now());
    // Only now, once they are committed as `collecting`: a lane started before would miss them.
    if (updates.some((u) => u.collect)) this.#collector?.kick();
    return ended;
  }
}

/** Whether the runner declares `find` (resolveTargets checks the method exists with it). */
function canFind(runner: Runner): runner is Runner & { find: NonNullable<Runner['find']> } {
  return runner.capabilities.find;
}
