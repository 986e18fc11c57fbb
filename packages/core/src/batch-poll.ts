// What a batch-scheduler runner (SLURM, Grid Engine, a custom one) does around its one poll
// command, written once: the handle check of a `{ jobId, jobDir, arrayTasks? }` handle, and the
// status cache that throttles calls to the scheduler (cluster etiquette), keeps ended jobs' last
// status, and turns a job no source knows into `lost` only after a grace period.

import { constants } from 'node:os';
import { AbortError, CrystalMathError, throwIfAborted } from './errors.js';
import { isValidJobKey, type RunnerHandle } from './runner.js';
import { isTerminalRunnerState, type RunnerState, type RunnerStatus } from './status.js';

/** A batch job as the poll needs it: the scheduler's id and, for arrays, the task count. */
export interface BatchJobRef {
  readonly jobId: string;
  readonly arrayTasks?: number;
}

/** Options of `parseBatchHandle`. */
export interface ParseBatchHandleOptions {
  /** The runner's `kind`, which the handle must carry. */
  readonly kind: string;
  /** Message prefix, e.g. `runner-sge`. */
  readonly label: string;
  /** The job directory this runner gives `jobKey`; the handle's `data.jobDir` must be it. */
  readonly jobDir: (jobKey: string) => string;
  /** The runner's root, named in the error when the handle's directory is elsewhere. */
  readonly root: string;
  /** The argument's name in errors (`handle`, `handles[3]`). */
  readonly field?: string;
}

/**
 * Checks a batch runner's handle (`kind`, a valid `jobKey`, a numeric `data.jobId`, a
 * `data.jobDir` under this runner's root) and returns its job reference and directory. A handle
 * from elsewhere is `E_RUNNER_HANDLE` naming the field, so a runner never acts on a directory
 * it did not make.
 */
export function parseBatchHandle<D>(
  handle: RunnerHandle,
  options: ParseBatchHandleOptions,
): BatchJobRef & { readonly jobDir: string; readonly data: D } {
  const field = options.field ?? 'handle';
  const bad = (why: string): CrystalMathError =>
    new CrystalMathError('E_RUNNER_HANDLE', `[${options.label}] ${field}: ${why}`, {
      details: { field },
    });
  if (typeof handle !== 'object' || handle === null || handle.kind !== options.kind) {
    throw bad(`is not a ${options.kind} handle`);
  }
  if (!isValidJobKey(handle.jobKey)) throw bad('has an invalid jobKey');
  const d = handle.data as Record<string, unknown>;
  if (typeof d.jobId !== 'string' || !/^\d{1,12}$/.test(d.jobId)) {
    throw bad('has no valid data.jobId');
  }
  const jobDir = options.jobDir(handle.jobKey);
  if (d.jobDir !== jobDir) throw bad(`belongs to another root than ${options.root}`);
  const arrayTasks =
    typeof d.arrayTasks === 'number' && Number.isInteger(d.arrayTasks) && d.arrayTasks > 0
      ? d.arrayTasks
      : undefined;
  return {
    jobId: d.jobId,
    jobDir,
    data: handle.data as unknown as D,
    ...(arrayTasks === undefined ? {} : { arrayTasks }),
  };
}

/** Options of `new BatchStatusCache(...)`. */
export interface BatchStatusCacheOptions {
  /** Smallest interval between two scheduler calls, in ms; a poll sooner waits or is served from the cache. */
  readonly minIntervalMs: number;
  /** How long a job no source knows keeps its last status before it is `lost`, in ms. */
  readonly lostGraceMs: number;
  /** Message prefix, e.g. `runner-slurm`. */
  readonly label: string;
  /** The sources a lost job is absent from, for its reason: `squeue and accounting`. */
  readonly sources: string;
}

/** The most job statuses kept; the oldest goes first. */
const CACHE_LIMIT = 20_000;

/**
 * The status side of a batch runner's `poll`: `poll(jobs, refresh)` answers from the cache when
 * every job's status is fresh (or ended), else waits out `minIntervalMs` and calls `refresh`
 * ONCE with the live jobs (each id once); `refresh` runs the scheduler's poll command and
 * returns a resolver giving each job's status, or null when no source knows the job. Such a job
 * keeps its last status (with a reason) for `lostGraceMs`, then is `lost`.
 *
 * @example
 * const statuses = await cache.poll(jobs, async (live) => { const facts = await runPollScript(live); return (j) => resolveStatus(j, facts); }, signal);
 */
export class BatchStatusCache {
  readonly #options: BatchStatusCacheOptions;
  #lastCallAt = Number.NEGATIVE_INFINITY;
  readonly #cache = new Map<string, RunnerStatus>();
  readonly #absentSince = new Map<string, number>();

  constructor(options: BatchStatusCacheOptions) {
    this.#options = options;
  }

  /** The last status known for `jobId`, if any. */
  get(jobId: string): RunnerStatus | undefined {
    return this.#cache.get(jobId);
  }

  /** Forgets `jobId`'s status (after a cancel: the next poll asks the scheduler). */
  forget(jobId: string): void {
    this.#cache.delete(jobId);
  }

  /** Forgets that `jobId` was absent (after cleanup). */
  forgetAbsence(jobId: string): void {
    this.#absentSince.delete(jobId);
  }

  /** The statuses of `jobs`, in order; see the class. */
  async poll<J extends BatchJobRef>(
    jobs: readonly J[],
    refresh: (live: J[]) => Promise<(job: J) => RunnerStatus | null>,
    signal?: AbortSignal,
  ): Promise<RunnerStatus[]> {
    throwIfAborted(signal, 'poll');
    const cached = (): RunnerStatus[] | null => {
      const fresh = Date.now() - this.#lastCallAt < this.#options.minIntervalMs;
      const out: RunnerStatus[] = [];
      for (const j of jobs) {
        const c = this.#cache.get(j.jobId);
        if (c === undefined || !(fresh || isTerminalRunnerState(c.state))) return null;
        out.push(c);
      }
      return out;
    };
    const hit = cached();
    if (hit !== null) return hit;
    const wait = this.#lastCallAt + this.#options.minIntervalMs - Date.now();
    if (wait > 0) {
      await this.#sleep(wait, signal);
      // Another poll may have refreshed everything while we waited.
      const again = cached();
      if (again !== null) return again;
    }
    // Reserve the slot before the call, so concurrent polls wait instead of calling too.
    this.#lastCallAt = Date.now();
    const live = jobs.filter((j) => {
      const c = this.#cache.get(j.jobId);
      return c === undefined || !isTerminalRunnerState(c.state);
    });
    const unique = [...new Map(live.map((j) => [j.jobId, j])).values()];
    const resolve = await refresh(unique);
    const now = Date.now();
    for (const j of unique) {
      const resolved = resolve(j);
      if (resolved !== null) this.#absentSince.delete(j.jobId);
      this.#remember(j.jobId, resolved ?? this.#absent(j.jobId, now));
    }
    return jobs.map((j) => this.#cache.get(j.jobId) ?? { state: 'queued' });
  }

  /** A job no source knows: its last status during the grace period, then `lost`. */
  #absent(jobId: string, now: number): RunnerStatus {
    const { lostGraceMs, sources } = this.#options;
    const since = this.#absentSince.get(jobId) ?? now;
    this.#absentSince.set(jobId, since);
    if (now - since >= lostGraceMs) {
      this.#absentSince.delete(jobId);
      return {
        state: 'lost',
        reason: `job ${jobId} is absent from ${sources} and left no exit file (for ${Math.round((now - since) / 1000)} s)`,
      };
    }
    const last = this.#cache.get(jobId);
    const reason = `absent from ${sources} since ${new Date(since).toISOString()}; lost after ${lostGraceMs} ms`;
    return last === undefined ? { state: 'queued', reason } : { ...last, reason };
  }

  #remember(jobId: string, status: RunnerStatus): void {
    this.#cache.delete(jobId);
    this.#cache.set(jobId, status);
    if (this.#cache.size > CACHE_LIMIT) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
  }

  #sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    const label = this.#options.label;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new AbortError(`[${label}] poll aborted`, { cause: signal.reason }));
        return;
      }
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(new AbortError(`[${label}] poll aborted`, { cause: signal?.reason }));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

const SIGNAL_NAMES = new Map<number, string>(
  Object.entries(constants.signals).map(([name, num]) => [num, name]),
);

/** `9` → `SIGKILL`; unknown numbers give `SIG<n>`. For schedulers that report signal numbers. */
export function signalName(num: number): string {
  return SIGNAL_NAMES.get(num) ?? `SIG${num}`;
}

/** When array tasks ended differently, the array reports the worst, in this order. */
export const ARRAY_SEVERITY: readonly RunnerState[] = [
  'node_fail',
  'out_of_memory',
  'timeout',
  'failed',
  'lost',
  'cancelled',
  'succeeded',
];

/**
 * The status of an array job all of whose tasks ended (`done`, not empty): the worst state
 * (`ARRAY_SEVERITY`) with the native state, exit code and signal of the first task that ended
 * so, and a reason counting the tasks that did not succeed.
 */
export function endedArrayStatus(done: readonly RunnerStatus[]): RunnerStatus {
  const worst = ARRAY_SEVERITY.find((st) => done.some((s) => s.state === st)) ?? 'succeeded';
  const first = done.find((s) => s.state === worst);
  const bad = done.filter((s) => s.state !== 'succeeded').length;
  return {
    state: worst,
    reason:
      bad === 0
        ? `all ${done.length} array tasks succeeded`
        : `${bad} of ${done.length} array tasks did not succeed`,
    ...(first?.nativeState === undefined ? {} : { nativeState: first.nativeState }),
    ...(first?.exitCode === undefined ? {} : { exitCode: first.exitCode }),
    ...(first?.signal === undefined ? {} : { signal: first.signal }),
  };
}
