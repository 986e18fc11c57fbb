// The two state vocabularies: where a job stands according to its runner (native scheduler
// states are kept beside the mapped state so nothing is lost in translation), and where it
// stands in the queue. Every other list of states (the queue's SQL lists) derives from these.

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

/**
 * Lifecycle of a queued job (docs/concepts.md has the transitions). `ready` = may be claimed by
 * a scheduler; `queued` = accepted by the runner, not started (a SLURM PENDING job).
 */
export type JobState =
  | 'waiting' // dependencies not met yet
  | 'ready' // may be claimed (at or after runAt)
  | 'submitting' // claimed by a scheduler, runner.submit in flight (leased)
  | 'queued' // the runner accepted it, not started
  | 'running'
  | 'collecting' // the runner reported the end; declared outputs are being brought home
  | 'succeeded'
  | 'failed'
  | 'cancelled'
  | 'timeout'
  | 'skipped'; // a dependency ended badly

/** Every job state, in lifecycle order. */
export const JOB_STATES: readonly JobState[] = [
  'waiting',
  'ready',
  'submitting',
  'queued',
  'running',
  'collecting',
  'succeeded',
  'failed',
  'cancelled',
  'timeout',
  'skipped',
];

/** Job states after which a job changes only by an explicit retry. */
export const TERMINAL_JOB_STATES: ReadonlySet<JobState> = new Set<JobState>([
  'succeeded',
  'failed',
  'cancelled',
  'timeout',
  'skipped',
]);

/** Job states that are not terminal: the job still has somewhere to go. */
export const OPEN_JOB_STATES: readonly JobState[] = JOB_STATES.filter(
  (s) => !TERMINAL_JOB_STATES.has(s),
);

/** Job states that hold one of a target's `maxConcurrent` slots. */
export const LIVE_JOB_STATES: readonly JobState[] = ['submitting', 'queued', 'running'];

/** Job states a runner has a handle for (polled each round). */
export const HANDLED_JOB_STATES: readonly JobState[] = ['queued', 'running'];

export function isTerminalJobState(state: JobState): boolean {
  return TERMINAL_JOB_STATES.has(state);
}
