// The status vocabulary every runner reports in. Native scheduler states are kept beside the
// mapped state so nothing is lost in translation.

/** Where a job stands according to its runner. */
export type RunnerState =
  | 'queued'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'cancelled'
  | 'timeout'
  | 'out_of_memory'
  | 'node_fail'
  | 'lost';

export const RUNNER_STATES: readonly RunnerState[] = [
  'queued',
  'running',
  'succeeded',
  'failed',
  'cancelled',
  'timeout',
  'out_of_memory',
  'node_fail',
  'lost',
];

/** States after which a job never changes again. */
export const TERMINAL_RUNNER_STATES: ReadonlySet<RunnerState> = new Set([
  'succeeded',
  'failed',
  'cancelled',
  'timeout',
  'out_of_memory',
  'node_fail',
  'lost',
]);

export function isTerminalRunnerState(state: RunnerState): boolean {
  return TERMINAL_RUNNER_STATES.has(state);
}

/** One job's status as reported by `Runner.poll`. */
export interface RunnerStatus {
  readonly state: RunnerState;
  /** The process exit code, where known. */
  readonly exitCode?: number;
  /** The signal that ended the job, where known (e.g. `SIGKILL`). */
  readonly signal?: string;
  /** Why the job is in this state: a pending reason, a failure cause. Never contains secrets. */
  readonly reason?: string;
  /** The runner's own state name (e.g. SLURM's `OUT_OF_MEMORY`). */
  readonly nativeState?: string;
  /** Epoch milliseconds, where known. */
  readonly startedAt?: number;
  readonly endedAt?: number;
}
