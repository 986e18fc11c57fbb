// Decides one job's status from what a poll gathered: squeue first (authoritative while it
// still shows the job), then accounting (`sacct`/jobcomp), then the exit file the job script
// wrote. Array jobs aggregate their tasks. Pure, so every combination is unit-tested.

import {
  type BatchJobRef,
  endedArrayStatus,
  isTerminalRunnerState,
  type RunnerStatus,
  signalName,
} from '@crystalmath/core';
import { mapSlurmState } from './map-slurm-state.js';
import type { SacctEntry } from './parse-sacct.js';
import type { SqueueEntry } from './parse-squeue.js';
import type { ExitRecord } from './poll-script.js';

/** What one poll learnt about all jobs. */
export interface PollFacts {
  readonly squeue: readonly SqueueEntry[];
  readonly acct: readonly SacctEntry[];
  readonly exits: ReadonlyMap<string, ExitRecord>;
}

/** A tracked job: its id and, for an array, the number of tasks it was submitted with (core's `BatchJobRef`). */
export type TrackedJob = BatchJobRef;

/** `9` → `SIGKILL` (core's `signalName`, kept here for existing importers). */
export { signalName };

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Status of one job (or one array task) from the three sources, or null when none knows it. */
function single(
  id: string,
  sq: SqueueEntry | undefined,
  acct: SacctEntry | undefined,
  exit: ExitRecord | undefined,
): RunnerStatus | null {
  let s: Mutable<RunnerStatus>;
  if (sq !== undefined) {
    s = { state: mapSlurmState(sq.state), nativeState: sq.state };
    if (sq.reason !== undefined) s.reason = sq.reason;
  } else if (acct !== undefined) {
    s = { state: mapSlurmState(acct.state), nativeState: acct.state };
    if (exit === undefined && acct.exitCode !== undefined) s.exitCode = acct.exitCode;
    if (exit === undefined && acct.signal !== undefined) s.signal = signalName(acct.signal);
  } else if (exit !== undefined) {
    s = {
      state: exit.exitCode === 0 ? 'succeeded' : 'failed',
      reason: `job ${id} is gone from squeue and accounting; result read from its exit file`,
    };
  } else {
    return null;
  }
  if (isTerminalRunnerState(s.state) && exit !== undefined) {
    s.exitCode = exit.exitCode;
    if (exit.signal !== undefined) s.signal = exit.signal;
  }
  if (s.state === 'succeeded' && s.exitCode === undefined) s.exitCode = 0;
  // SLURM's ExitCode for cancelled and timed-out jobs is not the command's: keep it only
  // where it means something.
  if (s.state !== 'succeeded' && s.state !== 'failed' && s.state !== 'out_of_memory') {
    if (exit === undefined) delete s.exitCode;
  }
  return s;
}

/**
 * The status of `job` from the poll's facts, or null when squeue, accounting and exit files
 * all lack it (the caller applies its grace period before `lost`).
 */
export function resolveStatus(job: TrackedJob, facts: PollFacts): RunnerStatus | null {
  const sq = facts.squeue.filter((e) => e.baseId === job.jobId);
  const acct = facts.acct.filter((e) => e.baseId === job.jobId);
  if (job.arrayTasks === undefined) {
    return single(
      job.jobId,
      sq.find((e) => e.taskId === undefined && e.pendingTasks === undefined) ?? sq[0],
      acct.find((e) => e.taskId === undefined) ?? acct[0],
      facts.exits.get(job.jobId),
    );
  }
  return resolveArray(job.jobId, job.arrayTasks, sq, acct, facts.exits);
}

function resolveArray(
  jobId: string,
  expected: number,
  sq: readonly SqueueEntry[],
  acct: readonly SacctEntry[],
  exits: ReadonlyMap<string, ExitRecord>,
): RunnerStatus | null {
  let pending = 0;
  const tasks = new Map<string, RunnerStatus>();
  const taskIds = new Set<string>();
  for (const e of sq) {
    if (e.pendingTasks !== undefined) pending += e.pendingTasks;
    else if (e.taskId !== undefined) taskIds.add(e.taskId);
  }
  for (const e of acct) if (e.taskId !== undefined) taskIds.add(e.taskId);
  const prefix = `${jobId}_`;
  for (const id of exits.keys()) if (id.startsWith(prefix)) taskIds.add(id.slice(prefix.length));
  for (const t of taskIds) {
    const s = single(
      `${jobId}_${t}`,
      sq.find((e) => e.taskId === t),
      acct.find((e) => e.taskId === t),
      exits.get(`${jobId}_${t}`),
    );
    if (s !== null) tasks.set(t, s);
  }
  // Before any task starts, squeue shows the whole array as one pending line `123_[0-9]`.
  const whole = sq.find((e) => e.taskId === undefined && e.pendingTasks === undefined);
  if (tasks.size === 0 && pending === 0) {
    return whole === undefined ? null : single(jobId, whole, undefined, undefined);
  }
  const all = [...tasks.values()];
  const done = all.filter((s) => isTerminalRunnerState(s.state));
  const running = all.some((s) => s.state === 'running');
  if (pending > 0 || done.length < all.length) {
    // Once any task has started, the array is running, even while others still wait.
    const started = running || done.length > 0;
    const s: Mutable<RunnerStatus> = {
      state: started ? 'running' : 'queued',
      reason: `${done.length} of ${expected} array tasks finished`,
    };
    const native = all.find((x) => !isTerminalRunnerState(x.state))?.nativeState;
    const pendingReason = sq.find((e) => e.pendingTasks !== undefined)?.reason;
    if (native !== undefined) s.nativeState = native;
    else if (pending > 0) s.nativeState = 'PENDING';
    if (!started && pendingReason !== undefined) s.reason = pendingReason;
    return s;
  }
  // Some tasks were forgotten by every source: treat the job as absent, so the caller's grace
  // period applies before it is reported lost.
  if (done.length < expected) return null;
  return endedArrayStatus(done);
}
