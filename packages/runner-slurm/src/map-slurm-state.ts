// SLURM's job states mapped onto the core runner vocabulary. The native name is always kept
// beside the mapped state. An unrecognised state maps to a NON-terminal state on purpose: the
// original tool mapped unknown states to a terminal `unknown`, which released concurrency
// slots while jobs were still running.

import type { RunnerState } from '@crystalmath/core';

/** Every SLURM state the runner recognises, with its core state. */
export const SLURM_STATE_MAP: Readonly<Record<string, RunnerState>> = {
  PENDING: 'queued',
  CONFIGURING: 'queued', // nodes allocated but still booting: the command has not started
  REQUEUED: 'queued',
  REQUEUE_HOLD: 'queued',
  REQUEUE_FED: 'queued',
  RESV_DEL_HOLD: 'queued',
  RUNNING: 'running',
  COMPLETING: 'running', // processes ended, epilog still running: outputs may not be final
  SUSPENDED: 'running', // still holds its allocation; resumes where it stopped
  STOPPED: 'running',
  SIGNALING: 'running',
  STAGE_OUT: 'running',
  RESIZING: 'running',
  COMPLETED: 'succeeded',
  FAILED: 'failed',
  SPECIAL_EXIT: 'failed',
  PREEMPTED: 'failed', // ended by a higher-priority job, not by the user: a retry is reasonable
  CANCELLED: 'cancelled',
  REVOKED: 'cancelled', // federation: another cluster runs this job
  TIMEOUT: 'timeout',
  DEADLINE: 'timeout', // ended at its --deadline
  OUT_OF_MEMORY: 'out_of_memory',
  NODE_FAIL: 'node_fail',
  BOOT_FAIL: 'node_fail',
};

/** `CANCELLED by 1000` → `CANCELLED`; `COMPLETED+` (sacct truncation) → `COMPLETED`. */
export function normaliseSlurmState(native: string): string {
  const first = native.trim().split(/\s+/)[0] ?? '';
  return first.replace(/\+$/, '').toUpperCase();
}

/**
 * Maps a native SLURM state (`PENDING`, `CANCELLED by 0`, `OUT_OF_MEMORY`, ...) to the core
 * vocabulary. Unknown states give `queued` (never terminal), so the job keeps its slot and is
 * polled again.
 *
 * @example mapSlurmState('CANCELLED by 0') // => 'cancelled'
 */
export function mapSlurmState(native: string): RunnerState {
  return SLURM_STATE_MAP[normaliseSlurmState(native)] ?? 'queued';
}

/** True when SLURM knows the state name. */
export function isKnownSlurmState(native: string): boolean {
  return normaliseSlurmState(native) in SLURM_STATE_MAP;
}
