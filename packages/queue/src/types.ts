// The public types of @crystalmath/queue: jobs, workflows, targets, events and the options of
// `openQueue`. The scheduler, the stores and every front-end (CLI, dashboards) share these.

import type { Readable } from 'node:stream';
import type {
  ArtifactStore,
  JobSpec,
  JobState,
  JsonValue,
  Runner,
  RunnerHandle,
  RunnerStatus,
} from '@crystalmath/core';

/** Lifecycle of a queued job: defined in @crystalmath/core (`status.ts`), re-exported here. */
export type { JobState } from '@crystalmath/core';
export { JOB_STATES, TERMINAL_JOB_STATES } from '@crystalmath/core';

/** Condition on a dependency edge, as in SLURM: `afterok` (default), `afterany`, `afternotok`. */
export type EdgeCondition = 'afterok' | 'afterany' | 'afternotok';

export type Metadata = { readonly [key: string]: JsonValue };

export interface Dependency {
  /** Id of the parent job (for `enqueue`) or its key within the workflow (for `submitWorkflow`). */
  readonly job: string;
  readonly condition?: EdgeCondition;
}

export interface BackoffOptions {
  /** First retry delay in ms. Default 5 000. */
  readonly initialMs?: number;
  /** Multiplier per attempt. Default 2. */
  readonly factor?: number;
  /** Upper bound in ms. Default 600 000. */
  readonly maxMs?: number;
  /** Random spread 0..1 applied to each delay. Default 0.2. */
  readonly jitter?: number;
}

export interface EnqueueOptions<M extends Metadata = Metadata> {
  /** Target (cluster / host) name, declared in `openQueue({ targets })`. */
  readonly target: string;
  /** Higher runs first. Default 0. */
  readonly priority?: number;
  /** Parents: ids, or `{ job, condition }`. */
  readonly dependsOn?: readonly (string | Dependency)[];
  /** Total attempts including the first. Default 1. */
  readonly maxAttempts?: number;
  readonly backoff?: BackoffOptions;
  /** Not before this time (epoch ms or Date). */
  readonly runAt?: number | Date;
  /** A second enqueue with the same key returns the existing job instead of a new one. */
  readonly idempotencyKey?: string;
  readonly tags?: readonly string[];
  readonly metadata?: M;
}

/** A job as stored. Timestamps are epoch milliseconds. */
export interface Job<M extends Metadata = Metadata> {
  readonly id: string;
  readonly name: string;
  readonly state: JobState;
  readonly target: string;
  readonly priority: number;
  readonly spec: JobSpec;
  readonly workflowId: string | null;
  /** The job's key inside its workflow, or null. */
  readonly workflowKey: string | null;
  readonly dependsOn: readonly Required<Dependency>[];
  /** Attempts made so far, over the job's whole life (retries included). */
  readonly attempt: number;
  /**
   * Attempts made before the last `retry()` (0 if never retried): `retry` gives a fresh budget,
   * so `attempt - attemptsBeforeRetry` of `maxAttempts` are used.
   */
  readonly attemptsBeforeRetry: number;
  readonly maxAttempts: number;
  readonly runAt: number;
  readonly idempotencyKey: string | null;
  readonly tags: readonly string[];
  readonly metadata: M;
  /** The runner's handle once submitted. */
  readonly handle: RunnerHandle | null;
  /** Last status reported by the runner. */
  readonly runnerStatus: RunnerStatus | null;
  readonly exitCode: number | null;
  /** Why the job is in its state (error code and message, pending reason). Secret-free. */
  readonly reason: string | null;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly startedAt: number | null;
  readonly endedAt: number | null;
  /** The job's structured result (from a collected `result.json` output), or null. */
  readonly result: JsonValue | null;
}

/** What to do with the rest of a workflow when a job ends badly. */
export type FailurePolicy = 'skip-dependents' | 'continue';

export interface WorkflowJobDefinition<M extends Metadata = Metadata>
  extends Omit<EnqueueOptions<M>, 'dependsOn' | 'target' | 'idempotencyKey'> {
  readonly spec: JobSpec;
  /** Defaults to the workflow's `target`. */
  readonly target?: string;
  /** Keys of other jobs of this workflow, or `{ job: key, condition }`. */
  readonly dependsOn?: readonly (string | Dependency)[];
}

export interface WorkflowDefinition<M extends Metadata = Metadata> {
  readonly name: string;
  /** Default target of its jobs. */
  readonly target?: string;
  /** Jobs by key (letters, digits, `._-`). */
  readonly jobs: { readonly [key: string]: WorkflowJobDefinition<M> };
  /** Default `skip-dependents`: dependents whose condition can no longer hold are skipped. */
  readonly onFailure?: FailurePolicy;
  readonly idempotencyKey?: string;
  readonly metadata?: Metadata;
}

export interface Workflow {
  readonly id: string;
  readonly name: string;
  readonly onFailure: FailurePolicy;
  readonly createdAt: number;
  /** Its jobs, keyed by workflow key. */
  readonly jobs: { readonly [key: string]: Job };
  /** Job counts per state. */
  readonly counts: Readonly<Record<JobState, number>>;
  /** True when every job is terminal. */
  readonly done: boolean;
}

/** A workflow without its jobs, for listings: `queue.workflows()`. */
export interface WorkflowSummary {
  readonly id: string;
  readonly name: string;
  readonly onFailure: FailurePolicy;
  readonly createdAt: number;
  /** When its last job ended (every job terminal), or null while it runs. */
  readonly doneAt: number | null;
}

export interface WorkflowListOptions {
  /** Page size, 1 to 1000. Default 20. */
  readonly limit?: number;
  /** Opaque cursor from the previous page. */
  readonly cursor?: string;
}

export interface WorkflowPage {
  /** Newest first. */
  readonly workflows: readonly WorkflowSummary[];
  /** Pass as `cursor` for the next (older) page; null at the end. */
  readonly nextCursor: string | null;
}

/**
 * How long the scheduler waits for each runner call on a target before it abandons it (aborts
 * its signal) and treats the target as unreachable for a while. Defaults in parentheses.
 */
export interface TargetDeadlines {
  /** `submit`, input staging included (`scheduler.submitTimeoutMs`, 600 000 ms). */
  readonly submitMs?: number;
  /** One `poll` of all the runner's live jobs (60 000 ms). */
  readonly pollMs?: number;
  /** `cancel` (60 000 ms). */
  readonly cancelMs?: number;
  /** `find`, used to resolve a submit whose outcome is unknown (60 000 ms). */
  readonly findMs?: number;
  /** `queue.tail()`'s runner call (30 000 ms). */
  readonly tailMs?: number;
  /** One `collect` of a job's outputs into the staging folder (3 600 000 ms). */
  readonly collectMs?: number;
  /** `cleanup` of a job's files on the target after its collection (60 000 ms). */
  readonly cleanupMs?: number;
}

/**
 * What happens to a job's files on the target once its outputs are safe in the artifact store:
 * `keep` (default) leaves them, `on-success` removes them after a success, `always` after any
 * collected ending.
 */
export type CleanupPolicy = 'keep' | 'on-success' | 'always';

/**
 * Where collected outputs go: `false` turns collection off (outputs stay on the target);
 * `{ dir }` a FileArtifactStore in that folder; `{ store }` your own ArtifactStore (S3, ...),
 * with `stagingDir` (default the OS temporary folder) for the copies on their way in.
 * Default: a FileArtifactStore beside the SQLite file (`<file>.artifacts`); a PostgreSQL store
 * has no default, so give it `{ dir }` or `{ store }` to collect.
 */
export type ArtifactsOption =
  | false
  | { readonly dir: string }
  | { readonly store: ArtifactStore; readonly stagingDir?: string };

/** One collected output of a job, as recorded in the queue's database. */
export interface ArtifactInfo {
  readonly jobId: string;
  /** Relative path in the job directory (and in the artifact store). */
  readonly path: string;
  readonly size: number;
  /** Lower-case hex SHA-256 of the stored bytes. */
  readonly sha256: string;
  readonly mode: number;
  /** The attempt that produced it. */
  readonly attempt: number;
  readonly createdAt: number;
}

export interface TargetOptions {
  /** The runner this target uses: a name from `openQueue({ runners })` or a Runner instance. */
  readonly runner: string | Runner;
  /** Jobs of this target in submitting/queued/running at once. Default: unlimited. */
  readonly maxConcurrent?: number;
  readonly paused?: boolean;
  /** Per-call deadlines of this target's runner calls (see `TargetDeadlines` for defaults). */
  readonly deadlines?: TargetDeadlines;
  /**
   * How often an unreachable target is tried again: 500 ms, doubling, at most 1 000 ms, +-20 %
   * by default (each try is one call: a parked claim's find(), or one submit), so work resumes
   * within a few seconds of the target's return.
   */
  readonly unreachableBackoff?: BackoffOptions;
  /** The job files on the target once collected (see `CleanupPolicy`). Default `keep`. */
  readonly cleanup?: CleanupPolicy;
}

/** Why this process cannot reach a target now (its runner calls fail as unreachable). */
export interface TargetUnreachable {
  /** When the first failed call of this outage ended (epoch ms). */
  readonly since: number;
  /** The last error, code and message (secret-free). */
  readonly lastError: string;
  /** When the scheduler tries the target again (epoch ms). */
  readonly retryAt: number;
  /**
   * The scheduler that reports it (its owner id), when read from the store: set when another
   * process's scheduler serves the target; absent when this process's own scheduler does.
   */
  readonly reportedBy?: string;
}

/**
 * A live scheduler as recorded in the store by its heartbeat (`queue.schedulers()`), readable
 * from any process on the same store. Its row is written at `start()`, every
 * `scheduler.heartbeatMs` and at once when a target's health changes; deleted by a clean
 * `stop()`/`close()`. A scheduler that died without stopping stays listed until its heartbeat
 * is older than HEARTBEAT_LIVE_BEATS intervals.
 */
export interface SchedulerInfo {
  /** Its lease owner id (`scheduler.ownerId`; default host:pid:random). */
  readonly owner: string;
  readonly host: string;
  readonly pid: number;
  /** The targets it serves (has runners for). */
  readonly targets: readonly string[];
  /** Epoch ms of its `start()`. */
  readonly startedAt: number;
  /** Epoch ms of its last heartbeat (its own clock). */
  readonly heartbeatAt: number;
  /** Its heartbeat interval. */
  readonly heartbeatMs: number;
  /** Its served targets that it cannot reach now (absent: reachable). */
  readonly unreachable: { readonly [target: string]: TargetUnreachable };
}

export interface TargetInfo {
  readonly name: string;
  readonly maxConcurrent: number | null;
  readonly paused: boolean;
  /** Jobs in submitting/queued/running. */
  readonly active: number;
  /**
   * Set while this process's scheduler cannot reach the target (null when it can, or when this
   * process does not serve the target). Its jobs wait; none uses up an attempt meanwhile.
   * Always present in what `targets()` returns; optional for values built by hand.
   */
  readonly unreachable?: TargetUnreachable | null;
  /**
   * Owner ids of the live schedulers serving the target, from any process (read from the
   * store's heartbeat rows). Empty: no scheduler is running for it, so its jobs wait. Always
   * present in what `targets()` returns; optional for values built by hand.
   */
  readonly servedBy?: readonly string[];
}

export interface ListFilter {
  readonly state?: JobState | readonly JobState[];
  readonly target?: string;
  readonly workflow?: string;
  readonly tag?: string;
  /** Default 100, at most 1 000. */
  readonly limit?: number;
  /** Opaque cursor from the previous page (of the same `order`). */
  readonly cursor?: string;
  /**
   * `oldest` (the default): by creation, oldest first, so a follower pages forward through
   * new jobs. `newest`: newest first, so a page of `limit` holds the most recent jobs.
   */
  readonly order?: 'oldest' | 'newest';
}

export interface ListPage {
  readonly jobs: readonly Job[];
  /** Pass as `cursor` for the next page; null at the end. */
  readonly nextCursor: string | null;
}

/** One row of the append-only event log. */
export type QueueEvent =
  | {
      readonly seq: number;
      readonly at: number;
      readonly type: 'job:state';
      readonly jobId: string;
      readonly workflowId: string | null;
      readonly target: string;
      readonly from: JobState | null;
      readonly to: JobState;
      readonly reason: string | null;
    }
  | {
      readonly seq: number;
      readonly at: number;
      readonly type: 'queue:paused';
      /** The paused target, or null for the whole queue. */
      readonly target: string | null;
    }
  | {
      readonly seq: number;
      readonly at: number;
      readonly type: 'queue:resumed';
      readonly target: string | null;
    }
  | {
      readonly seq: number;
      readonly at: number;
      readonly type: 'target:limit';
      readonly target: string;
      readonly maxConcurrent: number | null;
    }
  | {
      readonly seq: number;
      readonly at: number;
      readonly type: 'workflow:created';
      readonly workflowId: string;
    }
  | {
      readonly seq: number;
      readonly at: number;
      readonly type: 'workflow:done';
      readonly workflowId: string;
    };

/** A target this process serves stopped answering, or answers again (in-process only). */
export type TargetHealthEvent =
  | {
      readonly type: 'target:unreachable';
      readonly at: number;
      readonly target: string;
      readonly since: number;
      readonly lastError: string;
    }
  | {
      readonly type: 'target:reachable';
      readonly at: number;
      readonly target: string;
      /** When it became unreachable. */
      readonly since: number;
    };

/** In-process events: `queue.on('job:state', (e) => ...)`. */
export interface QueueEventMap {
  /** Emitted once per outage, when a target's first runner call fails as unreachable. */
  'target:unreachable': Extract<TargetHealthEvent, { type: 'target:unreachable' }>;
  /** Emitted when an unreachable target answers again. */
  'target:reachable': Extract<TargetHealthEvent, { type: 'target:reachable' }>;
  'job:state': Extract<QueueEvent, { type: 'job:state' }>;
  'queue:paused': Extract<QueueEvent, { type: 'queue:paused' }>;
  'queue:resumed': Extract<QueueEvent, { type: 'queue:resumed' }>;
  'target:limit': Extract<QueueEvent, { type: 'target:limit' }>;
  'workflow:created': Extract<QueueEvent, { type: 'workflow:created' }>;
  'workflow:done': Extract<QueueEvent, { type: 'workflow:done' }>;
  /** A runner or store call failed; the scheduler goes on. */
  error: { readonly error: Error; readonly context: string };
  /**
   * The scheduler's store calls began to fail (E_STORE: connection lost, server down, file
   * locked past its deadline); it backs off until they work again. Once per change, in-process
   * only (the event log cannot record it while the store is down).
   */
  'store:down': StoreHealth;
  /** The store answers again after a `store:down`; scheduling resumed. */
  'store:up': StoreHealth;
}

/** The store as this process's scheduler last saw it (`queue.health().store`). */
export interface StoreHealth {
  readonly state: 'up' | 'down';
  /** Epoch ms of the last change (null: never down since the scheduler started). */
  readonly since: number | null;
  /** The E_STORE message that took it down (secret-free), null while up. */
  readonly error: string | null;
  /** Failed scheduling rounds since it went down (0 while up). */
  readonly failures: number;
}

/** What `queue.health()` returns: this process's view, read without touching the store. */
export interface QueueHealth {
  /** Whether this process runs a scheduler (`start()` called and not stopped). */
  readonly scheduler: 'running' | 'stopped';
  readonly store: StoreHealth;
}

export interface EventsOptions {
  /** Yield events with `seq` greater than this. Default 0 (from the start). */
  readonly after?: number;
  /**
   * Start with about the last `tail` events instead of the whole log (like `tail -n`; seq
   * numbers may have gaps, so it can be fewer). Not with `after`.
   */
  readonly tail?: number;
  /** Keep waiting for new events (default true); false ends at the current end of the log. */
  readonly follow?: boolean;
  /** How often to look for new rows when following from another process. Default 200 ms. */
  readonly pollIntervalMs?: number;
  readonly signal?: AbortSignal;
}

export interface Logger {
  debug?(msg: string, fields?: Record<string, unknown>): void;
  info?(msg: string, fields?: Record<string, unknown>): void;
  warn?(msg: string, fields?: Record<string, unknown>): void;
  error?(msg: string, fields?: Record<string, unknown>): void;
}

export interface Clock {
  now(): number;
}

export interface SchedulerOptions {
  /** Longest sleep between scheduling rounds when nothing wakes it. Default 1 000 ms. */
  readonly tickMs?: number;
  /** Interval between runner polls (at least the runner's `minPollIntervalMs`). Default 2 000 ms. */
  readonly pollIntervalMs?: number;
  /** How long a claim in `submitting` is owned before another scheduler may recover it. Default 60 000 ms. */
  readonly leaseMs?: number;
  /** Most jobs claimed per round. Default 256. */
  readonly claimBatch?: number;
  /** Runner submits in flight at once, per target. Default 16. */
  readonly submitConcurrency?: number;
  /**
   * Deadline of one `runner.submit` (its AbortSignal fires then). Its claim's lease is renewed
   * until the submit returns or this deadline passes, whichever is first. Default 600 000 ms; a target's
   * `deadlines.submitMs` overrides it for that target.
   */
  readonly submitTimeoutMs?: number;
  /**
   * How long `stop()` / `close()` wait for runner calls in flight before aborting their signals
   * and returning (the claims stay leased and are resolved through `find()` at the next start).
   * Default 5 000 ms.
   */
  readonly stopTimeoutMs?: number;
  /** Identifies this scheduler in leases. Default: hostname:pid:random. */
  readonly ownerId?: string;
  /**
   * How often the running scheduler writes its heartbeat row (`queue.schedulers()`), stamped
   * with the queue's `clock`. Default 5 000 ms; it counts as live while its last heartbeat is
   * younger than HEARTBEAT_LIVE_BEATS (6) intervals: 30 s by default.
   */
  readonly heartbeatMs?: number;
  /** Collections (outputs brought into the artifact store) in flight at once, per target. Default 4. */
  readonly collectConcurrency?: number;
}

export interface PruneOptions {
  /** Remove terminal jobs (and their events) that ended before now minus this many ms. */
  readonly olderThanMs: number;
}

export interface QueueCounts {
  readonly total: number;
  readonly byState: Readonly<Record<JobState, number>>;
  readonly byTarget: { readonly [target: string]: Readonly<Record<JobState, number>> };
}

/**
 * A durable job queue on a store (SQLite file or PostgreSQL). Producers enqueue; one or more
 * schedulers (`start()`) claim, submit through runners and poll; observers read and follow
 * `events()` from any process.
 *
 * @example
 * const queue = await openQueue({ store: sqliteStore({ path: 'jobs.db' }),
 *   targets: { laptop: { runner: new LocalRunner({ root: 'runs' }), maxConcurrent: 2 } } });
 * const job = await queue.enqueue({ name: 'scf', argv: ['pw.x', '-in', 'scf.in'] }, { target: 'laptop' });
 * await queue.start();
 */
export interface Queue {
  // producer
  enqueue<M extends Metadata = Metadata>(
    spec: JobSpec,
    options: EnqueueOptions<M>,
  ): Promise<Job<M>>;
  /** All or nothing. */
  enqueueMany<M extends Metadata = Metadata>(
    items: readonly ({ readonly spec: JobSpec } & EnqueueOptions<M>)[],
  ): Promise<Job<M>[]>;
  /** All or nothing; cycles, self-dependencies and unknown keys are rejected naming them. */
  submitWorkflow<M extends Metadata = Metadata>(
    definition: WorkflowDefinition<M>,
  ): Promise<Workflow>;
  // control
  pause(target?: string): Promise<void>;
  resume(target?: string): Promise<void>;
  setTargetLimit(target: string, maxConcurrent: number | null): Promise<void>;
  /** Cancels a job (asking its runner if submitted); dependents are skipped per policy. */
  cancel(id: string): Promise<Job>;
  /** Puts a failed/cancelled/timeout/skipped job back to ready (or waiting), with a fresh attempt budget. */
  retry(id: string): Promise<Job>;
  reprioritize(id: string, priority: number): Promise<Job>;
  prune(options: PruneOptions): Promise<{ readonly jobs: number; readonly events: number }>;
  // read
  get(id: string): Promise<Job | null>;
  list(filter?: ListFilter): Promise<ListPage>;
  counts(): Promise<QueueCounts>;
  workflow(id: string): Promise<Workflow | null>;
  /** Workflows without their jobs, newest first, a page at a time. */
  workflows(options?: WorkflowListOptions): Promise<WorkflowPage>;
  /** Targets with their limits, live jobs, who serves them and whether they answer. */
  targets(): Promise<TargetInfo[]>;
  /** The live schedulers on this store, from any process (oldest first). */
  schedulers(): Promise<SchedulerInfo[]>;
  /**
   * The store as this process's scheduler last saw it, synchronously and without a query (so
   * it answers while the store is down). Without a running scheduler the store shows `up`.
   */
  health(): QueueHealth;
  /** The persisted event log as an async iterator; works from any process on the same store. */
  events(options?: EventsOptions): AsyncIterableIterator<QueueEvent>;
  /** Tail of a job's output through its runner's `tail`, when it has one. */
  /** The outputs collected for a job (recorded in the database), by path. */
  artifacts(id: string): Promise<ArtifactInfo[]>;
  /**
   * A stream of one collected output, verified against its recorded SHA-256 while read (the
   * stream errors with `E_ARTIFACT_CHECKSUM` at its end if the stored bytes changed).
   */
  readArtifact(
    id: string,
    path: string,
    options?: { readonly signal?: AbortSignal },
  ): Promise<Readable>;
  tail(
    id: string,
    options?: { readonly stream?: 'stdout' | 'stderr'; readonly offset?: number },
  ): Promise<{ readonly data: string; readonly offset: number }>;
  on<K extends keyof QueueEventMap>(event: K, listener: (payload: QueueEventMap[K]) => void): this;
  off<K extends keyof QueueEventMap>(event: K, listener: (payload: QueueEventMap[K]) => void): this;
  // scheduler
  /** Recovers leases, then schedules until `stop()`. */
  start(): Promise<void>;
  /** Finishes the claim in flight, leaves running jobs running, stops polling. */
  stop(): Promise<void>;
  /** Runs one scheduling round by hand (claim, submit, poll); for tests and embedding. */
  tick(): Promise<void>;
  /** Resolves when every job (or the given ones) is terminal. */
  drain(options?: {
    readonly ids?: readonly string[];
    readonly signal?: AbortSignal;
    readonly timeoutMs?: number;
  }): Promise<void>;
  /** stop() then release the store (within `scheduler.stopTimeoutMs` plus the store's close). */
  close(): Promise<void>;
}

export interface OpenQueueOptions {
  /** Default: `sqliteStore({ path: 'crystalmath.db' })`. */
  readonly store?: QueueStoreFactory;
  /** Runners by name, referenced from `targets`. */
  readonly runners?: { readonly [name: string]: Runner };
  readonly targets: { readonly [name: string]: TargetOptions };
  readonly logger?: Logger;
  readonly clock?: Clock;
  readonly scheduler?: SchedulerOptions;
  /** Where declared outputs are collected (see `ArtifactsOption`). */
  readonly artifacts?: ArtifactsOption;
}

/**
 * What `sqliteStore()` / `postgresStore()` return: opens the store (and applies its migrations
 * through @crystalmath/migrate). The store interface itself is internal to this package.
 */
export interface QueueStoreFactory {
  readonly dialect: 'sqlite' | 'postgres';
  /** Secret-free description, e.g. `sqlite:/path/jobs.db` or `postgres://host:5432/db`. */
  readonly description: string;
}
