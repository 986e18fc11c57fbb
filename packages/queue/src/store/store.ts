// The store contract the scheduler is written against. Each method is ONE short transaction (or
// one read) and does no network or process I/O, so the scheduler can call runners between
// them. Dialect-specific SQL lives in the implementations (SQLite in ./sqlite/, PostgreSQL next
// to it); everything a store must decide the same way is in ./rules.ts.

import type { RunnerHandle, RunnerStatus } from '@crystalmath/core';
import type {
  EdgeCondition,
  FailurePolicy,
  JobState,
  ListFilter,
  QueueEvent,
  QueueStoreFactory,
} from '../types.js';
import type { LeaseOutcome } from './rules.js';

/** A job row as stored (JSON columns still encoded, timestamps epoch ms). */
export interface JobRow {
  id: number;
  name: string;
  state: JobState;
  target: string;
  priority: number;
  /** JSON of the JobSpec (Uint8Array contents as `{ $bytes: base64 }`). */
  spec: string;
  workflow_id: number | null;
  workflow_key: string | null;
  /** Attempts started so far (claims), over the job's life. */
  attempt: number;
  /** `attempt` when the job was last retried by hand: attempts used = attempt - attempt_base. */
  attempt_base: number;
  max_attempts: number;
  /** JSON of BackoffOptions, or null for the defaults. */
  backoff: string | null;
  run_at: number;
  idempotency_key: string | null;
  /** JSON array. */
  tags: string;
  /** JSON object. */
  metadata: string;
  /** JSON of the RunnerHandle. */
  handle: string | null;
  /** JSON of the last RunnerStatus. */
  runner_status: string | null;
  exit_code: number | null;
  reason: string | null;
  lease_owner: string | null;
  lease_until: number | null;
  /** 1 when cancel() was asked while the job was submitting/queued/running. */
  cancel_requested: number;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  ended_at: number | null;
  /** JSON of the job's structured result, or null (migration 0003). */
  result: string | null;
}

/** One collected file of a job, as recorded in cm_artifacts. */
export interface ArtifactRow {
  job_id: number;
  path: string;
  size: number;
  sha256: string;
  mode: number;
  /** The attempt whose outputs it is. */
  attempt: number;
  created_at: number;
}

/** What a finished collection records (see `QueueStore.finishCollect`). */
export interface CollectOutcome {
  id: number;
  /** The attempt collected: the guard. */
  attempt: number;
  /** Files now in the artifact store, recorded (upserted by path) with the ending. */
  artifacts: readonly Omit<ArtifactRow, 'job_id' | 'attempt' | 'created_at'>[];
  /** Why the collection fails the attempt (a missing required output, a persistent fault). */
  failure: string | null;
  /** JSON of the job's result, when the collection produced one. */
  result?: string;
}

export interface DepRow {
  job_id: number;
  parent_id: number;
  condition: EdgeCondition;
}

export interface NewJob {
  name: string;
  target: string;
  priority: number;
  spec: string;
  workflowKey: string | null;
  maxAttempts: number;
  backoff: string | null;
  runAt: number;
  idempotencyKey: string | null;
  tags: readonly string[];
  metadata: string;
  /** Parents: ids of existing jobs, or indexes into the same batch (`{ index }`, earlier only). */
  deps: readonly { parent: number | { index: number }; condition: EdgeCondition }[];
}

export interface NewWorkflow {
  name: string;
  onFailure: FailurePolicy;
  idempotencyKey: string | null;
  metadata: string;
}

export interface InsertResult {
  /** One per input job, in input order. */
  ids: number[];
  /** The state each job was stored in (or found in, for an idempotent hit). */
  states: JobState[];
  /** True where the job already existed (same idempotency key): nothing was written for it. */
  existing: boolean[];
  workflowId: number | null;
}

export interface WorkflowRow {
  id: number;
  name: string;
  on_failure: FailurePolicy;
  created_at: number;
}

export interface TargetRow {
  name: string;
  max_concurrent: number | null;
  paused: number;
  /** Jobs in submitting/queued/running. */
  active: number;
  /**
   * JSON array of the scheduler rows (live or not) that serve the target: `{ owner,
   * heartbeat_at, heartbeat_ms, health }`, read in the same query so `targets()` stays one.
   */
  schedulers: string | null;
}

/** One live scheduler's row in cm_schedulers (see `QueueStore.heartbeat`). */
export interface SchedulerRow {
  owner: string;
  host: string;
  pid: number;
  /** JSON array of the target names it serves. */
  targets: string;
  started_at: number;
  heartbeat_at: number;
  /** The writer's heartbeat interval: its row is live while younger than a multiple of it. */
  heartbeat_ms: number;
  /** JSON object: target name -> `{ since, lastError, retryAt }` for each unreachable target. */
  health: string;
}

/** What the scheduler learned from a runner for one job (guarded by the attempt it polled). */
export interface StatusUpdate {
  id: number;
  attempt: number;
  status: RunnerStatus;
  /** An ending of a job with outputs to bring home: `collecting` instead of ended. */
  collect?: boolean;
}

export interface SubmittedResult {
  id: number;
  attempt: number;
  handle: RunnerHandle;
}

/** When an ended attempt may run again (epoch ms), or null when it must not. */
export type RetryPolicy = (row: JobRow) => number | null;

/**
 * The store behind a queue. Implementations: `SqliteStore`; a PostgreSQL store follows the same
 * contract. Rules every implementation keeps:
 *
 * - Every state change is one guarded UPDATE (`WHERE id = ? AND state = <expected>`) plus one
 *   `job:state` event row, in the same transaction; an UPDATE that matches nothing changes
 *   nothing and writes no event.
 * - A transaction that ends a job also releases or skips its dependents (transitively, see
 *   `rules.ts`) and marks its workflow done when it was the last open job.
 * - `claim` counts live jobs per target INSIDE its transaction, so limits are exact with
 *   several schedulers; the events' `seq` order is the commit order (readers never see a gap
 *   filled later).
 */
export interface QueueStore {
  readonly dialect: 'sqlite' | 'postgres';
  /** Short random id of this database, part of every runner job key. */
  readonly storeId: string;
  /**
   * The highest event `seq` this store object has committed (or seen at open). Read
   * synchronously by the in-process emitter so a new listener starts exactly after it.
   */
  readonly lastSeq: number;

  insertJobs(
    jobs: readonly NewJob[],
    workflow: NewWorkflow | null,
    now: number,
  ): Promise<InsertResult>;
  getJobs(ids: readonly number[]): Promise<JobRow[]>;
  depsOf(ids: readonly number[]): Promise<DepRow[]>;
  /**
   * Jobs matching the filter, at most `limit`: with id > `fromId` by ascending id, or with
   * `filter.order === 'newest'`, id < `fromId` by descending id.
   */
  list(filter: ListFilter, fromId: number, limit: number): Promise<JobRow[]>;
  counts(): Promise<{ state: JobState; target: string; n: number }[]>;
  workflowRow(id: number): Promise<WorkflowRow | null>;
  workflowJobs(id: number): Promise<JobRow[]>;
  /** Workflows with id below `beforeId`, newest first. */
  listWorkflows(
    beforeId: number,
    limit: number,
  ): Promise<(WorkflowRow & { done_at: number | null })[]>;

  /** Creates missing targets; a `maxConcurrent`/`paused` given here overrides the stored one. */
  ensureTargets(
    targets: readonly { name: string; maxConcurrent?: number | null; paused?: boolean }[],
  ): Promise<void>;
  targets(): Promise<TargetRow[]>;
  /** Throws E_QUEUE_UNKNOWN_TARGET for a target that was never declared. */
  setTarget(
    name: string,
    patch: { maxConcurrent?: number | null; paused?: boolean },
    now: number,
  ): Promise<void>;
  setQueuePaused(paused: boolean, now: number): Promise<void>;

  /**
   * Claims ready jobs (run_at <= now) of the given targets, priority then FIFO, within each
   * target's free slots and not paused; marks them `submitting` with attempt + 1 and a lease.
   */
  claim(
    owner: string,
    now: number,
    leaseMs: number,
    limit: number,
    targets: readonly string[],
  ): Promise<JobRow[]>;
  /**
   * Records handles of submitted jobs (guarded: still submitting, same attempt, same owner).
   * Returns the submissions the caller must cancel on the runner: jobs cancelled meanwhile.
   */
  recordSubmitted(
    results: readonly SubmittedResult[],
    owner: string,
    now: number,
  ): Promise<SubmittedResult[]>;
  /** A submit failed: back to ready at `retryAt`, or failed when null (or cancelled if asked). */
  recordSubmitFailed(
    id: number,
    attempt: number,
    owner: string,
    reason: string,
    retryAt: number | null,
    now: number,
  ): Promise<void>;
  /**
   * Extends the leases of the given jobs that are still `submitting` under `owner` to `until`
   * (a live scheduler's submits in flight). No state change, no event. Returns how many.
   */
  renewLeases(ids: readonly number[], owner: string, until: number, now: number): Promise<number>;
  /** Jobs in queued/running of the given targets (they have handles). */
  liveJobs(targets: readonly string[]): Promise<JobRow[]>;
  /** Applies runner statuses in one transaction; ends jobs, retries per `retry`, releases dependents. */
  applyStatuses(updates: readonly StatusUpdate[], retry: RetryPolicy, now: number): Promise<void>;
  /** Jobs in `collecting` of the given targets (outputs to bring home). */
  collectingJobs(targets: readonly string[]): Promise<JobRow[]>;
  /**
   * Ends a collection in one transaction (guarded: still collecting, same attempt): records
   * its artifacts (one row per path, replaced when collected again) and applies the ending
   * (retries, dependents) as `applyStatuses` would. The state it moved to, or null when the
   * guard did not hold.
   */
  finishCollect(outcome: CollectOutcome, retry: RetryPolicy, now: number): Promise<JobState | null>;
  /** The recorded artifacts of a job, by path. */
  artifacts(id: number): Promise<ArtifactRow[]>;
  /** Jobs of the targets in `submitting` whose lease expired, or whose owner is `deadOwner`. */
  expiredLeases(
    now: number,
    targets: readonly string[],
    deadOwner: string | null,
  ): Promise<JobRow[]>;
  /**
   * Resolves an abandoned claim (guarded on state, attempt and lease_owner = `expectedOwner`):
   * adopt `handle` (-> queued), fail with `failReason`, or put the job back to ready for the SAME
   * attempt (same job key), or cancel it if a cancel was asked.
   */
  resolveLease(
    id: number,
    attempt: number,
    expectedOwner: string | null,
    outcome: LeaseOutcome,
    now: number,
  ): Promise<boolean>;
  /** Ends waiting/ready jobs at once; marks live ones cancel-requested. The row after, or null. */
  requestCancel(id: number, now: number): Promise<JobRow | null>;
  /** Ends a live job whose runner was asked to cancel (guarded on live states). */
  markCancelled(id: number, now: number): Promise<void>;
  /** Back to ready/waiting with a fresh attempt budget; dependents it skipped wait again. */
  retry(id: number, now: number): Promise<JobRow | null>;
  reprioritize(id: number, priority: number, now: number): Promise<JobRow | null>;
  /** Deletes terminal jobs ended before `before` (unless an open job depends on them) and older events. */
  prune(before: number): Promise<{ jobs: number; events: number }>;
  events(after: number, limit: number): Promise<QueueEvent[]>;
  lastEventSeq(): Promise<number>;
  /**
   * Writes (inserts or replaces) a scheduler's row, and deletes the rows of other schedulers
   * whose last heartbeat is older than `forgetBefore` (dead for long). One short write, no
   * event; on SQLite through the same lock retries as every write.
   */
  heartbeat(row: SchedulerRow, forgetBefore: number): Promise<void>;
  /** Deletes a scheduler's row (its clean stop). */
  removeScheduler(owner: string): Promise<void>;
  /** Every scheduler row, live or not (the caller decides with `heartbeat_ms`). */
  schedulers(): Promise<SchedulerRow[]>;
  /** True when every given job (or every job, for null) is terminal. */
  allTerminal(ids: readonly number[] | null): Promise<boolean>;
  /**
   * Optional: calls `wake` when another process enqueued or released work (PostgreSQL:
   * LISTEN/NOTIFY). Without it, schedulers in other processes notice at their next tick.
   */
  subscribe?(wake: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** What `sqliteStore()` / `postgresStore()` return, with the internal `open`. */
export interface StoreFactory extends QueueStoreFactory {
  /** The default artifact folder (beside the SQLite file), if the store has one. */
  readonly artifactsDir?: string;
  open(): Promise<QueueStore>;
}

/** Narrows a public `QueueStoreFactory` to the internal one, or returns null. */
export function asStoreFactory(value: unknown): StoreFactory | null {
  const f = value as Partial<StoreFactory> | null;
  return typeof f === 'object' && f !== null && typeof f.open === 'function'
    ? (f as StoreFactory)
    : null;
}
