// The Runner contract: a place jobs run. The queue talks to clusters only through this, and
// runners are stateless between calls: everything needed to resume lives in the handle and in
// files on the target, so a restarted process re-attaches to jobs it submitted before.

import type { JobSpec } from './job.js';
import type { RunnerStatus } from './status.js';

/** A JSON value: what a handle may contain, so it survives a database round trip. */
export type JsonValue =
  | string
  | number
  | boolean
  | null
  | readonly JsonValue[]
  | { readonly [key: string]: JsonValue };

/**
 * An opaque, JSON-serialisable reference to a submitted job. Store it; give it back to the
 * runner that made it. `kind` names the runner type, `jobKey` is the key it was submitted with.
 */
export interface RunnerHandle {
  readonly kind: string;
  readonly jobKey: string;
  readonly data: { readonly [key: string]: JsonValue };
}

/** A job as handed to a runner: the spec plus a caller-chosen key, unique per attempt. */
export interface RunnerJob {
  /**
   * Stable, unique key for this submission (e.g. `job-42-a1`): letters, digits, `._-`, at most
   * 64 characters. `find(key)` must recover the handle of a job submitted under it.
   */
  readonly key: string;
  readonly spec: JobSpec;
}

export interface RunnerCallOptions {
  readonly signal?: AbortSignal;
}

export interface CollectResult {
  /** Paths (relative to the job directory) that were copied. */
  readonly files: readonly string[];
  readonly bytes: number;
}

export interface TailResult {
  /** New text from the offset, decoded as UTF-8. */
  readonly data: string;
  /** Offset to pass next time. */
  readonly offset: number;
}

/** What a runner can do beyond the required three methods. */
export interface RunnerCapabilities {
  /** `find(jobKey)` is implemented: submission is exactly-once across crashes. */
  readonly find: boolean;
  readonly collect: boolean;
  readonly cleanup: boolean;
  readonly tail: boolean;
  /**
   * `validate(spec)` is implemented: the queue calls it at `enqueue`/`submitWorkflow` when the
   * target's runner is in the process, so a bad scheduler field is refused at the call. Optional
   * (absent = false) so runners written before it still type-check.
   */
  readonly validate?: boolean;
  /** Smallest interval between two `poll` calls the target tolerates, in ms (cluster etiquette). */
  readonly minPollIntervalMs: number;
  /**
   * The step of the walltime a job really gets: `resources.walltimeSeconds` is rounded UP to a
   * multiple of it (SLURM counts whole minutes: 60). Absent or 1: enforced to the second.
   * Front-ends use it to tell a user asking for `3s` that the job will get a minute.
   */
  readonly walltimeStepSeconds?: number;
}

/**
 * A place jobs run: this machine, an SSH host, a SLURM cluster.
 *
 * Required: `submit`, `poll`, `cancel`. Optional methods are advertised in `capabilities`.
 *
 * @example
 * const handle = await runner.submit({ key: 'job-1-a1', spec: { name: 'hello', argv: ['echo', 'hi'] } });
 * const [status] = await runner.poll([handle]); // { state: 'running' } ... { state: 'succeeded', exitCode: 0 }
 */
export interface Runner {
  /** The runner type, e.g. `process` or `slurm`; equals `handle.kind` of its handles. */
  readonly kind: string;
  readonly capabilities: RunnerCapabilities;
  /**
   * Starts a job and returns its handle. Validates the spec first (a rejected spec changes
   * nothing). Submitting a key that already exists is an error, never a second job.
   */
  submit(job: RunnerJob, options?: RunnerCallOptions): Promise<RunnerHandle>;
  /**
   * Statuses of many jobs, in the order of `handles`, in ONE round trip to the target
   * whatever the number of handles.
   */
  poll(handles: readonly RunnerHandle[], options?: RunnerCallOptions): Promise<RunnerStatus[]>;
  /** Asks the job to stop. The job then reports `cancelled`. Idempotent. */
  cancel(handle: RunnerHandle, options?: RunnerCallOptions): Promise<void>;
  /**
   * Checks what this runner alone knows about a spec (e.g. SLURM's `gres`, `dependency`, extra
   * directives), without I/O; throws a ValidationError naming the field (prefixed with `field`,
   * default `spec`). `submit` must refuse the same specs. Advertised by `capabilities.validate`.
   */
  validate?(spec: JobSpec, field?: string): void;
  /** Recovers the handle of a job submitted under `jobKey`, or null if the runner never saw it. */
  find?(jobKey: string, options?: RunnerCallOptions): Promise<RunnerHandle | null>;
  /** Copies output files matching the spec's `outputs` globs (or `globs`) to local `dest`. */
  collect?(
    handle: RunnerHandle,
    dest: string,
    options?: RunnerCallOptions & { readonly globs?: readonly string[] },
  ): Promise<CollectResult>;
  /** Removes the job's files on the target. Only inside the runner's root. */
  cleanup?(handle: RunnerHandle, options?: RunnerCallOptions): Promise<void>;
  /** Reads new output from `offset`, for front-ends that show live logs. */
  tail?(
    handle: RunnerHandle,
    options?: RunnerCallOptions & {
      readonly stream?: 'stdout' | 'stderr';
      readonly offset?: number;
    },
  ): Promise<TailResult>;
  /** Releases what the runner holds (not the transport it was given). */
  close?(): Promise<void>;
}

const JOB_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** True when `key` is a valid `RunnerJob.key`. */
export function isValidJobKey(key: string): boolean {
  return typeof key === 'string' && JOB_KEY.test(key);
}
