// The Queue: producer, control and read APIs over a store (BullMQ's Queue and QueueEvents).
// Arguments are checked first (attorney.ts), rows are encoded and decoded by codec.ts, and the
// scheduler loop that claims, submits and polls lives in scheduler.ts.

import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import {
  AbortError,
  CrystalMathError,
  type JobSpec,
  type RunnerHandle,
  safeRelativePath,
  ValidationError,
  validateJobSpec,
} from '@crystalmath/core';
import {
  checkEventsOptions,
  checkListFilter,
  checkNewJob,
  checkPriority,
  checkPrune,
  checkRunnerSpec,
  checkTargetLimit,
  checkTargetName,
  checkWorkflow,
  encodeMetadata,
  pageLimit,
  parseId,
  type ResolvedTarget,
} from './attorney.js';
import { dependsOnById, makeCursor, readCursor, rowToJob, zeroCounts } from './codec.js';
import { normalizeDeps, topologicalOrder } from './dag.js';
import { isLive, servingTarget, toSchedulerInfo } from './heartbeat.js';
import { checkLocalInputs, fromJobInputs } from './inputs.js';
import { QueueError } from './queue-error.js';
import { callRunner } from './runner-call.js';
import { Scheduler, type SchedulerInternals } from './scheduler.js';
import { isTerminal, jobKey } from './store/rules.js';
import type { JobRow, NewJob, QueueStore } from './store/store.js';
import type {
  ArtifactInfo,
  EdgeCondition,
  EnqueueOptions,
  EventsOptions,
  Job,
  JobState,
  ListFilter,
  ListPage,
  Logger,
  Metadata,
  PruneOptions,
  Queue,
  QueueCounts,
  QueueEvent,
  QueueEventMap,
  QueueHealth,
  SchedulerInfo,
  TargetInfo,
  TargetUnreachable,
  Workflow,
  WorkflowDefinition,
  WorkflowListOptions,
  WorkflowPage,
} from './types.js';

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

export type QueueInternals = SchedulerInternals;

export class QueueImpl extends EventEmitter implements Queue {
  readonly #store: QueueStore;
  readonly #targets: ReadonlyMap<string, ResolvedTarget>;
  readonly #targetNames: readonly string[];
  readonly #log: Logger;
  readonly #clock: QueueInternals['clock'];
  readonly #scheduler: Scheduler;
  readonly #artifacts: QueueInternals['artifacts'];
  #emittedSeq = 0;
  /** `on()`'s wrappers by event and listener, so `off()` removes the right one. */
  readonly #wrappers = new Map<string, Map<unknown, ((payload: never) => void)[]>>();
  #emitting: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(internals: QueueInternals) {
    super();
    this.#store = internals.store;
    this.#targets = internals.targets;
    this.#targetNames = [...internals.targets.keys()];
    this.#log = internals.logger ?? {};
    this.#clock = internals.clock;
    this.#artifacts = internals.artifacts;
    this.#scheduler = new Scheduler(internals, {
      error: (error, context) => this.#error(error, context),
      notify: () => this.#notify(),
      targetHealth: (event) => {
        try {
          this.emit(event.type, event);
        } catch (error) {
          this.#error(error, `listener of ${event.type}`);
        }
      },
      storeChanged: (change) => {
        try {
          this.emit(change.state === 'down' ? 'store:down' : 'store:up', change);
        } catch (error) {
          this.#error(error, `listener of store:${change.state}`);
        }
      },
    });
  }

  /** This scheduler's lease owner id. */
  get ownerId(): string {
    return this.#scheduler.ownerId;
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
      const specField = single ? 'spec' : `items[${i}].spec`;
      validateJobSpec(item.spec, specField);
      checkRunnerSpec(this.#targets, item.target, item.spec, specField);
      checkLocalInputs(item.spec, specField);
      const d = withInputDeps(
        normalizeDeps(item.dependsOn, `${field}.dependsOn`),
        item.spec,
        specField,
        (from, f) => String(parseId(from, f)),
      );
      deps.push(d);
      const parents = d.map((x, k) => ({
        parent: parseId(x.job, `${field}.dependsOn[${k}].job`),
        condition: x.condition,
      }));
      jobs.push(checkNewJob(item.spec, item, field, null, parents, known, this.#clock.now()));
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
        result: null,
      };
    });
  }

  async submitWorkflow<M extends Metadata = Metadata>(
    def: WorkflowDefinition<M>,
  ): Promise<Workflow> {
    this.#assertOpen();
    def = workflowWithInputDeps(def);
    const onFailure = checkWorkflow(def);
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
      checkLocalInputs(j.spec, `${field}.spec`);
      checkRunnerSpec(this.#targets, j.target ?? def.target, j.spec, `${field}.spec`);
      const deps = normalizeDeps(j.dependsOn, `${field}.dependsOn`).map((d) => ({
        parent: { index: index.get(d.job)! },
        condition: d.condition,
      }));
      const target = j.target ?? def.target ?? '';
      jobs.push(checkNewJob(j.spec, { ...j, target }, field, key, deps, known, this.#clock.now()));
    }
    const metadata = encodeMetadata(def.metadata, 'workflow.metadata');
    const { workflowId } = await this.#store.insertJobs(
      jobs,
      { name: def.name, onFailure, idempotencyKey: def.idempotencyKey ?? null, metadata },
      this.#clock.now(),
    );
    this.#afterWrite();
    return (await this.workflow(String(workflowId)))!;
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
    else await this.#store.setTarget(checkTargetName(target), { paused: true }, this.#clock.now());
    this.#afterWrite();
  }

  async resume(target?: string): Promise<void> {
    this.#assertOpen();
    if (target === undefined) await this.#store.setQueuePaused(false, this.#clock.now());
    else await this.#store.setTarget(checkTargetName(target), { paused: false }, this.#clock.now());
    this.#afterWrite();
  }

  async setTargetLimit(target: string, maxConcurrent: number | null): Promise<void> {
    this.#assertOpen();
    checkTargetLimit(maxConcurrent);
    await this.#store.setTarget(checkTargetName(target), { maxConcurrent }, this.#clock.now());
    this.#afterWrite();
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
    // A target that does not answer in time keeps the request: the scheduler asks again.
    if ((row.state === 'queued' || row.state === 'running') && row.handle !== null && runner) {
      const handle = JSON.parse(row.handle) as RunnerHandle;
      try {
        await this.#runnerCall(row.target, 'cancel', (signal) => runner.cancel(handle, { signal }));
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
    checkPriority(priority);
    const row = await this.#store.reprioritize(parseId(id), priority, this.#clock.now());
    if (!row)
      throw new QueueError('E_QUEUE_JOB_NOT_FOUND', `no job ${id}`, { details: { job: id } });
    return (await this.#jobs([row.id]))[0]!;
  }

  async prune(options: PruneOptions): Promise<{ jobs: number; events: number }> {
    this.#assertOpen();
    checkPrune(options);
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
    checkListFilter(filter);
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

  /**
   * Who serves each target and whether it answers come from the live schedulers' rows, read in
   * the same query: this process's scheduler first (it knows best), else the first live
   * scheduler that reports the target unreachable.
   */
  async targets(): Promise<TargetInfo[]> {
    this.#assertOpen();
    const now = this.#clock.now();
    return (await this.#store.targets()).map((t) => {
      const serving = servingTarget(t.name, t.schedulers, now);
      let unreachable: TargetUnreachable | null = this.#scheduler.unreachable(t.name);
      if (unreachable === null && !(this.#scheduler.running && this.#targets.has(t.name)))
        unreachable = serving.unreachable;
      return {
        name: t.name,
        maxConcurrent: t.max_concurrent === null ? null : Number(t.max_concurrent),
        paused: Number(t.paused) === 1,
        active: Number(t.active),
        unreachable,
        servedBy: serving.servedBy,
      };
    });
  }

  async schedulers(): Promise<SchedulerInfo[]> {
    this.#assertOpen();
    const now = this.#clock.now();
    return (await this.#store.schedulers()).filter((r) => isLive(r, now)).map(toSchedulerInfo);
  }

  async *events(options: EventsOptions = {}): AsyncIterableIterator<QueueEvent> {
    this.#assertOpen();
    let seq = checkEventsOptions(options);
    if (options.tail !== undefined)
      seq = Math.max(0, (await this.#store.lastEventSeq()) - options.tail);
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
      await this.#scheduler.sleep(interval, options.signal, true);
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
    const tail = runner.tail.bind(runner);
    const handle = JSON.parse(row.handle) as RunnerHandle;
    return this.#runnerCall(row.target, 'tail', (signal) => tail(handle, { ...options, signal }));
  }

  async artifacts(id: string): Promise<ArtifactInfo[]> {
    this.#assertOpen();
    const n = parseId(id);
    const row = (await this.#store.getJobs([n]))[0];
    if (!row)
      throw new QueueError('E_QUEUE_JOB_NOT_FOUND', `no job ${id}`, { details: { job: id } });
    return (await this.#store.artifacts(n)).map((a) => ({
      jobId: String(a.job_id),
      path: a.path,
      size: Number(a.size),
      sha256: a.sha256,
      mode: Number(a.mode),
      attempt: Number(a.attempt),
      createdAt: Number(a.created_at),
    }));
  }

  async readArtifact(
    id: string,
    path: string,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<Readable> {
    const all = await this.artifacts(id);
    const rel = safeRelativePath(path, 'path');
    const a = all.find((x) => x.path === rel);
    if (!a)
      throw new CrystalMathError('E_NOT_FOUND', `[queue] job ${id} has no artifact ${rel}`, {
        details: { job: id, path: rel },
      });
    if (this.#artifacts === null)
      throw new CrystalMathError(
        'E_CONFIG',
        '[queue] this queue was opened without an artifact store (options.artifacts)',
        { details: { field: 'artifacts' } },
      );
    // Verified while read: a corrupted or swapped file errors with E_ARTIFACT_CHECKSUM.
    return this.#artifacts.store.get(id, rel, {
      sha256: a.sha256,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
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
    const deps = dependsOnById(await this.#store.depsOf(rows.map((r) => Number(r.id))));
    return rows.map((r) => rowToJob(r, deps.get(Number(r.id)) ?? []));
  }

  health(): QueueHealth {
    return {
      scheduler: this.#scheduler.running ? 'running' : 'stopped',
      store: this.#scheduler.storeHealth,
    };
  }

  // ------------------------------------------------------------------ scheduler

  async start(): Promise<void> {
    this.#assertOpen();
    await this.#scheduler.start();
  }

  async stop(): Promise<void> {
    await this.#scheduler.stop();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.stop();
    this.#closed = true;
    this.#scheduler.wake();
    await this.#emitting;
    await this.#store.close();
  }

  tick(): Promise<void> {
    this.#assertOpen();
    return this.#scheduler.tick();
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
        throw new AbortError('[queue] drain aborted', { cause: options.signal.reason });
      if (Date.now() > deadline)
        throw new AbortError(`[queue] drain: jobs not finished after ${options.timeoutMs} ms`);
      if (this.#closed)
        throw new QueueError('E_QUEUE_CLOSED', 'the queue was closed while draining');
      await this.#scheduler.sleep(DRAIN_CHECK_MS, options.signal, true);
    }
  }

  // ------------------------------------------------------------------ plumbing

  /** A runner call made for a caller (cancel, tail): the target's deadline, no stop signal. */
  #runnerCall<T>(
    target: string,
    operation: 'cancel' | 'tail',
    call: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const deadline = this.#targets.get(target)!.deadlines[`${operation}Ms`];
    return callRunner(target, operation, deadline, undefined, call);
  }

  /** Wakes the scheduler and delivers new log events to in-process listeners. */
  #afterWrite(): void {
    this.#scheduler.wake();
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

  #error(error: unknown, context: string): void {
    const err = error instanceof Error ? error : new Error(String(error));
    this.#log.error?.(`[queue] ${context}`, { error: err.message });
    if (this.listenerCount('error') > 0) this.emit('error', { error: err, context });
  }

  #assertOpen(): void {
    if (this.#closed) throw new QueueError('E_QUEUE_CLOSED', 'the queue is closed');
  }
}

/**
 * `dependsOn` plus an `afterok` edge to each parent named by a `fromJob` input (unless the
 * parent is already listed, with its own condition). `toJob` turns the input's name into the
 * dependency's (a job id for `enqueue`), throwing a ValidationError naming `field`.
 */
function withInputDeps<D extends { job: string; condition: EdgeCondition }>(
  deps: D[],
  spec: JobSpec,
  field: string,
  toJob: (from: string, field: string) => string,
): (D | { job: string; condition: EdgeCondition })[] {
  const out: (D | { job: string; condition: EdgeCondition })[] = [...deps];
  for (const { input, i } of fromJobInputs(spec)) {
    const job = toJob(input.fromJob, `${field}.inputs[${i}].fromJob`);
    if (!out.some((d) => d.job === job)) out.push({ job, condition: 'afterok' });
  }
  return out;
}

/** A workflow whose jobs depend (afterok) on the jobs their `fromJob` inputs name, by key. */
function workflowWithInputDeps<M extends Metadata>(
  def: WorkflowDefinition<M>,
): WorkflowDefinition<M> {
  if (typeof def !== 'object' || def === null || typeof def.jobs !== 'object' || def.jobs === null)
    return def;
  let changed = false;
  const jobs: Record<string, WorkflowDefinition<M>['jobs'][string]> = {};
  for (const [key, j] of Object.entries(def.jobs)) {
    const inputs = j && typeof j === 'object' && j.spec ? fromJobInputs(j.spec) : [];
    if (inputs.length === 0) {
      jobs[key] = j;
      continue;
    }
    const deps = [...(j.dependsOn ?? [])];
    const named = (d: (typeof deps)[number]): string => (typeof d === 'string' ? d : d.job);
    for (const { input, i } of inputs) {
      if (!Object.hasOwn(def.jobs, input.fromJob))
        throw new QueueError(
          'E_QUEUE_UNKNOWN_DEPENDENCY',
          `workflow.jobs.${key}.spec.inputs[${i}].fromJob: no job "${input.fromJob}" in the workflow`,
          { details: { field: `workflow.jobs.${key}.spec.inputs[${i}].fromJob` } },
        );
      if (!deps.some((d) => named(d) === input.fromJob)) deps.push(input.fromJob);
    }
    jobs[key] = { ...j, dependsOn: deps };
    changed = true;
  }
  return changed ? { ...def, jobs } : def;
}
