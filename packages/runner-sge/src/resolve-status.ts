// Decides one job's status from what a poll gathered: qstat first (authoritative while it still
// lists the job), then qacct, then the exit file the job script wrote and the marker `cancel`
// left. Array jobs aggregate their tasks. Pure, so every combination is unit-tested.

import {
  type BatchJobRef,
  endedArrayStatus,
  isTerminalRunnerState,
  type RunnerStatus,
  signalName,
} from '@crystalmath/core';
import { FAILED_KILLED, mapQacct, mapSgeState } from './map-sge-state.js';
import type { QacctRecord } from './parse-qacct.js';
import type { QstatEntry } from './parse-qstat-xml.js';

/** One exit file: the job script's exit code and, when it was terminated, the signal name. */
export interface ExitRecord {
  readonly exitCode: number;
  readonly signal?: string;
}

/** What one poll learnt about all jobs. */
export interface PollFacts {
  readonly qstat: readonly QstatEntry[];
  readonly qacct: readonly QacctRecord[];
  /** `<jobid>` or `<jobid>.<task>` → exit file. */
  readonly exits: ReadonlyMap<string, ExitRecord>;
  /** Job ids whose directory holds the cancel marker. */
  readonly cancelled: ReadonlySet<string>;
  /** Job id → `qstat -j` error reason, for jobs in error state. */
  readonly errors: ReadonlyMap<string, string>;
}

/** A tracked job: its id and, for an array, its number of tasks (core's `BatchJobRef`). */
export type TrackedJob = BatchJobRef;

/** `9` → `SIGKILL` (core's `signalName`, kept here for existing importers). */
export { signalName };

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function fromQstat(e: QstatEntry, errors: ReadonlyMap<string, string>): Mutable<RunnerStatus> {
  const m = mapSgeState(e.state);
  const s: Mutable<RunnerStatus> = { state: m.state, nativeState: e.state };
  const reason = m.state === 'failed' ? (errors.get(e.jobId) ?? m.reason) : m.reason;
  if (reason !== undefined) s.reason = reason;
  if (e.startedAt !== undefined && m.state === 'running') s.startedAt = e.startedAt;
  return s;
}

/** Status of one job (or one array task) from the sources, or null when none knows it. */
function single(
  id: string,
  sq: QstatEntry | undefined,
  acct: QacctRecord | undefined,
  exit: ExitRecord | undefined,
  cancelled: boolean,
  errors: ReadonlyMap<string, string>,
): RunnerStatus | null {
  if (sq !== undefined) return fromQstat(sq, errors);
  let s: Mutable<RunnerStatus>;
  if (acct !== undefined) {
    const a = mapQacct(acct);
    s = {
      state: a.state,
      nativeState: acct.failed === 0 ? `exit_status ${acct.exitStatus}` : `failed ${acct.failed}`,
    };
    if (a.reason !== undefined) s.reason = a.reason;
    if (a.exitCode !== undefined) s.exitCode = a.exitCode;
    if (a.signal !== undefined) s.signal = signalName(a.signal);
    if (acct.startedAt !== undefined) s.startedAt = acct.startedAt;
    if (acct.endedAt !== undefined) s.endedAt = acct.endedAt;
    // Killed after `cancel` asked: cancelled, never failed. A job that ended on its own first
    // (failed 0, or its exit file written) keeps its own result.
    if (
      cancelled &&
      exit === undefined &&
      (acct.failed === FAILED_KILLED || a.state === 'failed')
    ) {
      s.state = 'cancelled';
      s.reason = 'deleted by cancel (qdel)';
    }
  } else if (exit !== undefined) {
    s = {
      state: exit.exitCode === 0 ? 'succeeded' : 'failed',
      reason: `job ${id} is gone from qstat and not yet in qacct; result read from its exit file`,
    };
  } else if (cancelled) {
    return { state: 'cancelled', reason: 'deleted by cancel (qdel); no accounting record yet' };
  } else {
    return null;
  }
  // The job script's own record of its exit code is the most precise: qacct reports the
  // shell's status, which a trap may have changed.
  if ((s.state === 'succeeded' || s.state === 'failed') && exit !== undefined) {
    s.exitCode = exit.exitCode;
    if (exit.signal !== undefined) s.signal = exit.signal;
    else delete s.signal;
    if (acct?.failed === 0 || acct === undefined) {
      s.state = exit.exitCode === 0 ? 'succeeded' : 'failed';
    }
  }
  if (s.state === 'cancelled') {
    delete s.exitCode;
    delete s.signal;
  }
  return s;
}

/** Number of task ids in a pending range such as `2-4:1`, `5`, or `1-9:2`. */
export function countTaskRange(range: string): number {
  let n = 0;
  for (const part of range.split(',')) {
    const m = /^(\d+)(?:-(\d+)(?::(\d+))?)?$/.exec(part.trim());
    if (!m) continue;
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    const step = m[3] === undefined ? 1 : Number(m[3]);
    if (last >= first && step > 0) n += Math.floor((last - first) / step) + 1;
  }
  return n;
}

/**
 * The status of `job` from the poll's facts, or null when qstat, qacct, its exit file and the
 * cancel marker all lack it (the caller applies its grace period before `lost`).
 */
export function resolveStatus(job: TrackedJob, facts: PollFacts): RunnerStatus | null {
  const sq = facts.qstat.filter((e) => e.jobId === job.jobId);
  const acct = facts.qacct.filter((e) => e.jobId === job.jobId);
  const cancelled = facts.cancelled.has(job.jobId);
  if (job.arrayTasks === undefined) {
    return single(job.jobId, sq[0], acct[0], facts.exits.get(job.jobId), cancelled, facts.errors);
  }
  return resolveArray(job, sq, acct, facts, cancelled);
}

function resolveArray(
  job: TrackedJob,
  sq: readonly QstatEntry[],
  acct: readonly QacctRecord[],
  facts: PollFacts,
  cancelled: boolean,
): RunnerStatus | null {
  const expected = job.arrayTasks ?? 1;
  let pending = 0;
  let pendingEntry: QstatEntry | undefined;
  const taskIds = new Set<string>();
  for (const e of sq) {
    // A running task has one id in <tasks>; pending ones a range (`2-4:1`) or a single id.
    if (e.tasks !== undefined && mapSgeState(e.state).state === 'queued') {
      pending += countTaskRange(e.tasks);
      pendingEntry ??= e;
    } else if (e.tasks !== undefined) taskIds.add(e.tasks);
  }
  for (const e of acct) if (e.taskId !== undefined) taskIds.add(e.taskId);
  const prefix = `${job.jobId}.`;
  for (const id of facts.exits.keys()) {
    if (id.startsWith(prefix)) taskIds.add(id.slice(prefix.length));
  }
  const tasks: RunnerStatus[] = [];
  for (const t of taskIds) {
    const s = single(
      `${job.jobId}.${t}`,
      sq.find((e) => e.tasks === t && mapSgeState(e.state).state !== 'queued'),
      acct.find((e) => e.taskId === t),
      facts.exits.get(`${job.jobId}.${t}`),
      cancelled,
      facts.errors,
    );
    if (s !== null) tasks.push(s);
  }
  if (tasks.length === 0 && pending === 0) {
    return cancelled ? { state: 'cancelled', reason: 'deleted by cancel (qdel)' } : null;
  }
  const done = tasks.filter((s) => isTerminalRunnerState(s.state));
  if (pending > 0 || done.length < tasks.length) {
    const started = tasks.length > 0;
    const s: Mutable<RunnerStatus> = {
      state: started ? 'running' : 'queued',
      reason: `${done.length} of ${expected} array tasks finished`,
    };
    const native = tasks.find((x) => !isTerminalRunnerState(x.state))?.nativeState;
    if (native !== undefined) s.nativeState = native;
    else if (pendingEntry !== undefined) s.nativeState = pendingEntry.state;
    if (!started && pendingEntry !== undefined) {
      const m = mapSgeState(pendingEntry.state);
      if (m.reason !== undefined) s.reason = m.reason;
    }
    return s;
  }
  // Some tasks were forgotten by every source: absent, so the caller's grace period applies.
  if (done.length < expected && !cancelled) return null;
  return endedArrayStatus(done);
}
