// Argument validation of the Queue's public API (in the spirit of pg-boss's attorney.ts): every
// check throws a ValidationError (or a QueueError for unknown targets) naming the field, before
// anything is written. The Queue calls these first, then the store.

import { type JobSpec, type Runner, ValidationError } from '@crystalmath/core';
import { encodeSpec } from './codec.js';
import { QueueError } from './queue-error.js';
import type { NewJob } from './store/store.js';
import {
  type BackoffOptions,
  type CleanupPolicy,
  type EnqueueOptions,
  type EventsOptions,
  type FailurePolicy,
  JOB_STATES,
  type JobState,
  type ListFilter,
  type PruneOptions,
  type SchedulerOptions,
  type TargetDeadlines,
  type TargetOptions,
  type WorkflowDefinition,
} from './types.js';

/** A target of this process: its name and the runner that serves it. */
export interface ResolvedTarget {
  readonly name: string;
  readonly runner: Runner;
  readonly deadlines: Required<TargetDeadlines>;
  readonly unreachableBackoff: Required<BackoffOptions>;
  readonly cleanup: CleanupPolicy;
}

/** Runner call deadlines when a target gives none (documented on `TargetDeadlines`). */
export const DEFAULT_DEADLINES: Required<TargetDeadlines> = {
  submitMs: 600_000,
  pollMs: 60_000,
  cancelMs: 60_000,
  findMs: 60_000,
  tailMs: 30_000,
  collectMs: 3_600_000,
  cleanupMs: 60_000,
};

/** Retry delays of an unreachable target: 0.5 s, 1 s, 1 s, ... +-20 % (one probe each). */
export const DEFAULT_UNREACHABLE_BACKOFF: Required<BackoffOptions> = {
  initialMs: 500,
  factor: 2,
  maxMs: 1_000,
  jitter: 0.2,
};

/**
 * The runner's own check of a spec (`Runner.validate`), when the target's runner is in this
 * process and declares it: a bad scheduler field is refused at the call, before any write.
 */
export function checkRunnerSpec(
  targets: ReadonlyMap<string, ResolvedTarget>,
  target: unknown,
  spec: JobSpec,
  field: string,
): void {
  const runner = typeof target === 'string' ? targets.get(target)?.runner : undefined;
  if (runner?.capabilities.validate === true) runner.validate?.(spec, field);
}

/** Backoff options: non-negative numbers, `jitter` at most 1. */
function checkBackoff(b: BackoffOptions | undefined, field: string): void {
  if (b === undefined) return;
  if (typeof b !== 'object' || b === null) throw new ValidationError(field, 'must be an object');
  for (const k of ['initialMs', 'factor', 'maxMs', 'jitter'] as const) {
    const v = b[k];
    if (
      v !== undefined &&
      (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (k === 'jitter' && v > 1))
    ) {
      throw new ValidationError(
        `${field}.${k}`,
        k === 'jitter' ? 'must be between 0 and 1' : 'must be a non-negative number',
      );
    }
  }
}

/** Per-call deadlines: positive integers (ms), defaults filled in. */
function checkDeadlines(
  d: TargetDeadlines | undefined,
  field: string,
  submitMs: number,
): Required<TargetDeadlines> {
  const out = { ...DEFAULT_DEADLINES, submitMs };
  if (d === undefined) return out;
  if (typeof d !== 'object' || d === null) throw new ValidationError(field, 'must be an object');
  for (const k of Object.keys(DEFAULT_DEADLINES) as (keyof TargetDeadlines)[]) {
    const v = d[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw new ValidationError(`${field}.${k}`, 'must be a positive integer (ms)');
    out[k] = v;
  }
  return out;
}

/** A job or workflow id: a decimal string. */
export function parseId(id: unknown, field = 'id'): number {
  if (typeof id !== 'string' || !/^[1-9][0-9]{0,14}$/.test(id)) {
    throw new ValidationError(field, 'must be a job id (a decimal string)');
  }
  return Number(id);
}

/** A page size from 1 to 1000 (`limit`), or the default. */
export function pageLimit(limit: unknown, fallback: number): number {
  const n = limit ?? fallback;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 1000)
    throw new ValidationError('limit', 'must be an integer from 1 to 1000');
  return n;
}

export function checkPriority(priority: unknown, field = 'priority'): asserts priority is number {
  if (typeof priority !== 'number' || !Number.isInteger(priority) || Math.abs(priority) > 1e9) {
    throw new ValidationError(field, 'must be an integer between -1e9 and 1e9');
  }
}

export function checkTargetName(target: unknown): string {
  if (typeof target !== 'string' || target === '')
    throw new ValidationError('target', 'must be a target name');
  return target;
}

export function checkTargetLimit(maxConcurrent: unknown): asserts maxConcurrent is number | null {
  if (
    maxConcurrent !== null &&
    (typeof maxConcurrent !== 'number' || !Number.isInteger(maxConcurrent) || maxConcurrent < 0)
  ) {
    throw new ValidationError('maxConcurrent', 'must be a non-negative integer or null');
  }
}

export function checkPrune(options: PruneOptions): void {
  if (
    typeof options !== 'object' ||
    options === null ||
    typeof options.olderThanMs !== 'number' ||
    !Number.isFinite(options.olderThanMs) ||
    options.olderThanMs < 0
  ) {
    throw new ValidationError('olderThanMs', 'must be a non-negative number of milliseconds');
  }
}

/** The state, workflow and order filters of `list()`. */
export function checkListFilter(filter: ListFilter): void {
  if (filter.state !== undefined) {
    const states = Array.isArray(filter.state) ? filter.state : [filter.state];
    for (const s of states)
      if (!JOB_STATES.includes(s as JobState))
        throw new ValidationError('state', `unknown state "${String(s)}"`);
  }
  if (filter.workflow !== undefined) parseId(filter.workflow, 'workflow');
  if (filter.order !== undefined && filter.order !== 'oldest' && filter.order !== 'newest')
    throw new ValidationError('order', 'must be "oldest" or "newest"');
}

/** `events()` options; returns `after` (0 when absent). */
export function checkEventsOptions(options: EventsOptions): number {
  const seq = options.after ?? 0;
  if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0)
    throw new ValidationError('after', 'must be a non-negative integer');
  if (options.tail !== undefined) {
    const tail = options.tail;
    if (typeof tail !== 'number' || !Number.isInteger(tail) || tail < 0)
      throw new ValidationError('tail', 'must be a non-negative integer');
    if (options.after !== undefined)
      throw new ValidationError('tail', 'cannot be combined with after');
  }
  return seq;
}

/** The workflow-level fields of `submitWorkflow`; returns its failure policy. */
export function checkWorkflow(def: WorkflowDefinition): FailurePolicy {
  if (typeof def !== 'object' || def === null)
    throw new ValidationError('workflow', 'must be an object');
  if (typeof def.name !== 'string' || def.name.trim() === '')
    throw new ValidationError('workflow.name', 'is required');
  const onFailure = def.onFailure ?? 'skip-dependents';
  if (onFailure !== 'skip-dependents' && onFailure !== 'continue') {
    throw new ValidationError('workflow.onFailure', 'must be "skip-dependents" or "continue"');
  }
  if (
    def.idempotencyKey !== undefined &&
    (typeof def.idempotencyKey !== 'string' || def.idempotencyKey === '')
  ) {
    throw new ValidationError('workflow.idempotencyKey', 'must be a non-empty string');
  }
  return onFailure;
}

/** JSON text of a metadata object, or ValidationError naming `field`. */
export function encodeMetadata(metadata: unknown, field: string): string {
  try {
    return JSON.stringify(metadata ?? {});
  } catch (cause) {
    throw new ValidationError(field, 'must be JSON-serialisable', { cause });
  }
}

/** Validates scheduler options; throws ValidationError naming the field. */
export function checkSchedulerOptions(s: SchedulerOptions): void {
  const int = (v: unknown, field: string, min: number): void => {
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < min)) {
      throw new ValidationError(`scheduler.${field}`, `must be an integer >= ${min}`);
    }
  };
  int(s.tickMs, 'tickMs', 1);
  int(s.pollIntervalMs, 'pollIntervalMs', 0);
  int(s.leaseMs, 'leaseMs', 1);
  int(s.claimBatch, 'claimBatch', 1);
  int(s.submitConcurrency, 'submitConcurrency', 1);
  int(s.submitTimeoutMs, 'submitTimeoutMs', 1);
  int(s.stopTimeoutMs, 'stopTimeoutMs', 0);
  int(s.heartbeatMs, 'heartbeatMs', 1);
  int(s.collectConcurrency, 'collectConcurrency', 1);
  if (s.ownerId !== undefined && (typeof s.ownerId !== 'string' || s.ownerId === '')) {
    throw new ValidationError('scheduler.ownerId', 'must be a non-empty string');
  }
}

/**
 * Checks one job's options and turns them into the row to insert; throws ValidationError (or
 * E_QUEUE_UNKNOWN_TARGET) naming the field, before anything is written.
 */
export function checkNewJob(
  spec: JobSpec,
  o: Omit<EnqueueOptions, 'dependsOn'>,
  field: string,
  workflowKey: string | null,
  deps: NewJob['deps'],
  known: ReadonlySet<string>,
  now: number,
): NewJob {
  if (typeof o.target !== 'string' || !known.has(o.target)) {
    const declared = [...known];
    throw new QueueError(
      'E_QUEUE_UNKNOWN_TARGET',
      `${field}.target: unknown target "${String(o.target)}" (declared: ${declared.join(', ') || 'none'})`,
      { details: { field: `${field}.target`, target: String(o.target), declared } },
    );
  }
  const priority = o.priority ?? 0;
  checkPriority(priority, `${field}.priority`);
  const maxAttempts = o.maxAttempts ?? 1;
  if (
    typeof maxAttempts !== 'number' ||
    !Number.isInteger(maxAttempts) ||
    maxAttempts < 1 ||
    maxAttempts > 1000
  ) {
    throw new ValidationError(`${field}.maxAttempts`, 'must be an integer from 1 to 1000');
  }
  const runAt = o.runAt === undefined ? now : o.runAt instanceof Date ? o.runAt.getTime() : o.runAt;
  if (typeof runAt !== 'number' || !Number.isFinite(runAt)) {
    throw new ValidationError(`${field}.runAt`, 'must be a Date or epoch milliseconds');
  }
  const tags = o.tags ?? [];
  if (
    !Array.isArray(tags) ||
    tags.some((t) => typeof t !== 'string' || t === '' || t.length > 128)
  ) {
    throw new ValidationError(
      `${field}.tags`,
      'must be an array of non-empty strings (at most 128 characters)',
    );
  }
  if (
    o.idempotencyKey !== undefined &&
    (typeof o.idempotencyKey !== 'string' || o.idempotencyKey === '')
  ) {
    throw new ValidationError(`${field}.idempotencyKey`, 'must be a non-empty string');
  }
  checkBackoff(o.backoff, `${field}.backoff`);
  let metadata: string;
  try {
    metadata = o.metadata === undefined ? '{}' : JSON.stringify(o.metadata);
  } catch (cause) {
    throw new ValidationError(`${field}.metadata`, 'must be JSON-serialisable', { cause });
  }
  if (typeof metadata !== 'string' || !metadata.startsWith('{'))
    throw new ValidationError(`${field}.metadata`, 'must be a JSON object');
  return {
    name: spec.name,
    target: o.target,
    priority,
    spec: encodeSpec(spec),
    workflowKey,
    maxAttempts,
    backoff: o.backoff ? JSON.stringify(o.backoff) : null,
    runAt,
    idempotencyKey: o.idempotencyKey ?? null,
    tags,
    metadata,
    deps,
  };
}

/** Resolves `targets` against `runners`; throws ValidationError naming the bad field. */
export function resolveTargets(
  targets: { readonly [name: string]: TargetOptions },
  runners: { readonly [name: string]: Runner } | undefined,
  /** `scheduler.submitTimeoutMs`: the submit deadline of targets that set none. */
  submitTimeoutMs: number = DEFAULT_DEADLINES.submitMs,
): Map<string, ResolvedTarget> {
  if (typeof targets !== 'object' || targets === null)
    throw new ValidationError('targets', 'must be an object');
  const out = new Map<string, ResolvedTarget>();
  for (const [name, t] of Object.entries(targets)) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
      throw new ValidationError(
        `targets.${name}`,
        'name must be letters, digits and ._- (at most 64)',
      );
    }
    if (typeof t !== 'object' || t === null)
      throw new ValidationError(`targets.${name}`, 'must be an object');
    const runner = typeof t.runner === 'string' ? runners?.[t.runner] : t.runner;
    if (!runner || typeof runner.submit !== 'function' || typeof runner.poll !== 'function') {
      throw new ValidationError(
        `targets.${name}.runner`,
        typeof t.runner === 'string'
          ? `no runner named "${t.runner}" in options.runners`
          : 'must be a Runner or a runner name',
      );
    }
    // The queue trusts the declared capabilities (find-based recovery): they must be true.
    for (const cap of ['find', 'validate'] as const) {
      if (runner.capabilities?.[cap] === true && typeof runner[cap] !== 'function')
        throw new ValidationError(
          `targets.${name}.runner.capabilities.${cap}`,
          `is declared but the runner has no ${cap}() method`,
        );
    }
    if (
      t.maxConcurrent !== undefined &&
      (!Number.isInteger(t.maxConcurrent) || t.maxConcurrent < 0)
    ) {
      throw new ValidationError(`targets.${name}.maxConcurrent`, 'must be a non-negative integer');
    }
    if (t.paused !== undefined && typeof t.paused !== 'boolean')
      throw new ValidationError(`targets.${name}.paused`, 'must be a boolean');
    checkBackoff(t.unreachableBackoff, `targets.${name}.unreachableBackoff`);
    if (t.cleanup !== undefined && !['keep', 'on-success', 'always'].includes(t.cleanup))
      throw new ValidationError(
        `targets.${name}.cleanup`,
        "must be 'keep', 'on-success' or 'always'",
      );
    out.set(name, {
      cleanup: t.cleanup ?? 'keep',
      name,
      runner,
      deadlines: checkDeadlines(t.deadlines, `targets.${name}.deadlines`, submitTimeoutMs),
      unreachableBackoff: { ...DEFAULT_UNREACHABLE_BACKOFF, ...t.unreachableBackoff },
    });
  }
  return out;
}
