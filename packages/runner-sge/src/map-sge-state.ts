// Grid Engine's qstat state letters and qacct `failed` codes mapped onto the core runner
// vocabulary. The native text is always kept beside the mapped state. A state string we do not
// recognise maps to a NON-terminal state, so the job keeps its slot and is polled again.

import type { RunnerState } from '@crystalmath/core';
import type { QacctRecord } from './parse-qacct.js';

/** A qstat state string read as a runner state, with a reason where the letters give one. */
export interface SgeQstatState {
  readonly state: RunnerState;
  readonly reason?: string;
}

/**
 * Maps qstat's state letters (`qw`, `hqw`, `r`, `t`, `Rr`, `s`, `S`, `T`, `dr`, `Eqw`, ...).
 * `E` (error) is `failed`: the job will not run until an administrator clears it. Suspended
 * jobs (`s`, `S`, `T`) still hold their slots and resume where they stopped: `running`. Held
 * (`h`) and waiting ones are `queued`.
 *
 * @example mapSgeState('hqw') // => { state: 'queued', reason: 'held' }
 */
export function mapSgeState(letters: string): SgeQstatState {
  const s = letters.trim();
  if (s.includes('E')) return { state: 'failed', reason: 'in Grid Engine error state' };
  const deleting = s.includes('d');
  if (/[rtRsST]/.test(s) && !s.includes('q')) {
    if (/[sST]/.test(s)) {
      const by = s.includes('S')
        ? 'queue'
        : s.includes('T')
          ? 'threshold'
          : 'user or administrator';
      return { state: 'running', reason: `suspended (by ${by})` };
    }
    return deleting ? { state: 'running', reason: 'being deleted' } : { state: 'running' };
  }
  if (s.includes('h')) return { state: 'queued', reason: 'held' };
  if (s.includes('q') || s.includes('w')) {
    return deleting ? { state: 'queued', reason: 'being deleted' } : { state: 'queued' };
  }
  return { state: 'queued', reason: `unrecognised Grid Engine state "${s}"` };
}

/** qacct's `failed` code meaning "killed after the job started" (qdel, a signal, execd's limits). */
export const FAILED_KILLED = 100;
/** qacct's `failed` code for a limit enforced by qmaster: h_rt, h_cpu or h_vmem. */
export const FAILED_LIMIT = 37;

/** What an accounting record says, before the exit file and the cancel marker are considered. */
export interface SgeAccountingState {
  readonly state: RunnerState;
  readonly reason?: string;
  readonly exitCode?: number;
  readonly signal?: number;
}

/**
 * Reads one qacct record. `failed 37` is `timeout` unless the job requested h_vmem and its peak
 * memory reached it (then `out_of_memory`); exit statuses above 128 carry the signal number.
 */
export function mapQacct(rec: QacctRecord): SgeAccountingState {
  const signal = rec.exitStatus > 128 && rec.exitStatus < 160 ? rec.exitStatus - 128 : undefined;
  const withSignal = <T extends object>(s: T): T & { signal?: number } =>
    signal === undefined ? s : { ...s, signal };
  if (rec.failed === 0) {
    if (rec.exitStatus === 0) return { state: 'succeeded', exitCode: 0 };
    return withSignal({ state: 'failed' as RunnerState, exitCode: rec.exitStatus });
  }
  const reason = `qacct failed ${rec.failed}${rec.failedReason ? `: ${rec.failedReason}` : ''}`;
  if (rec.failed === FAILED_LIMIT) {
    const memory =
      rec.hVmemBytes !== undefined &&
      rec.maxvmemBytes !== undefined &&
      rec.maxvmemBytes >= rec.hVmemBytes;
    const overTime =
      rec.hRtSeconds !== undefined &&
      rec.wallclockSeconds !== undefined &&
      rec.wallclockSeconds >= rec.hRtSeconds;
    return withSignal({
      state: (memory && !overTime ? 'out_of_memory' : 'timeout') as RunnerState,
      reason,
      exitCode: rec.exitStatus,
    });
  }
  return withSignal({ state: 'failed' as RunnerState, reason, exitCode: rec.exitStatus });
}
