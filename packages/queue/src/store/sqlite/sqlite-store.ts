// The SQLite store: better-sqlite3 in WAL mode, schema applied by @crystalmath/migrate through
// kysely's SqliteDialect, hot paths as cached prepared statements (kysely's per-query
// compilation costs more than the queries here). Every write is one short BEGIN IMMEDIATE
// transaction: state changes are guarded UPDATEs, each with its event row, and the
// transaction that ends a job releases or skips its dependents before it commits.

import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { type RunnerHandle, ValidationError } from '@crystalmath/core';
import { Migrator } from '@crystalmath/migrate';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { queueMigrations } from '../../migrations.js';
import { QueueError } from '../../queue-error.js';
import type {
  EdgeCondition,
  FailurePolicy,
  JobState,
  ListFilter,
  QueueEvent,
  QueueStoreFactory,
} from '../../types.js';
import { conditionHolds, decideStatus, isTerminal, LIVE_SQL, TERMINAL_SQL } from '../rules.js';
import type {
  DepRow,
  InsertResult,
  JobRow,
  NewJob,
  NewWorkflow,
  QueueStore,
  RetryPolicy,
  StatusUpdate,
  StoreFactory,
  SubmittedResult,
  TargetRow,
  WorkflowRow,
} from '../store.js';

type Db = Database.Database;
type Param = string | number | bigint | null | Buffer;

/** Options of `sqliteStore`. */
export interface SqliteStoreOptions {
  /** Database file (created if missing). `:memory:` works within one process. */
  readonly path: string;
  /** How long a writer waits for another process's write lock before failing. Default 10 000 ms. */
  readonly busyTimeoutMs?: number;
  /** Called with the SQL of every statement the store executes (diagnostics, query-count tests). */
  readonly onQuery?: (sql: string) => void;
}

/**
 * The embedded store: one SQLite file in WAL mode (`busy_timeout`, `synchronous=NORMAL`,
 * foreign keys on), schema applied by @crystalmath/migrate. Several processes on one machine may
 * share the file: producers, observers and schedulers.
 *
 * @example
 * const queue = await openQueue({ store: sqliteStore({ path: 'jobs.db' }), targets });
 */
export function sqliteStore(options: SqliteStoreOptions): QueueStoreFactory {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('store', 'sqliteStore options must be an object');
  }
  if (typeof options.path !== 'string' || options.path === '') {
    throw new ValidationError('store.path', 'must be a file path');
  }
  const busy = options.busyTimeoutMs;
  if (busy !== undefined && (!Number.isInteger(busy) || busy < 0)) {
    throw new ValidationError('store.busyTimeoutMs', 'must be a non-negative integer');
  }
  const factory: StoreFactory = {
    dialect: 'sqlite',
    description: `sqlite:${options.path === ':memory:' ? options.path : resolve(options.path)}`,
    open: () => SqliteStore.open(options),
  };
  return factory;
}

interface Ended {
  id: number;
  state: JobState;
  workflow_id: number | null;
}

interface EventRow {
  seq: number;
  at: number;
  type: string;
  job_id: number | null;
  workflow_id: number | null;
  target: string | null;
  from_state: JobState | null;
  to_state: JobState | null;
  reason: string | null;
}

const OPEN_SQL = "('waiting', 'ready', 'submitting', 'queued', 'running')";
const INSERT_JOB = `insert into cm_jobs (name, state, target, priority, spec, workflow_id, workflow_key,
  max_attempts, backoff, run_at, idempotency_key, tags, metadata, reason, created_at, updated_at, ended_at)
  values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;
const INSERT_EVENT = `insert into cm_events (at, type, job_id, workflow_id, target, from_state, to_state, reason)
  values (?, ?, ?, ?, ?, ?, ?, ?)`;

export class SqliteStore implements QueueStore {
  readonly dialect = 'sqlite' as const;
  readonly storeId: string;
  readonly #db: Db;
  readonly #onQuery: ((sql: string) => void) | undefined;
  readonly #stmts = new Map<string, Database.Statement>();
  readonly #txn: Database.Transaction<(fn: () => unknown) => unknown>;
  /** Jobs ended in the current transaction whose dependents are not settled yet. */
  #ended: Ended[] = [];
  #touchedWorkflows = new Set<number>();
  #closed = false;
  #lastSeq = 0;
  /** Highest event seq written by the open transaction (published on commit). */
  #txSeq = 0;

  private constructor(db: Db, storeId: string, onQuery: ((sql: string) => void) | undefined) {
    this.#db = db;
    this.storeId = storeId;
    this.#onQuery = onQuery;
    this.#txn = db.transaction((fn: () => unknown) => fn());
    this.#lastSeq =
      (db.prepare('select max(seq) seq from cm_events').get() as { seq: number | null }).seq ?? 0;
  }

  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Opens the file, applies the queue's migrations, and returns the store. */
  static async open(options: SqliteStoreOptions): Promise<SqliteStore> {
    const busy = options.busyTimeoutMs ?? 10_000;
    let db: Db;
    try {
      db = new Database(options.path, { timeout: busy });
      db.pragma('journal_mode = WAL');
      db.pragma(`busy_timeout = ${busy}`);
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
    } catch (cause) {
      throw new QueueError('E_STORE', `cannot open the SQLite store: ${(cause as Error).message}`, {
        cause,
      });
    }
    try {
      const kysely = new Kysely({ dialect: new SqliteDialect({ database: db }) });
      await new Migrator({ db: kysely, source: queueMigrations, lockTimeoutMs: busy }).migrate();
      // One random id per database file, made once: part of every runner job key.
      db.prepare('insert or ignore into cm_meta (id, store_id, paused) values (1, ?, 0)').run(
        randomBytes(3).toString('hex'),
      );
      const row = db.prepare('select store_id from cm_meta where id = 1').get() as {
        store_id: string;
      };
      return new SqliteStore(db, row.store_id, options.onQuery);
    } catch (error) {
      db.close();
      throw error;
    }
  }

  // ---------------------------------------------------------------- plumbing

  #stmt(sql: string): Database.Statement {
    let s = this.#stmts.get(sql);
    if (s === undefined) {
      if (this.#closed) throw new QueueError('E_QUEUE_CLOSED', 'the store is closed');
      s = this.#db.prepare(sql);
      this.#stmts.set(sql, s);
    }
    this.#onQuery?.(sql);
    return s;
  }

  #all<T>(sql: string, ...params: Param[]): T[] {
    return this.#stmt(sql).all(...params) as T[];
  }

  #get<T>(sql: string, ...params: Param[]): T | undefined {
    return this.#stmt(sql).get(...params) as T | undefined;
  }

  #run(sql: string, ...params: Param[]): Database.RunResult {
    return this.#stmt(sql).run(...params);
  }

  /** One BEGIN IMMEDIATE transaction; dependents of the jobs it ends are settled before commit. */
  #write<T>(now: number, fn: () => T): T {
    if (this.#closed) throw new QueueError('E_QUEUE_CLOSED', 'the store is closed');
    this.#onQuery?.('begin immediate');
    try {
      this.#txSeq = 0;
      const result = this.#txn.immediate(() => {
        this.#ended = [];
        this.#touchedWorkflows.clear();
        const r = fn();
        this.#settle(now);
        return r;
      }) as T;
      if (this.#txSeq > this.#lastSeq) this.#lastSeq = this.#txSeq;
      return result;
    } catch (error) {
      if (error instanceof Error && 'code' in error && String(error.code).startsWith('SQLITE_')) {
        throw new QueueError('E_STORE', `SQLite: ${error.message}`, { cause: error });
      }
      throw error;
    } finally {
      this.#ended = [];
    }
  }

  #event(
    now: number,
    type: string,
    job: number | null,
    wf: number | null,
    target: string | null,
    from: string | null,
    to: string | null,
    reason: string | null,
  ): void {
    this.#txSeq = Number(
      this.#run(INSERT_EVENT, now, type, job, wf, target, from, to, reason).lastInsertRowid,
    );
  }

  /**
   * The guarded transition: `UPDATE ... WHERE id = ? AND state = <from>` plus its event. False
   * (and nothing written) when the job was not in `from`.
   */
  #move(
    id: number,
    from: JobState,
    to: JobState,
    now: number,
    set: Record<string, Param> = {},
    reason: string | null = null,
  ): boolean {
    const cols = Object.keys(set);
    const sql = `update cm_jobs set state = ?, updated_at = ?${cols.map((c) => `, ${c} = ?`).join('')}
      where id = ? and state = ? returning workflow_id, target`;
    const values = cols.map((c) => set[c] as Param);
    const row = this.#get<{ workflow_id: number | null; target: string }>(
      sql,
      to,
      now,
      ...values,
      id,
      from,
    );
    if (row === undefined) return false;
    this.#event(now, 'job:state', id, row.workflow_id, row.target, from, to, reason);
    if (row.workflow_id !== null) this.#touchedWorkflows.add(row.workflow_id);
    if (isTerminal(to)) this.#ended.push({ id, state: to, workflow_id: row.workflow_id });
    return true;
  }

  /** Releases or skips the dependents of every job ended in this transaction, transitively. */
  #settle(now: number): void {
    for (let next = this.#ended.pop(); next !== undefined; next = this.#ended.pop()) {
      const children = this.#all<{
        id: number;
        run_at: number;
        condition: EdgeCondition;
        on_failure: FailurePolicy | null;
      }>(
        `select j.id, j.run_at, d.condition, w.on_failure from cm_deps d join cm_jobs j on j.id = d.job_id
         left join cm_workflows w on w.id = j.workflow_id where d.parent_id = ? and j.state = 'waiting'`,
        next.id,
      );
      for (const child of children) {
        if (!conditionHolds(child.condition, next.state, child.on_failure)) {
          const why = `dependency ${next.id} ended ${next.state} (${child.condition})`;
          this.#move(child.id, 'waiting', 'skipped', now, { ended_at: now, reason: why }, why);
          continue;
        }
        // Count open parents rather than keep a counter: a parent retried by hand reopens.
        const open = this.#get<{ n: number }>(
          `select count(*) n from cm_deps d join cm_jobs p on p.id = d.parent_id
           where d.job_id = ? and p.state in ${OPEN_SQL}`,
          child.id,
        );
        if (open?.n === 0) {
          this.#move(child.id, 'waiting', 'ready', now, {
            run_at: Math.max(child.run_at, now),
            reason: null,
          });
        }
      }
    }
    for (const wf of this.#touchedWorkflows) {
      const open = this.#get(
        `select 1 from cm_jobs where workflow_id = ? and state in ${OPEN_SQL} limit 1`,
        wf,
      );
      if (
        open === undefined &&
        this.#run('update cm_workflows set done_at = ? where id = ? and done_at is null', now, wf)
          .changes === 1
      ) {
        this.#event(now, 'workflow:done', null, wf, null, null, null, null);
      }
    }
    this.#touchedWorkflows.clear();
  }

  #row(id: number): JobRow | undefined {
    return this.#get<JobRow>('select * from cm_jobs where id = ?', id);
  }

  // ---------------------------------------------------------------- producer

  async insertJobs(
    jobs: readonly NewJob[],
    workflow: NewWorkflow | null,
    now: number,
  ): Promise<InsertResult> {
    return this.#write(now, () => {
      const result: InsertResult = { ids: [], states: [], existing: [], workflowId: null };
      if (workflow?.idempotencyKey) {
        const wf = this.#get<{ id: number }>(
          'select id from cm_workflows where idempotency_key = ?',
          workflow.idempotencyKey,
        );
        if (wf) {
          const rows = this.#all<{ id: number; state: JobState }>(
            'select id, state from cm_jobs where workflow_id = ? order by id',
            wf.id,
          );
          return {
            ids: rows.map((r) => r.id),
            states: rows.map((r) => r.state),
            existing: rows.map(() => true),
            workflowId: wf.id,
          };
        }
      }
      if (workflow) {
        result.workflowId = Number(
          this.#run(
            'insert into cm_workflows (name, on_failure, idempotency_key, metadata, created_at) values (?, ?, ?, ?, ?)',
            workflow.name,
            workflow.onFailure,
            workflow.idempotencyKey,
            workflow.metadata,
            now,
          ).lastInsertRowid,
        );
        this.#event(now, 'workflow:created', null, result.workflowId, null, null, null, null);
      }
      const policy = workflow?.onFailure ?? null;
      for (const job of jobs) {
        if (job.idempotencyKey !== null) {
          const found = this.#get<{ id: number; state: JobState }>(
            'select id, state from cm_jobs where idempotency_key = ?',
            job.idempotencyKey,
          );
          if (found) {
            result.ids.push(found.id);
            result.states.push(found.state);
            result.existing.push(true);
            continue;
          }
        }
        let pending = 0;
        let skip: string | null = null;
        const parents: { id: number; condition: EdgeCondition }[] = [];
        for (const dep of job.deps) {
          let parentId: number;
          let parentState: JobState | undefined;
          if (typeof dep.parent === 'number') {
            parentId = dep.parent;
            parentState = this.#get<{ state: JobState }>(
              'select state from cm_jobs where id = ?',
              parentId,
            )?.state;
            if (parentState === undefined) {
              throw new QueueError(
                'E_QUEUE_UNKNOWN_DEPENDENCY',
                `dependency ${parentId} does not exist`,
                {
                  details: { field: 'dependsOn', job: String(parentId) },
                },
              );
            }
          } else {
            const index = dep.parent.index;
            const known = result.ids[index];
            if (known === undefined)
              throw new QueueError(
                'E_QUEUE_UNKNOWN_DEPENDENCY',
                `dependency index ${index} is not an earlier job`,
              );
            parentId = known;
            parentState = result.states[index];
          }
          parents.push({ id: parentId, condition: dep.condition });
          if (parentState === undefined || !isTerminal(parentState)) pending++;
          else if (!conditionHolds(dep.condition, parentState, policy))
            skip ??= `dependency ${parentId} ended ${parentState} (${dep.condition})`;
        }
        const state: JobState = skip !== null ? 'skipped' : pending > 0 ? 'waiting' : 'ready';
        const id = Number(
          this.#run(
            INSERT_JOB,
            job.name,
            state,
            job.target,
            job.priority,
            job.spec,
            result.workflowId,
            job.workflowKey,
            job.maxAttempts,
            job.backoff,
            job.runAt,
            job.idempotencyKey,
            job.tags.length === 0 ? '[]' : JSON.stringify(job.tags),
            job.metadata,
            skip,
            now,
            now,
            state === 'skipped' ? now : null,
          ).lastInsertRowid,
        );
        for (const p of parents)
          this.#run(
            'insert into cm_deps (job_id, parent_id, condition) values (?, ?, ?)',
            id,
            p.id,
            p.condition,
          );
        for (const tag of new Set(job.tags))
          this.#run('insert into cm_tags (job_id, tag) values (?, ?)', id, tag);
        this.#event(now, 'job:state', id, result.workflowId, job.target, null, state, skip);
        if (result.workflowId !== null) this.#touchedWorkflows.add(result.workflowId);
        result.ids.push(id);
        result.states.push(state);
        result.existing.push(false);
      }
      return result;
    });
  }

  // ---------------------------------------------------------------- read

  async getJobs(ids: readonly number[]): Promise<JobRow[]> {
    if (ids.length === 0) return [];
    if (ids.length === 1) return this.#all<JobRow>('select * from cm_jobs where id = ?', ids[0]!);
    return this.#all<JobRow>(
      'select * from cm_jobs where id in (select value from json_each(?))',
      JSON.stringify(ids),
    );
  }

  async depsOf(ids: readonly number[]): Promise<DepRow[]> {
    if (ids.length === 0) return [];
    return this.#all<DepRow>(
      'select job_id, parent_id, condition from cm_deps where job_id in (select value from json_each(?)) order by job_id, parent_id',
      JSON.stringify(ids),
    );
  }

  async list(filter: ListFilter, afterId: number, limit: number): Promise<JobRow[]> {
    const where = ['j.id > ?'];
    const params: Param[] = [afterId];
    if (filter.state !== undefined) {
      where.push('j.state in (select value from json_each(?))');
      params.push(JSON.stringify(Array.isArray(filter.state) ? filter.state : [filter.state]));
    }
    if (filter.target !== undefined) {
      where.push('j.target = ?');
      params.push(filter.target);
    }
    if (filter.workflow !== undefined) {
      where.push('j.workflow_id = ?');
      params.push(Number(filter.workflow));
    }
    if (filter.tag !== undefined) {
      where.push('j.id in (select job_id from cm_tags where tag = ?)');
      params.push(filter.tag);
    }
    params.push(limit);
    return this.#all<JobRow>(
      `select j.* from cm_jobs j where ${where.join(' and ')} order by j.id limit ?`,
      ...params,
    );
  }

  async counts(): Promise<{ state: JobState; target: string; n: number }[]> {
    return this.#all('select state, target, count(*) n from cm_jobs group by state, target');
  }

  async workflowRow(id: number): Promise<WorkflowRow | null> {
    return (
      this.#get<WorkflowRow>(
        'select id, name, on_failure, created_at from cm_workflows where id = ?',
        id,
      ) ?? null
    );
  }

  async workflowJobs(id: number): Promise<JobRow[]> {
    return this.#all<JobRow>('select * from cm_jobs where workflow_id = ? order by id', id);
  }

  // ---------------------------------------------------------------- targets

  async ensureTargets(
    targets: readonly { name: string; maxConcurrent?: number | null; paused?: boolean }[],
  ): Promise<void> {
    this.#write(0, () => {
      for (const t of targets) {
        this.#run(
          'insert or ignore into cm_targets (name, max_concurrent, paused) values (?, ?, ?)',
          t.name,
          t.maxConcurrent ?? null,
          t.paused ? 1 : 0,
        );
        if (t.maxConcurrent !== undefined)
          this.#run(
            'update cm_targets set max_concurrent = ? where name = ?',
            t.maxConcurrent,
            t.name,
          );
        if (t.paused !== undefined)
          this.#run('update cm_targets set paused = ? where name = ?', t.paused ? 1 : 0, t.name);
      }
    });
  }

  async targets(): Promise<TargetRow[]> {
    return this.#all<TargetRow>(
      `select t.name, t.max_concurrent, t.paused,
        (select count(*) from cm_jobs j where j.target = t.name and j.state in ${LIVE_SQL}) active
       from cm_targets t order by t.name`,
    );
  }

  async setTarget(
    name: string,
    patch: { maxConcurrent?: number | null; paused?: boolean },
    now: number,
  ): Promise<void> {
    this.#write(now, () => {
      if (this.#get('select 1 from cm_targets where name = ?', name) === undefined) {
        throw new QueueError('E_QUEUE_UNKNOWN_TARGET', `unknown target "${name}"`, {
          details: { field: 'target', target: name },
        });
      }
      if (patch.maxConcurrent !== undefined) {
        this.#run(
          'update cm_targets set max_concurrent = ? where name = ?',
          patch.maxConcurrent,
          name,
        );
        // The new limit travels in `reason` (the event table has no column of its own for it).
        this.#event(
          now,
          'target:limit',
          null,
          null,
          name,
          null,
          null,
          patch.maxConcurrent === null ? null : String(patch.maxConcurrent),
        );
      }
      if (patch.paused !== undefined) {
        this.#run('update cm_targets set paused = ? where name = ?', patch.paused ? 1 : 0, name);
        this.#event(
          now,
          patch.paused ? 'queue:paused' : 'queue:resumed',
          null,
          null,
          name,
          null,
          null,
          null,
        );
      }
    });
  }

  async setQueuePaused(paused: boolean, now: number): Promise<void> {
    this.#write(now, () => {
      this.#run('update cm_meta set paused = ? where id = 1', paused ? 1 : 0);
      this.#event(
        now,
        paused ? 'queue:paused' : 'queue:resumed',
        null,
        null,
        null,
        null,
        null,
        null,
      );
    });
  }

  // ---------------------------------------------------------------- scheduler

  async claim(
    owner: string,
    now: number,
    leaseMs: number,
    limit: number,
    targets: readonly string[],
  ): Promise<JobRow[]> {
    if (targets.length === 0 || limit <= 0) return [];
    return this.#write(now, () => {
      // Counted inside the write transaction: no other writer can claim between count and claim.
      const slots = this.#all<{ name: string; max_concurrent: number | null; active: number }>(
        `select t.name, t.max_concurrent,
          (select count(*) from cm_jobs j where j.target = t.name and j.state in ${LIVE_SQL}) active
         from cm_targets t where t.paused = 0 and t.name in (select value from json_each(?))
           and (select paused from cm_meta where id = 1) = 0`,
        JSON.stringify(targets),
      );
      const claimed: JobRow[] = [];
      for (const t of slots) {
        const room = limit - claimed.length;
        const free = t.max_concurrent === null ? room : Math.min(room, t.max_concurrent - t.active);
        if (free <= 0) continue;
        const ready = this.#all<JobRow>(
          `select * from cm_jobs where state = 'ready' and target = ? and run_at <= ?
           order by priority desc, id limit ?`,
          t.name,
          now,
          free,
        );
        for (const row of ready) {
          const next = { attempt: row.attempt + 1, lease_owner: owner, lease_until: now + leaseMs };
          if (this.#move(row.id, 'ready', 'submitting', now, next))
            claimed.push({ ...row, ...next, state: 'submitting' });
        }
        if (claimed.length >= limit) break;
      }
      return claimed;
    });
  }

  async recordSubmitted(
    results: readonly SubmittedResult[],
    owner: string,
    now: number,
  ): Promise<SubmittedResult[]> {
    if (results.length === 0) return [];
    return this.#write(now, () => {
      const toCancel: SubmittedResult[] = [];
      for (const r of results) {
        const row = this.#get<{
          state: JobState;
          attempt: number;
          lease_owner: string | null;
          cancel_requested: number;
          workflow_id: number | null;
          target: string;
        }>(
          'select state, attempt, lease_owner, cancel_requested, workflow_id, target from cm_jobs where id = ?',
          r.id,
        );
        if (row === undefined) continue;
        if (row.state !== 'submitting' || row.attempt !== r.attempt || row.lease_owner !== owner) {
          // Another scheduler recovered the claim: it adopted this very submission (same job key)
          // through find(), unless the job was cancelled meanwhile.
          if (row.state === 'cancelled' && row.attempt === r.attempt) toCancel.push(r);
          continue;
        }
        this.#move(r.id, 'submitting', 'queued', now, {
          handle: JSON.stringify(r.handle),
          lease_owner: null,
          lease_until: null,
          reason: null,
        });
        if (row.cancel_requested) toCancel.push(r);
      }
      return toCancel;
    });
  }

  async recordSubmitFailed(
    id: number,
    attempt: number,
    owner: string,
    reason: string,
    retryAt: number | null,
    now: number,
  ): Promise<void> {
    this.#write(now, () => {
      const row = this.#row(id);
      if (
        !row ||
        row.state !== 'submitting' ||
        row.attempt !== attempt ||
        row.lease_owner !== owner
      )
        return;
      const clear = { lease_owner: null, lease_until: null };
      if (row.cancel_requested)
        this.#move(
          id,
          'submitting',
          'cancelled',
          now,
          { ...clear, ended_at: now, reason: 'cancelled by request' },
          'cancelled by request',
        );
      else if (retryAt !== null)
        this.#move(id, 'submitting', 'ready', now, { ...clear, run_at: retryAt, reason }, reason);
      else this.#move(id, 'submitting', 'failed', now, { ...clear, ended_at: now, reason }, reason);
    });
  }

  async liveJobs(targets: readonly string[]): Promise<JobRow[]> {
    if (targets.length === 0) return [];
    return this.#all<JobRow>(
      `select * from cm_jobs where state in ('queued', 'running') and target in (select value from json_each(?)) order by id`,
      JSON.stringify(targets),
    );
  }

  async applyStatuses(
    updates: readonly StatusUpdate[],
    retry: RetryPolicy,
    now: number,
  ): Promise<void> {
    if (updates.length === 0) return;
    this.#write(now, () => {
      const rows = new Map(
        this.#all<JobRow>(
          'select * from cm_jobs where id in (select value from json_each(?))',
          JSON.stringify(updates.map((u) => u.id)),
        ).map((r) => [r.id, r]),
      );
      for (const u of updates) {
        const row = rows.get(u.id);
        if (
          !row ||
          row.attempt !== u.attempt ||
          (row.state !== 'queued' && row.state !== 'running')
        )
          continue;
        const d = decideStatus(row, u.status, retry, now);
        if (d.kind === 'move') this.#move(row.id, row.state, d.to, now, d.set, d.reason);
        else if (d.kind === 'note') {
          this.#run(
            'update cm_jobs set runner_status = ?, reason = ?, updated_at = ? where id = ? and state = ?',
            d.runnerStatus,
            d.reason,
            now,
            row.id,
            row.state,
          );
        }
      }
    });
  }

  async expiredLeases(
    now: number,
    targets: readonly string[],
    deadOwner: string | null,
  ): Promise<JobRow[]> {
    if (targets.length === 0) return [];
    return this.#all<JobRow>(
      `select * from cm_jobs where state = 'submitting' and target in (select value from json_each(?))
       and (lease_until < ? or lease_owner = ?) order by id`,
      JSON.stringify(targets),
      now,
      deadOwner,
    );
  }

  async resolveLease(
    id: number,
    attempt: number,
    expectedOwner: string | null,
    outcome: { handle: RunnerHandle } | { failReason: string } | { resubmit: true },
    now: number,
  ): Promise<boolean> {
    return this.#write(now, () => {
      const row = this.#row(id);
      if (
        !row ||
        row.state !== 'submitting' ||
        row.attempt !== attempt ||
        row.lease_owner !== expectedOwner
      )
        return false;
      const clear = { lease_owner: null, lease_until: null };
      if ('handle' in outcome) {
        return this.#move(
          id,
          'submitting',
          'queued',
          now,
          { ...clear, handle: JSON.stringify(outcome.handle), reason: null },
          'adopted after a crash',
        );
      }
      if (row.cancel_requested) {
        // Not running anywhere (or unknowable): nothing to cancel on the runner.
        return this.#move(
          id,
          'submitting',
          'cancelled',
          now,
          { ...clear, ended_at: now, reason: 'cancelled by request' },
          'cancelled by request',
        );
      }
      if ('failReason' in outcome) {
        return this.#move(
          id,
          'submitting',
          'failed',
          now,
          { ...clear, ended_at: now, reason: outcome.failReason },
          outcome.failReason,
        );
      }
      // The runner never saw it: the same attempt again (same job key), so no second job.
      return this.#move(
        id,
        'submitting',
        'ready',
        now,
        { ...clear, attempt: row.attempt - 1, reason: 'resubmitting after a crash' },
        'resubmitting after a crash',
      );
    });
  }

  async requestCancel(id: number, now: number): Promise<JobRow | null> {
    return this.#write(now, () => {
      const row = this.#row(id);
      if (!row) return null;
      if (row.state === 'waiting' || row.state === 'ready') {
        this.#move(
          id,
          row.state,
          'cancelled',
          now,
          { ended_at: now, cancel_requested: 1, reason: 'cancelled by request' },
          'cancelled by request',
        );
      } else if (!isTerminal(row.state)) {
        this.#run('update cm_jobs set cancel_requested = 1, updated_at = ? where id = ?', now, id);
      }
      return this.#row(id) ?? null;
    });
  }

  async markCancelled(id: number, now: number): Promise<void> {
    this.#write(now, () => {
      const row = this.#row(id);
      if (row && (row.state === 'queued' || row.state === 'running')) {
        this.#move(
          id,
          row.state,
          'cancelled',
          now,
          { ended_at: now, reason: 'cancelled by request' },
          'cancelled by request',
        );
      }
    });
  }

  async retry(id: number, now: number): Promise<JobRow | null> {
    return this.#write(now, () => {
      const row = this.#row(id);
      if (!row) return null;
      if (!['failed', 'cancelled', 'timeout', 'skipped'].includes(row.state)) {
        throw new QueueError(
          'E_QUEUE_INVALID_STATE',
          `job ${id} is ${row.state}: only failed, cancelled, timeout or skipped jobs can be retried`,
          {
            details: { job: String(id), state: row.state },
          },
        );
      }
      const reset = (job: JobRow, policy: FailurePolicy | null): boolean => {
        const parents = this.#all<{ state: JobState; condition: EdgeCondition }>(
          'select p.state, d.condition from cm_deps d join cm_jobs p on p.id = d.parent_id where d.job_id = ?',
          job.id,
        );
        if (
          parents.some((p) => isTerminal(p.state) && !conditionHolds(p.condition, p.state, policy))
        )
          return false;
        const waiting = parents.some((p) => !isTerminal(p.state));
        return this.#move(
          job.id,
          job.state,
          waiting ? 'waiting' : 'ready',
          now,
          {
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
          'retry requested',
        );
      };
      const policyOf = (job: JobRow): FailurePolicy | null =>
        job.workflow_id === null
          ? null
          : (this.#get<{ on_failure: FailurePolicy }>(
              'select on_failure from cm_workflows where id = ?',
              job.workflow_id,
            )?.on_failure ?? null);
      if (!reset(row, policyOf(row))) {
        throw new QueueError(
          'E_QUEUE_INVALID_STATE',
          `job ${id} has a dependency that ended badly: retry that one first`,
          { details: { job: String(id) } },
        );
      }
      // Dependents skipped because of this job wait for it again, transitively.
      const todo = [id];
      for (let parent = todo.pop(); parent !== undefined; parent = todo.pop()) {
        const skipped = this.#all<JobRow>(
          `select j.* from cm_deps d join cm_jobs j on j.id = d.job_id where d.parent_id = ? and j.state = 'skipped'`,
          parent,
        );
        for (const child of skipped) if (reset(child, policyOf(child))) todo.push(child.id);
      }
      return this.#row(id) ?? null;
    });
  }

  async reprioritize(id: number, priority: number, now: number): Promise<JobRow | null> {
    return this.#write(now, () => {
      this.#run('update cm_jobs set priority = ?, updated_at = ? where id = ?', priority, now, id);
      return this.#row(id) ?? null;
    });
  }

  async prune(before: number): Promise<{ jobs: number; events: number }> {
    return this.#write(before, () => {
      // A finished job that an open job still depends on is kept (its outcome decides the child).
      const jobs = this.#run(
        `delete from cm_jobs where ended_at < ? and state in ${TERMINAL_SQL}
         and not exists (select 1 from cm_deps d join cm_jobs c on c.id = d.job_id
           where d.parent_id = cm_jobs.id and c.state in ${OPEN_SQL})`,
        before,
      ).changes;
      this.#run(
        'delete from cm_workflows where done_at < ? and not exists (select 1 from cm_jobs j where j.workflow_id = cm_workflows.id)',
        before,
      );
      const events = this.#run('delete from cm_events where at < ?', before).changes;
      return { jobs, events };
    });
  }

  async events(after: number, limit: number): Promise<QueueEvent[]> {
    const rows = this.#all<EventRow>(
      'select * from cm_events where seq > ? order by seq limit ?',
      after,
      limit,
    );
    return rows.map(toEvent);
  }

  async lastEventSeq(): Promise<number> {
    return this.#get<{ seq: number | null }>('select max(seq) seq from cm_events')?.seq ?? 0;
  }

  async allTerminal(ids: readonly number[] | null): Promise<boolean> {
    const open =
      ids === null
        ? this.#get(`select 1 from cm_jobs where state in ${OPEN_SQL} limit 1`)
        : this.#get(
            `select 1 from cm_jobs where id in (select value from json_each(?)) and state in ${OPEN_SQL} limit 1`,
            JSON.stringify(ids),
          );
    return open === undefined;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stmts.clear();
    this.#db.close();
  }
}

function toEvent(r: EventRow): QueueEvent {
  const wf = r.workflow_id === null ? null : String(r.workflow_id);
  switch (r.type) {
    case 'job:state':
      return {
        seq: r.seq,
        at: r.at,
        type: 'job:state',
        jobId: String(r.job_id),
        workflowId: wf,
        target: r.target ?? '',
        from: r.from_state,
        to: r.to_state as JobState,
        reason: r.reason,
      };
    case 'target:limit':
      return {
        seq: r.seq,
        at: r.at,
        type: 'target:limit',
        target: r.target ?? '',
        maxConcurrent: r.reason === null ? null : Number(r.reason),
      };
    case 'workflow:created':
    case 'workflow:done':
      return { seq: r.seq, at: r.at, type: r.type, workflowId: wf ?? '' };
    default:
      return {
        seq: r.seq,
        at: r.at,
        type: r.type as 'queue:paused' | 'queue:resumed',
        target: r.target,
      };
  }
}
