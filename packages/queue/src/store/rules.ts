// The transition logic of the queue, written once for both stores: which dependency edges
// hold, what a runner status, a failed submit, a recovered lease, a cancel or a retry does to a
// job. Each function reads the row(s) a store locked and returns the guarded `Move` to apply;
// the store only turns a Move into its dialect's UPDATE (SQLite one synchronous statement,
// PostgreSQL batched by `moveMany`). The model-based test checks the event log against
// LEGAL_TRANSITIONS.

import { isDeepStrictEqual } from 'node:util';
import { isTerminalJobState, type RunnerHandle, type RunnerStatus } from '@crystalmath/core';
import { QueueError } from '../queue-error.js';
import type { EdgeCondition, FailurePolicy, JobState } from '../types.js';
import type { CollectOutcome, JobRow, NewJob, RetryPolicy, SubmittedResult } from './store.js';

/** Every legal `from -> to` of a job (`null` = created). Anything else is a bug. */
export const LEGAL_TRANSITIONS: ReadonlyMap<JobState | null, ReadonlySet<JobState>> = new Map<
  JobState | null,
  ReadonlySet<JobState>
>([
  [null, new Set<JobState>(['waiting', 'ready', 'skipped'])],
  ['waiting', new Set<JobState>(['ready', 'skipped', 'cancelled'])],
  ['ready', new Set<JobState>(['submitting', 'cancelled'])],
  // back to ready: submit failed with attempts left, or a crashed claim the runner never saw
  ['submitting', new Set<JobState>(['queued', 'ready', 'failed', 'cancelled'])],
  [
    'queued',
    new Set<JobState>([
      'running',
      'collecting',
      'succeeded',
      'failed',
      'cancelled',
      'timeout',
      'ready',
    ]),
  ],
  [
    'running',
    new Set<JobState>(['collecting', 'succeeded', 'failed', 'cancelled', 'timeout', 'ready']),
  ],
  // the runner's ending, applied once the outputs are home (or their collection failed)
  ['collecting', new Set<JobState>(['succeeded', 'failed', 'cancelled', 'timeout', 'ready'])],
  ['succeeded', new Set<JobState>()],
  // retry() by hand
  ['failed', new Set<JobState>(['ready', 'waiting'])],
  ['cancelled', new Set<JobState>(['ready', 'waiting'])],
  ['timeout', new Set<JobState>(['ready', 'waiting'])],
  ['skipped', new Set<JobState>(['ready', 'waiting'])],
]);

export const isTerminal: (state: JobState) => boolean = isTerminalJobState;

/** Values a transition writes into cm_jobs columns. */
export type ColumnValues = Record<string, string | number | null>;

/**
 * One guarded transition: `UPDATE cm_jobs SET state = <to>, updated_at = <now>, <set...> WHERE
 * id = <id> AND state = <from>`, plus its `job:state` event with `reason`. A store applies it
 * in the open transaction; one that matches no row writes nothing.
 */
export interface Move {
  readonly id: number;
  readonly from: JobState;
  readonly to: JobState;
  readonly set?: ColumnValues;
  readonly reason?: string | null;
}

const CANCELLED_BY_REQUEST = 'cancelled by request';
const CLEAR_LEASE = { lease_owner: null, lease_until: null } as const;

/** Whether `row` is still the claim `owner` made for `attempt` (state submitting). */
export function holdsClaim(
  row: JobRow | undefined,
  attempt: number,
  owner: string | null,
): row is JobRow & { state: 'submitting' } {
  return row?.state === 'submitting' && row.attempt === attempt && row.lease_owner === owner;
}

/** A claim whose submit returned a handle: `queued`. */
export function submittedMove(r: SubmittedResult): Move {
  return {
    id: r.id,
    from: 'submitting',
    to: 'queued',
    set: { handle: JSON.stringify(r.handle), ...CLEAR_LEASE, reason: null },
  };
}

/** A claim whose submit failed: cancelled if asked, back to ready at `retryAt`, else failed. */
export function submitFailedMove(
  row: JobRow,
  reason: string,
  retryAt: number | null,
  now: number,
): Move {
  const id = row.id;
  if (row.cancel_requested) return cancelledMove(id, 'submitting', now, CLEAR_LEASE);
  if (retryAt !== null)
    return {
      id,
      from: 'submitting',
      to: 'ready',
      set: { ...CLEAR_LEASE, run_at: retryAt, reason },
      reason,
    };
  return {
    id,
    from: 'submitting',
    to: 'failed',
    set: { ...CLEAR_LEASE, ended_at: now, reason },
    reason,
  };
}

/** How a recovered claim is resolved (see `QueueStore.resolveLease`). */
export type LeaseOutcome =
  | { handle: RunnerHandle }
  | { failReason: string }
  | { resubmit: true; reason?: string };

/**
 * An abandoned claim: adopt the handle the runner knows (queued), cancel it when asked, fail it
 * when the outcome is unknowable, or the SAME attempt again (same job key: no second job).
 */
export function leaseMove(row: JobRow, outcome: LeaseOutcome, now: number): Move {
  const id = row.id;
  if ('handle' in outcome) {
    const handle = JSON.stringify(outcome.handle);
    const set = { ...CLEAR_LEASE, handle, reason: null };
    return { id, from: 'submitting', to: 'queued', set, reason: 'adopted after a crash' };
  }
  // Not running anywhere (or unknowable): nothing to cancel on the runner.
  if (row.cancel_requested) return cancelledMove(id, 'submitting', now, CLEAR_LEASE);
  if ('failReason' in outcome) {
    const why = outcome.failReason;
    const set = { ...CLEAR_LEASE, ended_at: now, reason: why };
    return { id, from: 'submitting', to: 'failed', set, reason: why };
  }
  const why = outcome.reason ?? 'resubmitting after a crash';
  const set = { ...CLEAR_LEASE, attempt: row.attempt - 1, reason: why };
  return { id, from: 'submitting', to: 'ready', set, reason: why };
}

/**
 * What `cancel(id)` does to a job: a waiting or ready job ends at once (a Move); a live one is
 * flagged `cancel_requested` for the scheduler that owns it (`'flag'`); an ended one: nothing.
 */
export function cancelRequest(row: JobRow, now: number): Move | 'flag' | null {
  if (row.state === 'waiting' || row.state === 'ready')
    return cancelledMove(row.id, row.state, now, { cancel_requested: 1 });
  return isTerminal(row.state) ? null : 'flag';
}

/** A live job whose runner was asked to cancel it; null when it is no longer live. */
export function markCancelledMove(row: JobRow | undefined, now: number): Move | null {
  if (row === undefined || (row.state !== 'queued' && row.state !== 'running')) return null;
  return cancelledMove(row.id, row.state, now);
}

function cancelledMove(id: number, from: JobState, now: number, extra: ColumnValues = {}): Move {
  const why = CANCELLED_BY_REQUEST;
  return { id, from, to: 'cancelled', set: { ...extra, ended_at: now, reason: why }, reason: why };
}

/**
 * A waiting dependent, judged on ALL its parents once one ended: skipped (naming the parent that
 * decided it, see `skipReason`), ready at `max(run_at, now)`, or null (still waiting).
 */
export function dependentMove<
  P extends {
    readonly id: number;
    readonly state: JobState;
    readonly condition: EdgeCondition;
    readonly workflow_key?: string | null;
  },
>(
  child: { readonly id: number; readonly run_at: number },
  parents: readonly P[],
  policy: FailurePolicy | null,
  now: number,
): Move | null {
  const d = decideDependent(parents, policy);
  if (d.decision === 'skip') {
    const why = skipReason(d.because);
    return {
      id: child.id,
      from: 'waiting',
      to: 'skipped',
      set: { ended_at: now, reason: why },
      reason: why,
    };
  }
  if (d.decision === 'ready') {
    const set = { run_at: Math.max(Number(child.run_at), now), reason: null };
    return { id: child.id, from: 'waiting', to: 'ready', set };
  }
  return null;
}

/** Throws E_QUEUE_INVALID_STATE unless `row` may be retried by hand. */
export function assertRetryable(row: JobRow): void {
  if (['failed', 'cancelled', 'timeout', 'skipped'].includes(row.state)) return;
  throw new QueueError(
    'E_QUEUE_INVALID_STATE',
    `job ${row.id} is ${row.state}: only failed, cancelled, timeout or skipped jobs can be retried`,
    { details: { job: String(row.id), state: row.state } },
  );
}

/** Thrown by `retry` when the job itself cannot run again until a parent is retried. */
export function blockedRetryError(id: number): QueueError {
  return new QueueError(
    'E_QUEUE_INVALID_STATE',
    `job ${id} has a dependency that ended badly: retry that one first`,
    { details: { job: String(id) } },
  );
}

/**
 * A retry by hand of `job` (or of a dependent it skipped): a fresh attempt budget, waiting
 * while a parent is open, ready otherwise; null when an ended parent's edge cannot hold.
 */
export function retryMove(
  job: JobRow,
  parents: readonly { readonly state: JobState; readonly condition: EdgeCondition }[],
  policy: FailurePolicy | null,
  now: number,
): Move | null {
  if (parents.some((p) => isTerminal(p.state) && !conditionHolds(p.condition, p.state, policy)))
    return null;
  const waiting = parents.some((p) => !isTerminal(p.state));
  return {
    id: job.id,
    from: job.state,
    to: waiting ? 'waiting' : 'ready',
    set: {
      attempt_base: job.attempt,
      run_at: now,
      ended_at: null,
      exit_code: null,
      handle: null,
      runner_status: null,
      cancel_requested: 0,
      lease_owner: null,
      lease_until: null,
      reason: null,
    },
    reason: 'retry requested',
  };
}

/**
 * Whether a parent that ended in `parent` lets a dependent run. `afternotok` counts failed,
 * cancelled and timeout (not skipped); under the `continue` policy every edge holds.
 */
export function conditionHolds(
  condition: EdgeCondition,
  parent: JobState,
  policy: FailurePolicy | null = null,
): boolean {
  if (policy === 'continue' || condition === 'afterany') return true;
  if (condition === 'afterok') return parent === 'succeeded';
  return parent === 'failed' || parent === 'cancelled' || parent === 'timeout';
}

/** The runner job key of an attempt: deterministic, valid per `isValidJobKey`. */
export function jobKey(storeId: string, id: number, attempt: number): string {
  return `cm-${storeId}-${id}-a${attempt}`;
}

/** Runner states after which another attempt may help. */
const RETRYABLE = new Set<RunnerStatus['state']>(['failed', 'out_of_memory', 'node_fail', 'lost']);

/** What one runner status does to a live (queued/running) job. */
export type StatusDecision =
  | { kind: 'none' }
  | { kind: 'note'; runnerStatus: string; reason: string | null }
  | {
      kind: 'move';
      to: JobState;
      reason: string | null;
      set: Record<string, string | number | null>;
    };

export function decideStatus(
  row: JobRow,
  s: RunnerStatus,
  retry: RetryPolicy,
  now: number,
): StatusDecision {
  const status = JSON.stringify(s);
  const reason = s.reason ?? null;
  if (s.state === 'queued' || s.state === 'running') {
    // A job never goes back from running to queued here (a SLURM requeue shows as a note).
    if (s.state === 'running' && row.state === 'queued') {
      return {
        kind: 'move',
        to: 'running',
        reason,
        set: { runner_status: status, started_at: s.startedAt ?? now, reason },
      };
    }
    return status === row.runner_status
      ? { kind: 'none' }
      : { kind: 'note', runnerStatus: status, reason };
  }
  const end = {
    runner_status: status,
    exit_code: s.exitCode ?? null,
    ended_at: now,
    started_at: row.started_at ?? s.startedAt ?? null,
    lease_owner: null,
    lease_until: null,
  };
  if (s.state === 'succeeded')
    return { kind: 'move', to: 'succeeded', reason: null, set: { ...end, reason: null } };
  if (s.state === 'cancelled') {
    const why =
      reason ?? (row.cancel_requested ? 'cancelled by request' : 'cancelled on the target');
    return { kind: 'move', to: 'cancelled', reason: why, set: { ...end, reason: why } };
  }
  if (s.state === 'timeout') {
    const why = reason ?? 'walltime exceeded';
    return { kind: 'move', to: 'timeout', reason: why, set: { ...end, reason: why } };
  }
  // The job's state already says `failed`: the reason says why (the runner's own state when it
  // is more precise, the exit code, the runner's reason), never the state word again.
  const facts = [
    ...(s.state !== 'failed' ? [s.state.replace(/_/g, ' ')] : []),
    ...(s.exitCode !== undefined ? [`exit ${s.exitCode}`] : []),
  ].join(', ');
  // A runner's reason that only restates the exit code (`exit status 3`) adds nothing.
  const said =
    reason && !(s.exitCode !== undefined && reason === `exit status ${s.exitCode}`)
      ? reason
      : undefined;
  const why =
    facts && said ? `${facts}: ${said}` : facts || said || 'the runner reported a failure';
  const again = RETRYABLE.has(s.state) && !row.cancel_requested ? retry(row) : null;
  if (again !== null) {
    return {
      kind: 'move',
      to: 'ready',
      reason: `retry: ${why}`,
      set: {
        runner_status: status,
        exit_code: s.exitCode ?? null,
        run_at: again,
        handle: null,
        reason: `retry: ${why}`,
      },
    };
  }
  return { kind: 'move', to: 'failed', reason: why, set: { ...end, reason: why } };
}

/**
 * What happens to a waiting dependent once one of its parents ended, judged on ALL its parents
 * (several may have ended in the same transaction): `skip` when some ended parent's edge
 * cannot hold, `ready` when every parent ended and every edge holds, else `wait`.
 */
export function decideDependent<
  P extends { readonly state: JobState; readonly condition: EdgeCondition },
>(
  parents: readonly P[],
  policy: FailurePolicy | null,
): { decision: 'skip'; because: P } | { decision: 'ready' | 'wait' } {
  let open = false;
  for (const p of parents) {
    if (!isTerminal(p.state)) open = true;
    else if (!conditionHolds(p.condition, p.state, policy)) return { decision: 'skip', because: p };
  }
  return { decision: open ? 'wait' : 'ready' };
}

/**
 * An idempotency key found on an existing job: the same definition (spec and target) gets that
 * job back; a different one is `E_QUEUE_DUPLICATE`, never a silent swap of one job for another.
 * Specs compare as JSON values, so key order does not matter.
 */
export function assertSameDefinition(
  found: { readonly id: number | string; readonly spec: string; readonly target: string },
  job: NewJob,
): void {
  if (
    found.target === job.target &&
    isDeepStrictEqual(JSON.parse(found.spec), JSON.parse(job.spec))
  )
    return;
  throw new QueueError(
    'E_QUEUE_DUPLICATE',
    `idempotencyKey "${job.idempotencyKey}" belongs to job ${found.id}, which has a different ` +
      `${found.target === job.target ? 'spec' : `target ("${found.target}")`}`,
    { details: { field: 'idempotencyKey', job: String(found.id) } },
  );
}

/**
 * Why a dependent is skipped, naming its parent by workflow key and id when it has a key:
 * `dependency c (job 3) failed (afterok)`.
 */
export function skipReason(p: {
  readonly id: number | string;
  readonly state: JobState;
  readonly condition: EdgeCondition;
  readonly workflow_key?: string | null;
}): string {
  const who = p.workflow_key ? `${p.workflow_key} (job ${p.id})` : `job ${p.id}`;
  const ended =
    p.state === 'timeout' ? 'timed out' : p.state === 'skipped' ? 'was skipped' : p.state;
  return `dependency ${who} ${ended} (${p.condition})`;
}

/**
 * A new job's edges and first state: `skipped` (with the reason) when a parent already ended in
 * a way its edge does not accept, `waiting` while a parent is open, else `ready`. Parents are
 * existing jobs (`stateOf` gives their state, undefined when there is none) or earlier jobs of
 * the same batch (`{ index }` into `batch`). An unknown parent is `E_QUEUE_UNKNOWN_DEPENDENCY`.
 */
export function planNewJob(
  job: NewJob,
  batch: { readonly ids: readonly number[]; readonly states: readonly JobState[] },
  stateOf: (id: number) => JobState | undefined,
  policy: FailurePolicy | null,
): {
  state: JobState;
  skip: string | null;
  parents: { id: number; condition: EdgeCondition }[];
} {
  let pending = 0;
  let skip: string | null = null;
  const parents: { id: number; condition: EdgeCondition }[] = [];
  for (const dep of job.deps) {
    let id: number;
    let state: JobState | undefined;
    if (typeof dep.parent === 'number') {
      id = dep.parent;
      state = stateOf(id);
      if (state === undefined)
        throw new QueueError('E_QUEUE_UNKNOWN_DEPENDENCY', `dependency ${id} does not exist`, {
          details: { field: 'dependsOn', job: String(id) },
        });
    } else {
      const known = batch.ids[dep.parent.index];
      if (known === undefined)
        throw new QueueError(
          'E_QUEUE_UNKNOWN_DEPENDENCY',
          `dependency index ${dep.parent.index} is not an earlier job`,
        );
      id = known;
      state = batch.states[dep.parent.index];
    }
    parents.push({ id, condition: dep.condition });
    if (state === undefined || !isTerminal(state)) pending++;
    else if (!conditionHolds(dep.condition, state, policy))
      skip ??= skipReason({ id, state, condition: dep.condition });
  }
  const state: JobState = skip !== null ? 'skipped' : pending > 0 ? 'waiting' : 'ready';
  return { state, skip, parents };
}

/** What `insertJobs` returns for a workflow whose idempotency key already exists. */
export function existingWorkflow(
  workflowId: number,
  rows: readonly { readonly id: number; readonly state: JobState }[],
): { ids: number[]; states: JobState[]; existing: boolean[]; workflowId: number } {
  return {
    ids: rows.map((r) => Number(r.id)),
    states: rows.map((r) => r.state),
    existing: rows.map(() => true),
    workflowId,
  };
}

/**
 * A live job whose runner reported an ending while it has outputs to bring home: `collecting`,
 * with the runner's status kept (the handle too, for the collection) until `collectedMove`.
 */
export function collectingMove(row: JobRow, s: RunnerStatus, now: number): Move {
  return {
    id: row.id,
    from: row.state,
    to: 'collecting',
    set: {
      runner_status: JSON.stringify(s),
      exit_code: s.exitCode ?? null,
      started_at: row.started_at ?? s.startedAt ?? now,
      reason: null,
    },
    reason: `the runner reported ${s.state}: collecting outputs`,
  };
}

/**
 * The end of a collection: the runner's ending kept in `collecting` is applied as a poll would
 * have applied it (retries, dependents), unless the collection failed, which fails the attempt
 * with the collection's reason. Null when the row is no longer that collection (guard).
 */
export function collectedMove(
  row: JobRow | undefined,
  outcome: CollectOutcome,
  retry: RetryPolicy,
  now: number,
): Move | null {
  if (row?.state !== 'collecting' || Number(row.attempt) !== outcome.attempt) return null;
  const kept = JSON.parse(row.runner_status ?? '{"state":"failed"}') as RunnerStatus;
  // A success whose collection failed becomes a failure; an ending that was already a failure
  // keeps its state and exit code, with the collection's reason added.
  const why = outcome.failure;
  const status: RunnerStatus =
    why === null
      ? kept
      : kept.state === 'succeeded'
        ? { state: 'failed', reason: why }
        : { ...kept, reason: kept.reason ? `${kept.reason}; ${why}` : why };
  const d = decideStatus({ ...row, state: 'running' }, status, retry, now);
  if (d.kind !== 'move') return null;
  return {
    id: row.id,
    from: 'collecting',
    to: d.to,
    set: { ...d.set, ...(outcome.result === undefined ? {} : { result: outcome.result }) },
    reason: d.reason,
  };
}
