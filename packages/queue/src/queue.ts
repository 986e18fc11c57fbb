// The Queue: producer, control and read APIs over a store, and the scheduler. Runner calls
// (submit, poll, cancel, find) happen between store transactions, never inside one; the store's
// guarded updates make every outcome safe to record late, twice, or from another process.

import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import {
  CrystalMathError,
  isCrystalMathError,
  isTerminalRunnerState,
  type JobSpec,
  type Runner,
  type RunnerHandle,
  type RunnerStatus,
  ValidationError,
  validateJobSpec,
} from '@crystalmath/core';
import { normalizeDeps, topologicalOrder } from './dag.js';
import { QueueError } from './queue-error.js';
import { isTerminal, jobKey } from './store/rules.js';
import type { JobRow, NewJob, QueueStore, StatusUpdate, SubmittedResult } from './store/store.js';
import {
  type BackoffOptions,
  type Clock,
  type EnqueueOptions,
  type EventsOptions,
  JOB_STATES,
  type Job,
  type JobState,
  type ListFilter,
  type ListPage,
  type Logger,
  type Metadata,
  type PruneOptions,
  type Queue,
  type QueueCounts,
  type QueueEvent,
  type QueueEventMap,
  type SchedulerOptions,
  type TargetInfo,
  type TargetOptions,
  type Workflow,
  type WorkflowDefinition,
  type WorkflowListOptions,
  type WorkflowPage,
} from './types.js';

/** Retry delays when `backoff` is not given: 5 s, 10 s, 20 s, ... up to 10 min, +-20 %. */
export const DEFAULT_BACKOFF: Required<BackoffOptions> = {
  initialMs: 5_000,
  factor: 2,
  maxMs: 600_000,
  jitter: 0.2,
};
const EVENT_PAGE = 1_000;
const DRAIN_CHECK_MS = 20;
const EMITTED = [
  'job:state',
  'queue:paused',
  'queue:resumed',
  'target:limit',
  'workflow:created',
  'workflow:done',
] as const;

function zeroCounts(): Record<JobState, number> {
  return Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
}

function parseId(id: unknown, field = 'id'): number {
  if (typeof id !== 'string' || !/^[1-9][0-9]{0,14}$/.test(id)) {
    throw new ValidationError(field, 'must be a job id (a decimal string)');
  }
  return Number(id);
}

function encodeSpec(spec: JobSpec): string {
  // The replacer costs; only bytes to stage in need it.
  const bytes = spec.inputs?.some((i) => 'content' in i && i.content instanceof Uint8Array);
  if (!bytes) return JSON.stringify(spec);
  return JSON.stringify(spec, (_k, v: unknown) =>
    v instanceof Uint8Array ? { $bytes: Buffer.from(v).toString('base64') } : v,
  );
}

function decodeSpec(text: string): JobSpec {
  if (!text.includes('"$bytes"')) return JSON.parse(text) as JobSpec;
  return JSON.parse(text, (_k, v: unknown) => {
    const o = v as { $bytes?: unknown } | null;
    return o !== null && typeof o === 'object' && typeof o.$bytes === 'string'
      ? new Uint8Array(Buffer.from(o.$bytes, 'base64'))
      : v;
  }) as JobSpec;
}

/** A page size from 1 to 1000 (`limit`), or the default. */
function pageLimit(limit: unknown, fallback: number): number {
  const n = limit ?? fallback;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 1000)
    throw new ValidationError('limit', 'must be an integer from 1 to 1000');
  return n;
}

/** An opaque page cursor: the last id of a page, tagged with what it pages (`j`, `w`). */
function makeCursor(kind: string, id: number): string {
  return Buffer.from(`${kind}:${id}`).toString('base64url');
}

/** The id in a cursor `makeCursor(kind, ...)` made, or undefined for none; E_VALIDATION otherwise. */
function readCursor(cursor: unknown, kind: string, from: string): number | undefined {
  if (cursor === undefined) return undefined;
  const text = typeof cursor === 'string' ? Buffer.from(cursor, 'base64url').toString() : '';
  const m = new RegExp(`^${kind}:([0-9]{1,15})$`).exec(text);
  if (!m) throw new ValidationError('cursor', `is not a cursor returned by ${from}`);
  return Number(m[1]);
}

function message(error: unknown): string {
  if (isCrystalMathError(error)) return `${error.code}: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}

interface ResolvedTarget {
  readonly name: string;
  readonly runner: Runner;
}

export interface QueueInternals {
  readonly store: QueueStore;
  readonly targets: ReadonlyMap<string, ResolvedTarget>;
  readonly logger: Logger | undefined;
  readonly clock: Clock;
  readonly scheduler: SchedulerOptions;
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
  if (s.ownerId !== undefined && (typeof s.ownerId !== 'string' || s.ownerId === '')) {
    throw new ValidationError('scheduler.ownerId', 'must be a non-empty string');
  }
}

export class QueueImpl extends EventEmitter implements Queue {
  readonly #store: QueueStore;
  readonly #targets: ReadonlyMap<string, ResolvedTarget>;
  readonly #targetNames: readonly string[];
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #owner: string;
  readonly #tickMs: number;
  readonly #pollMs: number;
  readonly #leaseMs: number;
  readonly #claimBatch: number;
  readonly #submitConcurrency: number;
  readonly #lastPoll = new Map<Runner, number>();
  #emittedSeq = 0;
  /** `on()`'s wrappers by event and listener, so `off()` removes the right one. */
  readonly #wrappers = new Map<string, Map<unknown, ((payload: never) => void)[]>>();
  #emitting: Promise<void> = Promise.resolve();
  #running = false;
  #closed = false;
  #loop: Promise<void> | null = null;
  #wakeUp: (() => void) | null = null;
  #wakePending = false;
  #tickChain: Promise<unknown> = Promise.resolve();
  #nextRecovery = 0;
  #unsubscribe: (() => Promise<void>) | null = null;

  constructor(internals: QueueInternals) {
    super();
    this.#store = internals.store;
    this.#targets = internals.targets;
    this.#targetNames = [...internals.targets.keys()];
    this.#log = internals.logger ?? {};
    this.#clock = internals.clock;
    const s = internals.scheduler;
    this.#owner = s.ownerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.#tickMs = s.tickMs ?? 1_000;
    this.#pollMs = s.pollIntervalMs ?? 2_000;
    this.#leaseMs = s.leaseMs ?? 60_000;
    this.#claimBatch = s.claimBatch ?? 256;
    this.#submitConcurrency = s.submitConcurrency ?? 16;
  }

  /** This scheduler's lease owner id. */
  get ownerId(): string {
    return this.#owner;
  }

  /** The runner job key of a job's attempt: `cm-<store id>-<job id>-a<attempt>`. */
  jobKey(id: string, attempt: number): string {
    return jobKey(this.#store.storeId, parseId(id), attempt);
  }

  // ------------------------------------------------------------------ producer

  async enqueue<M extends Metadata = Metadata>(
    spec: JobSpec,
    options: EnqueueOptions<M>,
  ): Promise<Job<M>> {
    if (typeof options !== 'object' || options === null)
      throw new ValidationError('options', 'must be an object');
    const [job] = await this.#enqueue<M>([{ spec, ...options }], true);
    return job!;
  }

  async enqueueMany<M extends Metadata = Metadata>(
    items: readonly ({ readonly spec: JobSpec } & EnqueueOptions<M>)[],
  ): Promise<Job<M>[]> {
    if (!Array.isArray(items)) throw new ValidationError('items', 'must be an array');
    return this.#enqueue<M>(items, false);
  }

  async #enqueue<M extends Metadata>(
    items: readonly ({ readonly spec: JobSpec } & EnqueueOptions<M>)[],
    single: boolean,
  ): Promise<Job<M>[]> {
    this.#assertOpen();
    if (items.length === 0) return [];
    const deps: Required<{ job: string; condition: Job['dependsOn'][number]['condition'] }>[][] =
      [];
    const jobs: NewJob[] = [];
    const known = await this.#knownTargets(items.map((item) => item?.target));
    for (const [i, item] of items.entries()) {
      const field = single ? 'options' : `items[${i}]`;
      if (typeof item !== 'object' || item === null)
        throw new ValidationError(`items[${i}]`, 'must be an object');
      validateJobSpec(item.spec, single ? 'spec' : `items[${i}].spec`);
      const d = normalizeDeps(item.dependsOn, `${field}.dependsOn`);
      deps.push(d);
      const parents = d.map((x, k) => ({
        parent: parseId(x.job, `${field}.dependsOn[${k}].job`),
        condition: x.condition,
      }));
      jobs.push(this.#newJob(item.spec, item, field, null, parents, known));
    }
    const now = this.#clock.now();
    const result = await this.#store.insertJobs(jobs, null, now);
    this.#afterWrite();
    // Built from what was written: no read back, except for rows that existed or were skipped.
    const reread = result.ids.filter(
      (_, i) => result.existing[i] || result.states[i] === 'skipped',
    );
    const found = new Map((await this.#jobs(reread)).map((j) => [j.id, j]));
    return result.ids.map((id, i) => {
      const known = found.get(String(id));
      if (known) return known as Job<M>;
      const job = jobs[i]!;
      const item = items[i]!;
      return {
        id: String(id),
        name: job.name,
        state: result.states[i]!,
        target: job.target,
        priority: job.priority,
        spec: item.spec,
        workflowId: null,
        workflowKey: null,
        dependsOn: deps[i]!,
        attempt: 0,
        attemptsBeforeRetry: 0,
        maxAttempts: job.maxAttempts,
        runAt: job.runAt,
        idempotencyKey: job.idempotencyKey,
        tags: [...job.tags],
        metadata: (item.metadata ?? {}) as M,
        handle: null,
        runnerStatus: null,
        exitCode: null,
        reason: null,
        createdAt: now,
        updatedAt: now,
        startedAt: null,
        endedAt: null,
      };
    });
  }

  async submitWorkflow<M extends Metadata = Metadata>(
    def: WorkflowDefinition<M>,
  ): Promise<Workflow> {
    this.#assertOpen();
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
    const order = topologicalOrder(def);
    const index = new Map(order.map((k, i) => [k, i]));
    const jobs: NewJob[] = [];
    const known = await this.#knownTargets(
      order.map((key) => def.jobs[key]?.target ?? def.target ?? ''),
    );
    for (const key of order) {
      const j = def.jobs[key]!;
      const field = `workflow.jobs.${key}`;
      if (typeof j !== 'object' || j === null)
        throw new ValidationError(field, 'must be an object');
      validateJobSpec(j.spec, `${field}.spec`);
      const deps = normalizeDeps(j.dependsOn, `${field}.dependsOn`).map((d) => ({
        parent: { index: index.get(d.job)! },
        condition: d.condition,
      }));
      const target = j.target ?? def.target ?? '';
      jobs.push(this.#newJob(j.spec, { ...j, target }, field, key, deps, known));
    }
    let metadata: string;
    try {
      metadata = JSON.stringify(def.metadata ?? {});
    } catch (cause) {
      throw new ValidationError('workflow.metadata', 'must be JSON-serialisable', { cause });
    }
    const { workflowId } = await this.#store.insertJobs(
      jobs,
      { name: def.name, onFailure, idempotencyKey: def.idempotencyKey ?? null, metadata },
      this.#clock.now(),
    );
    this.#afterWrite();
    return (await this.workflow(String(workflowId)))!;
  }

  #newJob(
    spec: JobSpec,
    o: Omit<EnqueueOptions, 'dependsOn'>,
    field: string,
    workflowKey: string | null,
    deps: NewJob['deps'],
    known: ReadonlySet<string>,
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
    if (typeof priority !== 'number' || !Number.isInteger(priority) || Math.abs(priority) > 1e9) {
      throw new ValidationError(`${field}.priority`, 'must be an integer between -1e9 and 1e9');
    }
    const maxAttempts = o.maxAttempts ?? 1;
    if (
      typeof maxAttempts !== 'number' ||
      !Number.isInteger(maxAttempts) ||
      maxAttempts < 1 ||
      maxAttempts > 1000
    ) {
      throw new ValidationError(`${field}.maxAttempts`, 'must be an integer from 1 to 1000');
    }
    const runAt =
      o.runAt === undefined
        ? this.#clock.now()
        : o.runAt instanceof Date
          ? o.runAt.getTime()
          : o.runAt;
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
    if (o.backoff !== undefined) {
      if (typeof o.backoff !== 'object' || o.backoff === null)
        throw new ValidationError(`${field}.backoff`, 'must be an object');
      for (const k of ['initialMs', 'factor', 'maxMs', 'jitter'] as const) {
        const v = o.backoff[k];
        if (
          v !== undefined &&
          (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (k === 'jitter' && v > 1))
        ) {
          throw new ValidationError(
            `${field}.backoff.${k}`,
            k === 'jitter' ? 'must be between 0 and 1' : 'must be a non-negative number',
          );
        }
      }
    }
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

  /**
   * The targets jobs may name: this process's, plus those another process declared (read only
   * when a job names one this process does not know).
   */
  async #knownTargets(names: readonly unknown[]): Promise<ReadonlySet<string>> {
    const local = new Set(this.#targetNames);
    if (names.every((n) => typeof n === 'string' && local.has(n))) return local;
    for (const t of await this.#store.targets()) local.add(t.name);
    return local;
  }

  // ------------------------------------------------------------------ control

  async pause(target?: string): Promise<void> {
    this.#assertOpen();
    if (target === undefined) await this.#store.setQueuePaused(true, this.#clock.now());
    else await this.#store.setTarget(this.#targetArg(target), { paused: true }, this.#clock.now());
    this.#afterWrite();
  }

  async resume(target?: string): Promise<void> {
    this.#assertOpen();
    if (target === undefined) await this.#store.setQueuePaused(false, this.#clock.now());
    else await this.#store.setTarget(this.#targetArg(target), { paused: false }, this.#clock.now());
    this.#afterWrite();
  }

  async setTargetLimit(target: string, maxConcurrent: number | null): Promise<void> {
    this.#assertOpen();
    if (
      maxConcurrent !== null &&
      (typeof maxConcurrent !== 'number' || !Number.isInteger(maxConcurrent) || maxConcurrent < 0)
    ) {
      throw new ValidationError('maxConcurrent', 'must be a non-negative integer or null');
    }
    await this.#store.setTarget(this.#targetArg(target), { maxConcurrent }, this.#clock.now());
    this.#afterWrite();
  }

  #targetArg(target: unknown): string {
    if (typeof target !== 'string' || target === '')
      throw new ValidationError('target', 'must be a target name');
    return target;
  }

  async cancel(id: string): Promise<Job> {
    this.#assertOpen();
    const row = await this.#store.requestCancel(parseId(id), this.#clock.now());
    if (!row)
      throw new QueueError('E_QUEUE_JOB_NOT_FOUND', `no job ${id}`, { details: { job: id } });
    if (isTerminal(row.state) && row.state !== 'cancelled') {
      throw new QueueError(
        'E_QUEUE_INVALID_STATE',
        `job ${id} already ended ${row.state}: nothing to cancel`,
        { details: { job: id, state: row.state } },
      );
    }
    const runner = this.#targets.get(row.target)?.runner;
    // A job in submitting is cancelled by the scheduler that records its handle; a job whose
    // target this process does not serve is cancelled by the scheduler that polls it.
    if ((row.state === 'queued' || row.state === 'running') && row.handle !== null && runner) {
      try {
        await runner.cancel(JSON.parse(row.handle) as RunnerHandle);
        await this.#store.markCancelled(row.id, this.#clock.now());
      } catch (error) {
        this.#error(error, `cancel job ${row.id}`);
      }
    }
    this.#afterWrite();
    return (await this.#jobs([row.id]))[0]!;
  }

  async retry(id: string): Promise<Job> {
    this.#assertOpen();
    const row = await this.#store.retry(parseId(id), this.#clock.now());
    if (!row)
      throw new QueueError('E_QUEUE_JOB_NOT_FOUND', `no job ${id}`, { details: { job: id } });
    this.#afterWrite();
    return (await this.#jobs([row.id]))[0]!;
  }

  async reprioritize(id: string, priority: number): Promise<Job> {
    this.#assertOpen();
    if (typeof priority !== 'number' || !Number.isInteger(priority) || Math.abs(priority) > 1e9) {
      throw new ValidationError('priority', 'must be an integer between -1e9 and 1e9');
    }
    const row = await this.#store.reprioritize(parseId(id), priority, this.#clock.now());
    if (!row)
      throw new QueueError('E_QUEUE_JOB_NOT_FOUND', `no job ${id}`, { details: { job: id } });
    return (await this.#jobs([row.id]))[0]!;
  }

  async prune(options: PruneOptions): Promise<{ jobs: number; events: number }> {
    this.#assertOpen();
    if (
      typeof options !== 'object' ||
      options === null ||
      typeof options.olderThanMs !== 'number' ||
      !Number.isFinite(options.olderThanMs) ||
      options.olderThanMs < 0
    ) {
      throw new ValidationError('olderThanMs', 'must be a non-negative number of milliseconds');
    }
    return this.#store.prune(this.#clock.now() - options.olderThanMs);
  }

  // ------------------------------------------------------------------ read

  async get(id: string): Promise<Job | null> {
    this.#assertOpen();
    return (await this.#jobs([parseId(id)]))[0] ?? null;
  }

  async list(filter: ListFilter = {}): Promise<ListPage> {
    this.#assertOpen();
    const limit = pageLimit(filter.limit, 100);
    if (filter.state !== undefined) {
      const states = Array.isArray(filter.state) ? filter.state : [filter.state];
      for (const s of states)
        if (!JOB_STATES.includes(s as JobState))
          throw new ValidationError('state', `unknown state "${String(s)}"`);
    }
    if (filter.workflow !== undefined) parseId(filter.workflow, 'workflow');
    if (filter.order !== undefined && filter.order !== 'oldest' && filter.order !== 'newest')
      throw new ValidationError('order', 'must be "oldest" or "newest"');
    // Cursors carry their direction, so one of the other order is refused, not misread.
    const kind = filter.order === 'newest' ? 'jn' : 'j';
    const from =
      readCursor(filter.cursor, kind, 'list()') ??
      (filter.order === 'newest' ? Number.MAX_SAFE_INTEGER : 0);
    const rows = await this.#store.list(filter, from, limit + 1);
    const page = rows.slice(0, limit);
    const jobs = await this.#toJobs(page);
    const nextCursor = rows.length > limit ? makeCursor(kind, page.at(-1)!.id) : null;
    return { jobs, nextCursor };
  }

  async counts(): Promise<QueueCounts> {
    this.#assertOpen();
    const byState = zeroCounts();
    const byTarget: Record<string, Record<JobState, number>> = {};
    let total = 0;
    for (const r of await this.#store.counts()) {
      const n = Number(r.n);
      byState[r.state] += n;
      byTarget[r.target] ??= zeroCounts();
      byTarget[r.target]![r.state] += n;
      total += n;
    }
    return { total, byState, byTarget };
  }

  async workflow(id: string): Promise<Workflow | null> {
    this.#assertOpen();
    const wf = await this.#store.workflowRow(parseId(id, 'workflow'));
    if (!wf) return null;
    const jobs = await this.#toJobs(await this.#store.workflowJobs(wf.id));
    const counts = zeroCounts();
    for (const j of jobs) counts[j.state]++;
    return {
      id: String(wf.id),
      name: wf.name,
      onFailure: wf.on_failure,
      createdAt: Number(wf.created_at),
      jobs: Object.fromEntries(jobs.map((j) => [j.workflowKey ?? j.id, j])),
      counts,
      done: jobs.every((j) => isTerminal(j.state)),
    };
  }

  /** Workflows, newest first, a page at a time (one query per page). */
  async workflows(options: WorkflowListOptions = {}): Promise<WorkflowPage> {
    this.#assertOpen();
    const limit = pageLimit(options.limit, 20);
    const before = readCursor(options.cursor, 'w', 'workflows()') ?? Number.MAX_SAFE_INTEGER;
    const rows = await this.#store.listWorkflows(before, limit + 1);
    const page = rows.slice(0, limit);
    return {
      workflows: page.map((w) => ({
        id: String(w.id),
        name: w.name,
        onFailure: w.on_failure,
        createdAt: Number(w.created_at),
        doneAt: w.done_at === null ? null : Number(w.done_at),
      })),
      nextCursor: rows.length > limit ? makeCursor('w', page.at(-1)!.id) : null,
    };
  }

  async targets(): Promise<TargetInfo[]> {
    this.#assertOpen();
    return (await this.#store.targets()).map((t) => ({
      name: t.name,
      maxConcurrent: t.max_concurrent === null ? null : Number(t.max_concurrent),
      paused: Number(t.paused) === 1,
      active: Number(t.active),
    }));
  }

  async *events(options: EventsOptions = {}): AsyncIterableIterator<QueueEvent> {
    this.#assertOpen();
    let seq = options.after ?? 0;
    if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0)
      throw new ValidationError('after', 'must be a non-negative integer');
    if (options.tail !== undefined) {
      const tail = options.tail;
      if (typeof tail !== 'number' || !Number.isInteger(tail) || tail < 0)
        throw new ValidationError('tail', 'must be a non-negative integer');
      if (options.after !== undefined)
        throw new ValidationError('tail', 'cannot be combined with after');
      seq = Math.max(0, (await this.#store.lastEventSeq()) - tail);
    }
    const follow = options.follow ?? true;
    const interval = options.pollIntervalMs ?? 200;
    for (;;) {
      if (options.signal?.aborted || this.#closed) return;
      const batch = await this.#store.events(seq, EVENT_PAGE);
      for (const e of batch) {
        seq = e.seq;
        yield e;
      }
      if (batch.length === EVENT_PAGE) continue;
      if (!follow) return;
      await this.#sleep(interval, options.signal, true);
    }
  }

  async tail(
    id: string,
    options: { readonly stream?: 'stdout' | 'stderr'; readonly offset?: number } = {},
  ): Promise<{ readonly data: string; readonly offset: number }> {
    this.#assertOpen();
    const row = (await this.#store.getJobs([parseId(id)]))[0];
    if (!row)
      throw new QueueError('E_QUEUE_JOB_NOT_FOUND', `no job ${id}`, { details: { job: id } });
    // Not submitted yet: nothing to read anywhere.
    if (row.handle === null) return { data: '', offset: options.offset ?? 0 };
    const runner = this.#targets.get(row.target)?.runner;
    if (!runner)
      throw new QueueError(
        'E_QUEUE_UNKNOWN_TARGET',
        `cannot tail job ${id}: this process has no runner for its target "${row.target}" (open the queue with that target's runner to read its output)`,
        { details: { job: id, target: row.target } },
      );
    if (!runner.tail)
      throw new CrystalMathError(
        'E_UNSUPPORTED',
        `[queue] cannot tail job ${id}: the ${runner.kind} runner of target "${row.target}" cannot read output`,
        { details: { job: id, target: row.target } },
      );
    return runner.tail(JSON.parse(row.handle) as RunnerHandle, options);
  }

  /**
   * A listener hears what is committed after it subscribed, never the log before it (replay is
   * `events({ after })`): it is wrapped to skip events up to the store's last seq at `on()`.
   */
  override on<K extends keyof QueueEventMap>(
    event: K,
    listener: (payload: QueueEventMap[K]) => void,
  ): this {
    if (!(EMITTED as readonly string[]).includes(event)) {
      super.on(event, listener);
      return this;
    }
    const from = this.#store.lastSeq;
    // The first listener: start reading the log where it stands, not from its beginning.
    if (!EMITTED.some((e) => this.listenerCount(e) > 0))
      this.#emittedSeq = Math.max(this.#emittedSeq, from);
    const wrapper = (payload: QueueEventMap[K]): void => {
      if ((payload as { seq: number }).seq > from) listener(payload);
    };
    const byListener = this.#wrappers.get(event) ?? new Map();
    this.#wrappers.set(event, byListener);
    const list = byListener.get(listener) ?? [];
    list.push(wrapper as (payload: never) => void);
    byListener.set(listener, list);
    super.on(event, wrapper);
    return this;
  }

  override off<K extends keyof QueueEventMap>(
    event: K,
    listener: (payload: QueueEventMap[K]) => void,
  ): this {
    const list = this.#wrappers.get(event)?.get(listener);
    const wrapper = list?.pop();
    if (list && list.length === 0) this.#wrappers.get(event)?.delete(listener);
    super.off(event, (wrapper as typeof listener | undefined) ?? listener);
    return this;
  }

  async #jobs(ids: readonly number[]): Promise<Job[]> {
    if (ids.length === 0) return [];
    const rows = await this.#store.getJobs(ids);
    const byId = new Map(rows.map((r) => [Number(r.id), r]));
    return this.#toJobs(ids.map((id) => byId.get(id)).filter((r): r is JobRow => r !== undefined));
  }

  /** Rows to jobs with their dependencies: two queries whatever the number of rows. */
  async #toJobs(rows: readonly JobRow[]): Promise<Job[]> {
    const deps = new Map<number, Job['dependsOn'][number][]>();
    for (const d of await this.#store.depsOf(rows.map((r) => Number(r.id)))) {
      const list = deps.get(Number(d.job_id)) ?? [];
      list.push({ job: String(d.parent_id), condition: d.condition });
      deps.set(Number(d.job_id), list);
    }
    const num = (v: number | null): number | null => (v === null ? null : Number(v));
    return rows.map((r) => ({
      id: String(r.id),
      name: r.name,
      state: r.state,
      target: r.target,
      priority: Number(r.priority),
      spec: decodeSpec(r.spec),
      workflowId: r.workflow_id === null ? null : String(r.workflow_id),
      workflowKey: r.workflow_key,
      dependsOn: deps.get(Number(r.id)) ?? [],
      attempt: Number(r.attempt),
      attemptsBeforeRetry: Number(r.attempt_base),
      maxAttempts: Number(r.max_attempts),
      runAt: Number(r.run_at),
      idempotencyKey: r.idempotency_key,
      tags: JSON.parse(r.tags) as string[],
      metadata: JSON.parse(r.metadata) as Metadata,
      handle: r.handle === null ? null : (JSON.parse(r.handle) as RunnerHandle),
      runnerStatus: r.runner_status === null ? null : (JSON.parse(r.runner_status) as RunnerStatus),
      exitCode: num(r.exit_code),
      reason: r.reason,
      createdAt: Number(r.created_at),
      updatedAt: Number(r.updated_at),
      startedAt: num(r.started_at),
      endedAt: num(r.ended_at),
    }));
  }

  // ------------------------------------------------------------------ scheduler

  async start(): Promise<void> {
    this.#assertOpen();
    if (this.#running) return;
    this.#running = true;
    // Claims this owner left behind in a previous life (it just started: none is in flight).
    await this.#serial(() => this.#recover(this.#owner));
    this.#nextRecovery = this.#clock.now() + this.#recoveryInterval();
    if (this.#store.subscribe) {
      try {
        this.#unsubscribe = await this.#store.subscribe(() => this.#wake());
      } catch (error) {
        this.#error(error, 'subscribe to store notifications');
      }
    }
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#wake();
    await this.#loop;
    this.#loop = null;
    await this.#tickChain.catch(() => undefined);
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = null;
    await unsubscribe?.().catch((e: unknown) => this.#error(e, 'unsubscribe'));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.stop();
    this.#closed = true;
    this.#wake();
    await this.#emitting;
    await this.#store.close();
  }

  tick(): Promise<void> {
    this.#assertOpen();
    return this.#serial(async () => {
      await this.#tick(true);
    });
  }

  async drain(
    options: {
      readonly ids?: readonly string[];
      readonly signal?: AbortSignal;
      readonly timeoutMs?: number;
    } = {},
  ): Promise<void> {
    this.#assertOpen();
    const ids = options.ids?.map((id, i) => parseId(id, `ids[${i}]`)) ?? null;
    const deadline =
      options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + options.timeoutMs;
    while (!(await this.#store.allTerminal(ids))) {
      if (options.signal?.aborted)
        throw new QueueError('E_ABORTED', 'drain aborted', { cause: options.signal.reason });
      if (Date.now() > deadline)
        throw new QueueError('E_ABORTED', `drain: jobs not finished after ${options.timeoutMs} ms`);
      if (this.#closed)
        throw new QueueError('E_QUEUE_CLOSED', 'the queue was closed while draining');
      await this.#sleep(DRAIN_CHECK_MS, options.signal, true);
    }
  }

  /** Scheduling rounds never overlap (a hand-called tick() waits for the loop's). */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tickChain.then(fn, fn);
    this.#tickChain = next.catch(() => undefined);
    return next;
  }

  #recoveryInterval(): number {
    return Math.max(1_000, Math.floor(this.#leaseMs / 2));
  }

  async #run(): Promise<void> {
    while (this.#running) {
      this.#wakePending = false; // this round serves whatever woke it
      let again = false;
      try {
        again = await this.#serial(() => this.#tick(false));
      } catch (error) {
        this.#error(error, 'scheduler round');
      }
      if (!this.#running) break;
      if (!again) await this.#sleep(this.#nextDelay());
      else await new Promise<void>((r) => setImmediate(r)); // let producers in between rounds
    }
  }

  #nextDelay(): number {
    let delay = this.#tickMs;
    const now = Date.now();
    for (const { runner } of this.#targets.values()) {
      const last = this.#lastPoll.get(runner) ?? 0;
      delay = Math.min(delay, Math.max(0, last + this.#pollInterval(runner) - now));
    }
    return Math.max(delay, 1);
  }

  #pollInterval(runner: Runner): number {
    return Math.max(this.#pollMs, runner.capabilities.minPollIntervalMs);
  }

  /** One round: recover expired leases (now and then), claim and submit, poll. True = go again. */
  async #tick(force: boolean): Promise<boolean> {
    const now = this.#clock.now();
    if (now >= this.#nextRecovery) {
      this.#nextRecovery = now + this.#recoveryInterval();
      await this.#recover(null);
    }
    const claimed = await this.#store.claim(
      this.#owner,
      now,
      this.#leaseMs,
      this.#claimBatch,
      this.#targetNames,
    );
    if (claimed.length > 0) await this.#submit(claimed);
    const ended = await this.#poll(force);
    this.#notify(); // not #afterWrite: a round must not wake the loop for itself
    // A full batch may have left more; an ended job may have released dependents.
    return claimed.length >= this.#claimBatch || ended > 0;
  }

  async #submit(claimed: readonly JobRow[]): Promise<void> {
    const ok: SubmittedResult[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let row = claimed[next++]; row !== undefined; row = claimed[next++]) {
        const runner = this.#targets.get(row.target)!.runner;
        const id = Number(row.id);
        const attempt = Number(row.attempt);
        const key = jobKey(this.#store.storeId, id, attempt);
        try {
          ok.push({
            id,
            attempt,
            handle: await runner.submit({ key, spec: decodeSpec(row.spec) }),
          });
        } catch (error) {
          // The submission may have landed before the error (a dropped connection): ask first.
          const found = runner.find ? await runner.find(key).catch(() => null) : null;
          if (found) {
            ok.push({ id, attempt, handle: found });
            continue;
          }
          const reason = `submit failed: ${message(error)}`;
          const invalid =
            isCrystalMathError(error, 'E_VALIDATION') || isCrystalMathError(error, 'E_PATH_UNSAFE');
          try {
            await this.#store.recordSubmitFailed(
              id,
              attempt,
              this.#owner,
              reason,
              invalid ? null : this.#retryAt(row),
              this.#clock.now(),
            );
          } catch (storeError) {
            this.#error(storeError, `record failed submit of job ${id}`);
          }
          this.#log.warn?.('[queue] submit failed', { job: id, reason });
        }
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(this.#submitConcurrency, claimed.length) }, worker),
    );
    const toCancel = await this.#store.recordSubmitted(ok, this.#owner, this.#clock.now());
    for (const r of toCancel) {
      const row = claimed.find((c) => Number(c.id) === r.id)!;
      try {
        await this.#targets.get(row.target)!.runner.cancel(r.handle);
        await this.#store.markCancelled(r.id, this.#clock.now());
      } catch (error) {
        this.#error(error, `cancel job ${r.id}`);
      }
    }
  }

  /** Exponential backoff with jitter; null when the attempt budget is spent. */
  #retryAt(row: JobRow): number | null {
    const used = Number(row.attempt) - Number(row.attempt_base);
    if (used >= Number(row.max_attempts)) return null;
    const b = {
      ...DEFAULT_BACKOFF,
      ...(row.backoff ? (JSON.parse(row.backoff) as BackoffOptions) : {}),
    };
    const base = Math.min(b.maxMs, b.initialMs * b.factor ** Math.max(0, used - 1));
    const spread = base * b.jitter * (Math.random() * 2 - 1);
    return this.#clock.now() + Math.max(0, Math.round(base + spread));
  }

  /** One poll per runner with all its live handles; returns how many jobs ended. */
  async #poll(force: boolean): Promise<number> {
    const byRunner = new Map<Runner, string[]>();
    for (const [name, t] of this.#targets)
      byRunner.set(t.runner, [...(byRunner.get(t.runner) ?? []), name]);
    let ended = 0;
    for (const [runner, targets] of byRunner) {
      const now = Date.now();
      const last = this.#lastPoll.get(runner);
      // A hand-called tick() still respects the runner's own minimum (cluster etiquette).
      const min = force ? runner.capabilities.minPollIntervalMs : this.#pollInterval(runner);
      if (last !== undefined && now - last < min) continue;
      const live = await this.#store.liveJobs(targets);
      this.#lastPoll.set(runner, now);
      if (live.length === 0) continue;
      let statuses: RunnerStatus[];
      try {
        statuses = await runner.poll(live.map((r) => JSON.parse(r.handle!) as RunnerHandle));
      } catch (error) {
        this.#error(error, `poll ${runner.kind}`);
        continue;
      }
      const updates: StatusUpdate[] = [];
      for (const [i, row] of live.entries()) {
        const status = statuses[i];
        if (!status) continue;
        updates.push({ id: Number(row.id), attempt: Number(row.attempt), status });
        if (isTerminalRunnerState(status.state)) ended++;
        else if (Number(row.cancel_requested) === 1) {
          await runner
            .cancel(JSON.parse(row.handle!) as RunnerHandle)
            .catch((e: unknown) => this.#error(e, `cancel job ${row.id}`));
        }
      }
      await this.#store.applyStatuses(updates, (row) => this.#retryAt(row), this.#clock.now());
    }
    return ended;
  }

  /**
   * Heals claims whose scheduler died between claim and record: adopt the handle the runner
   * knows under the job key, resubmit (same key) if it never saw it, or fail the job when the
   * runner cannot tell (no `find`).
   */
  async #recover(deadOwner: string | null): Promise<void> {
    const rows = await this.#store.expiredLeases(this.#clock.now(), this.#targetNames, deadOwner);
    for (const row of rows) {
      const runner = this.#targets.get(row.target)?.runner;
      if (!runner) continue;
      const id = Number(row.id);
      const attempt = Number(row.attempt);
      try {
        let outcome: Parameters<QueueStore['resolveLease']>[3];
        if (runner.find) {
          const handle = await runner.find(jobKey(this.#store.storeId, id, attempt));
          outcome = handle ? { handle } : { resubmit: true };
        } else {
          outcome = {
            failReason:
              'submission outcome unknown after a crash and the runner has no find(): retry the job if it did not run',
          };
        }
        await this.#store.resolveLease(id, attempt, row.lease_owner, outcome, this.#clock.now());
      } catch (error) {
        this.#error(error, `recover job ${id}`);
      }
    }
  }

  // ------------------------------------------------------------------ plumbing

  /** Wakes the scheduler and delivers new log events to in-process listeners. */
  #afterWrite(): void {
    this.#wake();
    this.#notify();
  }

  #notify(): void {
    if (!EMITTED.some((e) => this.listenerCount(e) > 0)) return;
    this.#emitting = this.#emitting
      .then(() => this.#emitEvents())
      .catch((e: unknown) => this.#error(e, 'emit events'));
  }

  async #emitEvents(): Promise<void> {
    if (this.#closed) return;
    for (;;) {
      const batch = await this.#store.events(this.#emittedSeq, EVENT_PAGE);
      for (const e of batch) {
        this.#emittedSeq = e.seq;
        try {
          this.emit(e.type, e);
        } catch (error) {
          this.#error(error, `listener of ${e.type}`);
        }
      }
      if (batch.length < EVENT_PAGE) break;
    }
  }

  #wake(): void {
    this.#wakePending = true;
    const w = this.#wakeUp;
    this.#wakeUp = null;
    w?.();
  }

  #sleep(ms: number, signal?: AbortSignal, ignoreWake = false): Promise<void> {
    if (!ignoreWake && this.#wakePending) {
      this.#wakePending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      if (!ignoreWake) {
        this.#wakeUp = () => {
          this.#wakePending = false;
          done();
        };
      }
    });
  }

  #error(error: unknown, context: string): void {
    const err = error instanceof Error ? error : new Error(String(error));
    this.#log.error?.(`[queue] ${context}`, { error: err.message });
    if (this.listenerCount('error') > 0) this.emit('error', { error: err, context });
  }

  #assertOpen(): void {
    if (this.#closed) throw new QueueError('E_QUEUE_CLOSED', 'the queue is closed');
  }
}

/** Resolves `targets` against `runners`; throws ValidationError naming the bad field. */
export function resolveTargets(
  targets: { readonly [name: string]: TargetOptions },
  runners: { readonly [name: string]: Runner } | undefined,
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
    if (
      t.maxConcurrent !== undefined &&
      (!Number.isInteger(t.maxConcurrent) || t.maxConcurrent < 0)
    ) {
      throw new ValidationError(`targets.${name}.maxConcurrent`, 'must be a non-negative integer');
    }
    if (t.paused !== undefined && typeof t.paused !== 'boolean')
      throw new ValidationError(`targets.${name}.paused`, 'must be a boolean');
    out.set(name, { name, runner });
  }
  return out;
}
