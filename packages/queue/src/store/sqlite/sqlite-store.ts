// The SQLite store: better-sqlite3 in WAL mode, schema applied by @crystalmath/migrate through
// kysely's SqliteDialect, hot paths as cached prepared statements (kysely's per-query
// compilation costs more than the queries here). Every write is one short BEGIN IMMEDIATE
// transaction: state changes are guarded UPDATEs, each with its event row, and the
// transaction that ends a job releases or skips its dependents before it commits.

import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, rmSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { isCrystalMathError, isTerminalRunnerState, ValidationError } from '@crystalmath/core';
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
import { EVENT_COLUMNS, type EventRow, toEvent } from '../event-row.js';
import {
  assertRetryable,
  assertSameDefinition,
  blockedRetryError,
  cancelRequest,
  collectedMove,
  collectingMove,
  decideStatus,
  dependentMove,
  existingWorkflow,
  holdsClaim,
  isTerminal,
  type LeaseOutcome,
  leaseMove,
  type Move,
  markCancelledMove,
  planNewJob,
  retryMove,
  submitFailedMove,
} from '../rules.js';
import {
  HANDLED_SQL,
  LIVE_SQL,
  openOrChain,
  schedulerUpsertSql,
  schedulerUpsertValues,
  TERMINAL_SQL,
} from '../state-sql.js';

import type {
  ArtifactRow,
  CollectOutcome,
  DepRow,
  InsertResult,
  JobRow,
  NewJob,
  NewWorkflow,
  QueueStore,
  RetryPolicy,
  SchedulerRow,
  StatusUpdate,
  StoreFactory,
  SubmittedResult,
  TargetRow,
  WorkflowRow,
} from '../store.js';
import {
  CHECKPOINTER_AFTER_WRITES,
  Checkpointer,
  WAL_DEFAULT_PAGES,
  WAL_SAFETY_PAGES,
} from './checkpointer.js';

const SCHEDULER_UPSERT = schedulerUpsertSql(() => '?');
/** @crystalmath/migrate's default history table, which the queue's migrations use. */
const MIGRATION_HISTORY_TABLE = 'crystalmath_migrations';

type Db = Database.Database;
type Param = string | number | bigint | null | Buffer;

/** Options of `sqliteStore`. */
export interface SqliteStoreOptions {
  /** Database file (created if missing). `:memory:` works within one process. */
  readonly path: string;
  /**
   * How long a write waits for another process's lock before it fails with E_STORE. The wait
   * never blocks the event loop: SQLite waits at most a few milliseconds inside a call, then the
   * store retries on timers (5 ms doubling to 250 ms, with jitter). Default 30 000 ms.
   */
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
    ...(options.path === ':memory:' ? {} : { artifactsDir: `${resolve(options.path)}.artifacts` }),
    open: () => SqliteStore.open(options),
  };
  return factory;
}

interface Ended {
  id: number;
  state: JobState;
}

/** The open-jobs predicate as the partial index spells it (see `openOrChain`). */
const OPEN = openOrChain('state');
const OPEN_J = openOrChain('j.state');
const OPEN_C = openOrChain('c.state');
const JOB_COLUMNS = [
  'id',
  'name',
  'state',
  'target',
  'priority',
  'spec',
  'workflow_id',
  'workflow_key',
  'max_attempts',
  'backoff',
  'run_at',
  'idempotency_key',
  'tags',
  'metadata',
  'reason',
  'created_at',
  'updated_at',
  'ended_at',
];
/** SQLite's own busy wait inside one call: the longest the event loop waits for a lock. */
const INNER_BUSY_MS = 5;
/** Retries of a locked write: 5 ms doubling to 250 ms, each x0.5 to x1.5. */
const LOCK_RETRY_FIRST_MS = 5;
const LOCK_RETRY_MAX_MS = 250;
/** Default busyTimeoutMs: how long a write waits for another process's lock. */
const DEFAULT_LOCK_DEADLINE_MS = 30_000;
/**
 * Files up to this size get `PRAGMA quick_check` at open. It reads every page and blocks the
 * event loop meanwhile: measured about 600 ms for 70 MiB (about 9 ms per MiB), so about 70 ms
 * at this bound. Larger files are checked by `crystalmath store check`.
 */
const QUICK_CHECK_MAX_BYTES = 8 * 1024 * 1024;
/** Result codes that mean the file is damaged. */
const DAMAGED = /^SQLITE_(CORRUPT|NOTADB)/;

function isSqliteError(error: unknown): error is Error & { code: string } {
  return (
    error instanceof Error &&
    typeof (error as { code?: unknown }).code === 'string' &&
    (error as unknown as { code: string }).code.startsWith('SQLITE_')
  );
}

function isBusy(error: unknown): boolean {
  return isSqliteError(error) && /^SQLITE_(BUSY|LOCKED)/.test(error.code);
}

/** What a result code means to the person reading the error. */
function explain(code: string, message: string): string {
  if (code.startsWith('SQLITE_READONLY'))
    return `the file is read-only (or its -wal/-shm file or its folder is): ${message}`;
  if (code.startsWith('SQLITE_CANTOPEN')) return `cannot open the file or its folder: ${message}`;
  if (code === 'SQLITE_FULL') return `the disk is full: ${message}`;
  if (code.startsWith('SQLITE_IOERR'))
    return `disk I/O error (a read-only, full or removed volume?): ${message}`;
  if (code.startsWith('SQLITE_CORRUPT'))
    return `the database file is damaged: ${message}; restore it from a backup`;
  if (code === 'SQLITE_NOTADB') return 'not a SQLite database (nor a CrystalMath queue)';
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
    return `locked by another process: ${message}`;
  return message;
}

/** E_STORE naming the file; QueueErrors and ValidationErrors pass through. */
function sqliteError(error: unknown, where: string, what: string): Error {
  if (isCrystalMathError(error)) return error;
  if (isSqliteError(error)) {
    return new QueueError(
      'E_STORE',
      `SQLite ${where}: ${what}: ${explain(error.code, error.message)} (${error.code})`,
      { cause: error, details: { store: where, code: error.code } },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new QueueError('E_STORE', `SQLite ${where}: ${what}: ${message}`, {
    cause: error,
    details: { store: where },
  });
}

/** Bound parameters per multi-row statement: under SQLite's historical limit of 999. */
const MAX_PARAMS = 990;

export class SqliteStore implements QueueStore {
  readonly dialect = 'sqlite' as const;
  readonly storeId: string;
  readonly #db: Db;
  readonly #onQuery: ((sql: string) => void) | undefined;
  readonly #stmts = new Map<string, Database.Statement>();
  /** Multi-row INSERT texts by `table:rows` (see #insertMany). */
  readonly #insertSql = new Map<string, string>();
  readonly #txn: Database.Transaction<(fn: () => unknown) => unknown>;
  /** Jobs ended in the open transaction whose dependents are not settled yet. */
  #ended: Ended[] = [];
  #touchedWorkflows = new Set<number>();
  /** Event rows of the open transaction (row-major), written in multi-row inserts before commit. */
  #events: Param[] = [];
  #closed = false;
  #lastSeq = 0;
  /** The file as errors name it (absolute path). */
  readonly #where: string;
  /** busyTimeoutMs: how long a write retries while another process holds the lock. */
  readonly #deadline: number;
  /** The first corruption error seen: every later write is refused. */
  #damaged: Error | null = null;
  /** True inside #writeOnce: errors are converted once, by #write. */
  #inTxn = false;
  /** Committed write transactions, until the checkpoint thread starts. */
  #writes = 0;
  /** The WAL checkpoint thread, once this store has written CHECKPOINTER_AFTER_WRITES times. */
  #checkpointer: Checkpointer | null = null;
  /** The highest event seq inserted by the open transaction. */
  #txnSeq = 0;

  private constructor(
    db: Db,
    storeId: string,
    where: string,
    deadline: number,
    onQuery: ((sql: string) => void) | undefined,
  ) {
    this.#db = db;
    this.storeId = storeId;
    this.#where = where;
    this.#deadline = deadline;
    this.#onQuery = onQuery;
    this.#txn = db.transaction((fn: () => unknown) => fn());
    this.#lastSeq =
      (db.prepare('select max(seq) seq from cm_events').get() as { seq: number | null }).seq ?? 0;
  }

  /**
   * Opens the file, applies the queue's migrations, and returns the store. Refused, with an
   * E_STORE naming the path and nothing written: a 0-byte file (not a queue, and not ours to
   * make one), a file that is not SQLite, a SQLite database with other tables than a queue's, and
   * a damaged file (`PRAGMA quick_check` when the file is at most QUICK_CHECK_MAX_BYTES).
   */
  static async open(options: SqliteStoreOptions): Promise<SqliteStore> {
    const deadline = options.busyTimeoutMs ?? DEFAULT_LOCK_DEADLINE_MS;
    const memory = options.path === ':memory:';
    const where = memory ? options.path : resolve(options.path);
    const fail = (cause: unknown, what: string): Error => sqliteError(cause, where, what);
    let size: number | null = null;
    if (!memory) {
      try {
        size = statSync(where).size;
      } catch (cause) {
        if ((cause as NodeJS.ErrnoException).code !== 'ENOENT') throw fail(cause, 'cannot open');
        // A new queue file appears whole: made under another name, then linked into place.
        // Otherwise a second process opening the same new path (two schedulers started together)
        // could see it at 0 bytes, before the first wrote its header, and refuse it as damaged.
        createEmptyDatabase(where, fail);
        size = statSync(where).size;
      }
      if (size === 0) {
        const wal = existsSync(`${where}-wal`)
          ? ` Its -wal file (${where}-wal) may hold a queue's data: keep it and restore from a backup.`
          : ' Delete it to start a new queue there.';
        throw new QueueError(
          'E_STORE',
          `SQLite ${where}: the file is empty (0 bytes), not a CrystalMath queue; refusing to make it one.${wal}`,
          { details: { store: where } },
        );
      }
    }
    let db: Db;
    try {
      db = new Database(options.path, { timeout: INNER_BUSY_MS });
    } catch (cause) {
      throw fail(cause, 'cannot open');
    }
    try {
      // Read before anything writes (journal_mode = WAL rewrites the header of a foreign file).
      const tables = (
        db.prepare("select name from sqlite_master where type = 'table'").all() as {
          name: string;
        }[]
      ).map((t) => t.name);
      // The migrator's history table alone is a queue being made by another process (its
      // migrator commits that table before the queue's first migration): not foreign.
      const foreign = tables.filter((t) => t !== MIGRATION_HISTORY_TABLE);
      if (foreign.length > 0 && !tables.includes('cm_meta')) {
        const some = foreign.slice(0, 3).join(', ') + (foreign.length > 3 ? ', ...' : '');
        throw new QueueError(
          'E_STORE',
          `SQLite ${where}: not a CrystalMath queue (it holds other tables: ${some}); refusing to add a queue to it`,
          { details: { store: where } },
        );
      }
      if (size !== null && size > 0 && size <= QUICK_CHECK_MAX_BYTES) {
        const result = db.pragma('quick_check(1)', { simple: true });
        if (result !== 'ok') {
          throw new QueueError(
            'E_STORE',
            `SQLite ${where}: the database file is damaged (quick_check: ${String(result)}); restore it from a backup`,
            { details: { store: where, code: 'SQLITE_CORRUPT' } },
          );
        }
      }
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      const kysely = new Kysely({ dialect: new SqliteDialect({ database: db }) });
      await new Migrator({
        db: kysely,
        source: queueMigrations,
        lockTimeoutMs: deadline,
      }).migrate();
      // One random id per database file, made once: part of every runner job key.
      db.prepare('insert or ignore into cm_meta (id, store_id, paused) values (1, ?, 0)').run(
        randomBytes(3).toString('hex'),
      );
      const row = db.prepare('select store_id from cm_meta where id = 1').get() as {
        store_id: string;
      };
      return new SqliteStore(db, row.store_id, where, deadline, options.onQuery);
    } catch (error) {
      db.close();
      throw fail(error, 'cannot open');
    }
  }

  get lastSeq(): number {
    return this.#lastSeq;
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
    try {
      return this.#stmt(sql).all(...params) as T[];
    } catch (error) {
      throw this.#inTxn ? error : this.#fault(error, 'read');
    }
  }

  #get<T>(sql: string, ...params: Param[]): T | undefined {
    try {
      return this.#stmt(sql).get(...params) as T | undefined;
    } catch (error) {
      throw this.#inTxn ? error : this.#fault(error, 'read');
    }
  }

  /** E_STORE for a driver error (naming the file); remembers corruption so writes stop. */
  #fault(error: unknown, what: string): unknown {
    if (!isSqliteError(error)) return error;
    const e = sqliteError(error, this.#where, what);
    if (DAMAGED.test(String(error.code)) && this.#damaged === null) this.#damaged = e;
    return e;
  }

  #run(sql: string, ...params: Param[]): Database.RunResult {
    return this.#stmt(sql).run(...params);
  }

  /**
   * One BEGIN IMMEDIATE transaction: `fn`, then the dependents of the jobs it ended, then its
   * event rows, then commit. Nothing in here awaits. When another process holds the lock, SQLite
   * waits INNER_BUSY_MS at most (the event loop is blocked that long, no longer) and the
   * transaction is tried again on a timer, with backoff, until the `busyTimeoutMs` deadline.
   * BEGIN IMMEDIATE takes the lock first, so a lock error means nothing was written.
   */
  #write<T>(now: number, fn: () => T): T | Promise<T> {
    if (this.#closed) throw new QueueError('E_QUEUE_CLOSED', 'the store is closed');
    if (this.#damaged) throw this.#refusedWrite();
    try {
      return this.#writeOnce(now, fn);
    } catch (error) {
      if (!isBusy(error)) throw this.#fault(error, 'write');
      return this.#writeLater(now, fn);
    }
  }

  async #writeLater<T>(now: number, fn: () => T): Promise<T> {
    const start = Date.now();
    for (let attempt = 0; ; attempt++) {
      const base = Math.min(LOCK_RETRY_MAX_MS, LOCK_RETRY_FIRST_MS * 2 ** attempt);
      await new Promise((r) => setTimeout(r, Math.round(base * (0.5 + Math.random()))));
      if (this.#closed) throw new QueueError('E_QUEUE_CLOSED', 'the store is closed');
      if (this.#damaged) throw this.#refusedWrite();
      try {
        return this.#writeOnce(now, fn);
      } catch (error) {
        if (!isBusy(error)) throw this.#fault(error, 'write');
        if (Date.now() - start >= this.#deadline) {
          throw new QueueError(
            'E_STORE',
            `SQLite ${this.#where}: locked by another process for more than ${this.#deadline} ms (busyTimeoutMs); nothing was written`,
            {
              cause: error,
              details: { store: this.#where, code: String((error as { code: string }).code) },
            },
          );
        }
      }
    }
  }

  #refusedWrite(): QueueError {
    return new QueueError(
      'E_STORE',
      `SQLite ${this.#where}: writes refused, the file is damaged (${this.#damaged?.message}); run \`crystalmath store check\` and restore it from a backup`,
      { cause: this.#damaged, details: { store: this.#where, code: 'SQLITE_CORRUPT' } },
    );
  }

  #writeOnce<T>(now: number, fn: () => T): T {
    this.#onQuery?.('begin immediate');
    let seq = 0;
    this.#inTxn = true;
    try {
      const result = this.#txn.immediate(() => {
        this.#ended = [];
        this.#events = [];
        this.#txnSeq = 0;
        this.#touchedWorkflows.clear();
        const r = fn();
        this.#settle(now);
        this.#flushEvents();
        seq = this.#txnSeq;
        return r;
      }) as T;
      if (seq > this.#lastSeq) this.#lastSeq = seq;
      this.#committed();
      return result;
    } finally {
      this.#inTxn = false;
      this.#ended = [];
      this.#events = [];
      this.#touchedWorkflows.clear();
    }
  }

  /** After each commit: wakes the checkpoint thread, or starts it once the store is busy. */
  #committed(): void {
    if (this.#checkpointer !== null) this.#checkpointer.wrote();
    else if (++this.#writes === CHECKPOINTER_AFTER_WRITES && this.#where !== ':memory:') {
      try {
        const checkpointer = new Checkpointer(this.#where, () => {
          // The thread failed: this connection checkpoints by itself again, as SQLite does.
          if (this.#checkpointer !== checkpointer || this.#closed) return;
          this.#checkpointer = null;
          this.#db.pragma(`wal_autocheckpoint = ${WAL_DEFAULT_PAGES}`);
        });
        this.#db.pragma(`wal_autocheckpoint = ${WAL_SAFETY_PAGES}`);
        this.#checkpointer = checkpointer;
        checkpointer.wrote();
      } catch {
        // No thread (a runtime without worker_threads?): SQLite's own checkpoints go on.
      }
    }
  }

  /** Multi-row INSERTs of `values` (row-major), in chunks; returns the last rowid. */
  #insertMany(
    table: string,
    columns: readonly string[],
    values: readonly Param[],
  ): number | bigint {
    const width = columns.length;
    const perChunk = Math.floor(MAX_PARAMS / width);
    const rows = values.length / width;
    let last: number | bigint = 0;
    for (let start = 0; start < rows; start += perChunk) {
      const n = Math.min(perChunk, rows - start);
      // The statement text is built once per table and row count: it is also the cache key.
      const key = `${table}:${n}`;
      let sql = this.#insertSql.get(key);
      if (sql === undefined) {
        const tuple = `(${columns.map(() => '?').join(', ')})`;
        sql = `insert into ${table} (${columns.join(', ')}) values ${Array.from({ length: n }, () => tuple).join(', ')}`;
        this.#insertSql.set(key, sql);
      }
      last = this.#run(sql, ...values.slice(start * width, (start + n) * width)).lastInsertRowid;
    }
    return last;
  }

  /** Inserts the event rows gathered so far in this transaction (in order, before any later). */
  #flushEvents(): void {
    if (this.#events.length === 0) return;
    this.#txnSeq = Number(this.#insertMany('cm_events', EVENT_COLUMNS, this.#events));
    this.#events = [];
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
    this.#events.push(now, type, job, wf, target, from, to, reason);
  }

  /** Event row and dependents bookkeeping of a transition that the caller's UPDATE made. */
  #moved(
    id: number,
    wf: number | null,
    target: string,
    from: JobState,
    to: JobState,
    now: number,
    reason: string | null,
  ): void {
    this.#event(now, 'job:state', id, wf, target, from, to, reason);
    if (wf !== null) this.#touchedWorkflows.add(wf);
    if (isTerminal(to)) this.#ended.push({ id, state: to });
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
    const sql = `update cm_jobs set state = ?, updated_at = ?${cols.map((c) => `, ${c} = ?`).join('')} where id = ? and state = ? returning workflow_id, target`;
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
    this.#moved(id, row.workflow_id, row.target, from, to, now, reason);
    return true;
  }

  /** `#move` of a transition decided in rules.ts. */
  #apply(m: Move | null, now: number): boolean {
    return m !== null && this.#move(m.id, m.from, m.to, now, m.set, m.reason ?? null);
  }

  /**
   * Releases or skips the dependents of every job ended in this transaction, transitively, one
   * wave of ended jobs at a time. A dependent is judged on all its parents (two may have ended
   * in this same transaction), never on the one that woke it alone.
   */
  #settle(now: number): void {
    while (this.#ended.length > 0) {
      const wave = this.#ended;
      this.#ended = [];
      const children = this.#all<{ id: number; run_at: number; on_failure: FailurePolicy | null }>(
        `select distinct j.id, j.run_at, w.on_failure from cm_deps d join cm_jobs j on j.id = d.job_id
         left join cm_workflows w on w.id = j.workflow_id
         where d.parent_id in (select value from json_each(?)) and j.state = 'waiting' order by j.id`,
        JSON.stringify(wave.map((e) => e.id)),
      );
      for (const child of children) {
        const parents = this.#all<{
          id: number;
          state: JobState;
          condition: EdgeCondition;
          workflow_key: string | null;
        }>(
          `select p.id, p.state, d.condition, p.workflow_key from cm_deps d join cm_jobs p on p.id = d.parent_id
           where d.job_id = ? order by p.id`,
          child.id,
        );
        this.#apply(dependentMove(child, parents, child.on_failure, now), now);
      }
    }
    for (const wf of this.#touchedWorkflows) {
      const open = this.#get(`select 1 from cm_jobs where workflow_id = ? and ${OPEN} limit 1`, wf);
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
          return existingWorkflow(wf.id, rows);
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
      // Ids are assigned here (max + 1, ...) under the write lock, so a batch goes out in a few
      // multi-row INSERTs and its jobs can name each other as parents.
      let nextId =
        (this.#get<{ id: number | null }>('select max(id) id from cm_jobs')?.id ?? 0) + 1;
      const firstId = nextId;
      const rows: Param[] = [];
      const deps: Param[] = [];
      const tags: Param[] = [];
      const wf = result.workflowId;
      // Keys first used earlier in this same batch (their rows are inserted at the end).
      const batchKeys = new Map<
        string,
        { id: number; state: JobState; spec: string; target: string }
      >();
      for (const job of jobs) {
        if (job.idempotencyKey !== null) {
          const found = this.#get<{ id: number; state: JobState; spec: string; target: string }>(
            'select id, state, spec, target from cm_jobs where idempotency_key = ?',
            job.idempotencyKey,
          );
          const hit = found ?? batchKeys.get(job.idempotencyKey);
          if (hit) {
            assertSameDefinition(hit, job);
            result.ids.push(hit.id);
            result.states.push(hit.state);
            result.existing.push(true);
            continue;
          }
        }
        const id = nextId++;
        const { state, skip, parents } = planNewJob(
          job,
          result,
          (parent) =>
            this.#get<{ state: JobState }>('select state from cm_jobs where id = ?', parent)?.state,
          policy,
        );
        for (const p of parents) deps.push(id, p.id, p.condition);
        rows.push(
          id,
          job.name,
          state,
          job.target,
          job.priority,
          job.spec,
          wf,
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
        );
        if (job.tags.length > 0) for (const tag of new Set(job.tags)) tags.push(id, tag);
        if (job.idempotencyKey !== null)
          batchKeys.set(job.idempotencyKey, { id, state, spec: job.spec, target: job.target });
        result.ids.push(id);
        result.states.push(state);
        result.existing.push(false);
      }
      if (wf !== null) this.#touchedWorkflows.add(wf);
      if (rows.length > 0) {
        this.#insertMany('cm_jobs', JOB_COLUMNS, rows);
        // Each new job's `job:state` event (none -> its state), in id order (the batch's order),
        // made from the rows just written in one statement: no parameters per event to bind.
        // The workflow's own event goes first.
        this.#flushEvents();
        this.#txnSeq = Number(
          this.#run(
            `insert into cm_events (${EVENT_COLUMNS.join(', ')})
             select created_at, 'job:state', id, workflow_id, target, null, state, reason
             from cm_jobs where id >= ? and id < ? order by id`,
            firstId,
            nextId,
          ).lastInsertRowid,
        );
      }
      if (deps.length > 0) this.#insertMany('cm_deps', ['job_id', 'parent_id', 'condition'], deps);
      if (tags.length > 0) this.#insertMany('cm_tags', ['job_id', 'tag'], tags);
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

  async list(filter: ListFilter, fromId: number, limit: number): Promise<JobRow[]> {
    const newest = filter.order === 'newest';
    const where = [newest ? 'j.id < ?' : 'j.id > ?'];
    const params: Param[] = [fromId];
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
      `select j.* from cm_jobs j where ${where.join(' and ')} order by j.id ${newest ? 'desc' : 'asc'} limit ?`,
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

  async listWorkflows(
    beforeId: number,
    limit: number,
  ): Promise<(WorkflowRow & { done_at: number | null })[]> {
    return this.#all(
      'select id, name, on_failure, created_at, done_at from cm_workflows where id < ? order by id desc limit ?',
      beforeId,
      limit,
    );
  }

  async workflowJobs(id: number): Promise<JobRow[]> {
    return this.#all<JobRow>('select * from cm_jobs where workflow_id = ? order by id', id);
  }

  // ---------------------------------------------------------------- targets

  async ensureTargets(
    targets: readonly { name: string; maxConcurrent?: number | null; paused?: boolean }[],
  ): Promise<void> {
    await this.#write(0, () => {
      for (const t of targets) {
        this.#run(
          'insert or ignore into cm_targets (name, max_concurrent, paused) values (?, ?, ?)',
          t.name,
          t.maxConcurrent ?? null,
          t.paused ? 1 : 0,
        );
        if (t.maxConcurrent !== undefined) {
          this.#run(
            'update cm_targets set max_concurrent = ? where name = ?',
            t.maxConcurrent,
            t.name,
          );
        }
        if (t.paused !== undefined) {
          this.#run('update cm_targets set paused = ? where name = ?', t.paused ? 1 : 0, t.name);
        }
      }
    });
  }

  async targets(): Promise<TargetRow[]> {
    return this.#all<TargetRow>(
      `select t.name, t.max_concurrent, t.paused,
        (select count(*) from cm_jobs j where ${OPEN_J} and j.state in ${LIVE_SQL} and j.target = t.name) active,
        (select json_group_array(json_object('owner', s.owner, 'heartbeat_at', s.heartbeat_at,
            'heartbeat_ms', s.heartbeat_ms, 'health', s.health))
         from cm_schedulers s where exists (select 1 from json_each(s.targets) e where e.value = t.name)) schedulers
       from cm_targets t order by t.name`,
    );
  }

  async setTarget(
    name: string,
    patch: { maxConcurrent?: number | null; paused?: boolean },
    now: number,
  ): Promise<void> {
    await this.#write(now, () => {
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
        const limit = patch.maxConcurrent === null ? null : String(patch.maxConcurrent);
        this.#event(now, 'target:limit', null, null, name, null, null, limit);
      }
      if (patch.paused !== undefined) {
        this.#run('update cm_targets set paused = ? where name = ?', patch.paused ? 1 : 0, name);
        const type = patch.paused ? 'queue:paused' : 'queue:resumed';
        this.#event(now, type, null, null, name, null, null, null);
      }
    });
  }

  async setQueuePaused(paused: boolean, now: number): Promise<void> {
    await this.#write(now, () => {
      this.#run('update cm_meta set paused = ? where id = 1', paused ? 1 : 0);
      const type = paused ? 'queue:paused' : 'queue:resumed';
      this.#event(now, type, null, null, null, null, null, null);
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
          (select count(*) from cm_jobs j where ${OPEN_J} and j.state in ${LIVE_SQL} and j.target = t.name) active
         from cm_targets t where t.paused = 0 and t.name in (select value from json_each(?))
           and (select paused from cm_meta where id = 1) = 0`,
        JSON.stringify(targets),
      );
      const claimed: JobRow[] = [];
      for (const t of slots) {
        const room = limit - claimed.length;
        const free = t.max_concurrent === null ? room : Math.min(room, t.max_concurrent - t.active);
        if (free <= 0) continue;
        // One guarded, set-based UPDATE per target: priority, then FIFO.
        const rows = this.#all<JobRow>(
          `update cm_jobs set state = 'submitting', attempt = attempt + 1, lease_owner = ?,
             lease_until = ?, updated_at = ?
           where id in (select id from cm_jobs where ${OPEN} and state = 'ready' and target = ? and run_at <= ?
                        order by priority desc, id limit ?)
             and state = 'ready'
           returning *`,
          owner,
          now + leaseMs,
          now,
          t.name,
          now,
          free,
        );
        rows.sort((a, b) => b.priority - a.priority || a.id - b.id);
        for (const row of rows) {
          this.#moved(row.id, row.workflow_id, row.target, 'ready', 'submitting', now, null);
          claimed.push(row);
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
          workflow_id: number | null;
          target: string;
          cancel_requested: number;
        }>(
          `update cm_jobs set state = 'queued', handle = ?, lease_owner = null, lease_until = null,
             reason = null, updated_at = ?
           where id = ? and state = 'submitting' and attempt = ? and lease_owner = ?
           returning workflow_id, target, cancel_requested`,
          JSON.stringify(r.handle),
          now,
          r.id,
          r.attempt,
          owner,
        );
        if (row !== undefined) {
          this.#moved(r.id, row.workflow_id, row.target, 'submitting', 'queued', now, null);
          if (row.cancel_requested) toCancel.push(r);
          continue;
        }
        // Another scheduler recovered the claim: it adopted this very submission (same job
        // key) through find(), unless the job was cancelled meanwhile.
        const now2 = this.#get<{ state: JobState; attempt: number }>(
          'select state, attempt from cm_jobs where id = ?',
          r.id,
        );
        if (now2?.state === 'cancelled' && now2.attempt === r.attempt) toCancel.push(r);
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
    await this.#write(now, () => {
      const row = this.#row(id);
      if (holdsClaim(row, attempt, owner))
        this.#apply(submitFailedMove(row, reason, retryAt, now), now);
    });
  }

  async renewLeases(
    ids: readonly number[],
    owner: string,
    until: number,
    now: number,
  ): Promise<number> {
    if (ids.length === 0) return 0;
    return this.#write(
      now,
      () =>
        this.#run(
          `update cm_jobs set lease_until = ? where lease_owner = ? and state = 'submitting'
           and id in (select value from json_each(?))`,
          until,
          owner,
          JSON.stringify(ids),
        ).changes,
    );
  }

  async liveJobs(targets: readonly string[]): Promise<JobRow[]> {
    if (targets.length === 0) return [];
    return this.#all<JobRow>(
      `select * from cm_jobs where ${OPEN} and state in ${HANDLED_SQL}
         and target in (select value from json_each(?)) order by id`,
      JSON.stringify(targets),
    );
  }

  async applyStatuses(
    updates: readonly StatusUpdate[],
    retry: RetryPolicy,
    now: number,
  ): Promise<void> {
    if (updates.length === 0) return;
    await this.#write(now, () => {
      const rows = new Map(
        this.#all<JobRow>(
          'select * from cm_jobs where id in (select value from json_each(?))',
          JSON.stringify(updates.map((u) => u.id)),
        ).map((r) => [r.id, r]),
      );
      for (const u of updates) {
        const row = rows.get(u.id);
        if (!row || row.attempt !== u.attempt) continue;
        if (row.state !== 'queued' && row.state !== 'running') continue;
        if (u.collect === true && isTerminalRunnerState(u.status.state)) {
          this.#apply(collectingMove(row, u.status, now), now);
          continue;
        }
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

  async collectingJobs(targets: readonly string[]): Promise<JobRow[]> {
    if (targets.length === 0) return [];
    return this.#all<JobRow>(
      `select * from cm_jobs where ${OPEN} and state = 'collecting'
         and target in (select value from json_each(?)) order by id`,
      JSON.stringify(targets),
    );
  }

  async finishCollect(
    outcome: CollectOutcome,
    retry: RetryPolicy,
    now: number,
  ): Promise<JobState | null> {
    return this.#write(now, () => {
      const m = collectedMove(this.#row(outcome.id), outcome, retry, now);
      if (m === null) return null;
      for (const a of outcome.artifacts)
        this.#run(
          `insert into cm_artifacts (job_id, path, size, sha256, mode, attempt, created_at)
           values (?, ?, ?, ?, ?, ?, ?) on conflict (job_id, path) do update set size = excluded.size,
           sha256 = excluded.sha256, mode = excluded.mode, attempt = excluded.attempt,
           created_at = excluded.created_at`,
          outcome.id,
          a.path,
          a.size,
          a.sha256,
          a.mode,
          outcome.attempt,
          now,
        );
      return this.#apply(m, now) ? m.to : null;
    });
  }

  async artifacts(id: number): Promise<ArtifactRow[]> {
    return this.#all<ArtifactRow>('select * from cm_artifacts where job_id = ? order by path', id);
  }

  async expiredLeases(
    now: number,
    targets: readonly string[],
    deadOwner: string | null,
  ): Promise<JobRow[]> {
    if (targets.length === 0) return [];
    return this.#all<JobRow>(
      `select * from cm_jobs where ${OPEN} and state = 'submitting' and target in (select value from json_each(?))
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
    outcome: LeaseOutcome,
    now: number,
  ): Promise<boolean> {
    return this.#write(now, () => {
      const row = this.#row(id);
      return (
        holdsClaim(row, attempt, expectedOwner) && this.#apply(leaseMove(row, outcome, now), now)
      );
    });
  }

  async requestCancel(id: number, now: number): Promise<JobRow | null> {
    return this.#write(now, () => {
      const row = this.#row(id);
      if (!row) return null;
      const m = cancelRequest(row, now);
      if (m === 'flag')
        this.#run('update cm_jobs set cancel_requested = 1, updated_at = ? where id = ?', now, id);
      else this.#apply(m, now);
      return this.#row(id) ?? null;
    });
  }

  async markCancelled(id: number, now: number): Promise<void> {
    await this.#write(now, () => {
      this.#apply(markCancelledMove(this.#row(id), now), now);
    });
  }

  async retry(id: number, now: number): Promise<JobRow | null> {
    return this.#write(now, () => {
      const row = this.#row(id);
      if (!row) return null;
      assertRetryable(row);
      const policyOf = (job: JobRow): FailurePolicy | null =>
        job.workflow_id === null
          ? null
          : (this.#get<{ on_failure: FailurePolicy }>(
              'select on_failure from cm_workflows where id = ?',
              job.workflow_id,
            )?.on_failure ?? null);
      const reset = (job: JobRow): boolean => {
        const parents = this.#all<{ state: JobState; condition: EdgeCondition }>(
          'select p.state, d.condition from cm_deps d join cm_jobs p on p.id = d.parent_id where d.job_id = ?',
          job.id,
        );
        return this.#apply(retryMove(job, parents, policyOf(job), now), now);
      };
      if (!reset(row)) throw blockedRetryError(id);
      // Dependents skipped because of this job wait for it again, transitively.
      const todo = [id];
      for (let parent = todo.pop(); parent !== undefined; parent = todo.pop()) {
        const skipped = this.#all<JobRow>(
          `select j.* from cm_deps d join cm_jobs j on j.id = d.job_id where d.parent_id = ? and j.state = 'skipped'`,
          parent,
        );
        for (const child of skipped) if (reset(child)) todo.push(child.id);
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
      // Kept: a finished job an open job still depends on (its outcome decides the child), and
      // the newest job and event (ids and seqs are max + 1: they must never be reused).
      const jobs = this.#run(
        `delete from cm_jobs where ended_at < ? and state in ${TERMINAL_SQL}
         and id < (select max(id) from cm_jobs)
         and not exists (select 1 from cm_deps d join cm_jobs c on c.id = d.job_id
           where d.parent_id = cm_jobs.id and ${OPEN_C})`,
        before,
      ).changes;
      this.#run(
        `delete from cm_workflows where done_at < ? and id < (select max(id) from cm_workflows)
         and not exists (select 1 from cm_jobs j where j.workflow_id = cm_workflows.id)`,
        before,
      );
      const events = this.#run(
        'delete from cm_events where at < ? and seq < (select max(seq) from cm_events)',
        before,
      ).changes;
      return { jobs, events };
    });
  }

  async events(after: number, limit: number): Promise<QueueEvent[]> {
    const rows = this.#all<EventRow>(
      'select * from cm_events where seq > ? order by seq limit ?',
      after,
      limit,
    );
    const last = rows.at(-1);
    if (last !== undefined && last.seq > this.#lastSeq) this.#lastSeq = last.seq;
    return rows.map(toEvent);
  }

  async lastEventSeq(): Promise<number> {
    return this.#get<{ seq: number | null }>('select max(seq) seq from cm_events')?.seq ?? 0;
  }

  // ---------------------------------------------------------------- live schedulers

  async heartbeat(row: SchedulerRow, forgetBefore: number): Promise<void> {
    await this.#write(row.heartbeat_at, () => {
      this.#run(SCHEDULER_UPSERT, ...schedulerUpsertValues(row));
      this.#run(
        'delete from cm_schedulers where heartbeat_at < ? and owner <> ?',
        forgetBefore,
        row.owner,
      );
    });
  }

  async removeScheduler(owner: string): Promise<void> {
    await this.#write(0, () => {
      this.#run('delete from cm_schedulers where owner = ?', owner);
    });
  }

  async schedulers(): Promise<SchedulerRow[]> {
    return this.#all<SchedulerRow>('select * from cm_schedulers order by started_at, owner');
  }

  async allTerminal(ids: readonly number[] | null): Promise<boolean> {
    const open =
      ids === null
        ? this.#get(`select 1 from cm_jobs where ${OPEN} limit 1`)
        : this.#get(
            `select 1 from cm_jobs where id in (select value from json_each(?)) and ${OPEN} limit 1`,
            JSON.stringify(ids),
          );
    return open === undefined;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stmts.clear();
    const checkpointer = this.#checkpointer;
    this.#checkpointer = null;
    await checkpointer?.stop();
    this.#db.close();
  }
}

/** What `checkSqliteStore` found. */
export interface SqliteCheckResult {
  /** The file, absolute. */
  readonly path: string;
  /** True when `PRAGMA integrity_check` answered `ok`. */
  readonly ok: boolean;
  /** The problems it listed (at most 100), empty when ok. */
  readonly problems: readonly string[];
}

/**
 * Runs SQLite's full `PRAGMA integrity_check` on a queue file, read-only (it reads every page:
 * seconds for a large file). Throws E_STORE naming the path when the file cannot be opened.
 */
export function checkSqliteStore(path: string): SqliteCheckResult {
  const where = resolve(path);
  let db: Db | null = null;
  try {
    db = new Database(where, { readonly: true, fileMustExist: true, timeout: INNER_BUSY_MS });
    const rows = db.pragma('integrity_check(100)') as { integrity_check: string }[];
    const problems = rows.map((r) => r.integrity_check).filter((m) => m !== 'ok');
    return { path: where, ok: problems.length === 0, problems };
  } catch (error) {
    throw sqliteError(error, where, 'integrity check');
  } finally {
    db?.close();
  }
}

/**
 * Copies a queue file to `dest` with SQLite's online backup API (pages in steps: the queue goes
 * on working meanwhile) and returns the pages copied. The copy holds every commit, including
 * those still in the `-wal` file. Throws E_STORE naming the path that failed.
 */
export async function backupSqliteStore(path: string, dest: string): Promise<number> {
  const where = resolve(path);
  if (existsSync(dest)) {
    throw new QueueError(
      'E_STORE',
      `SQLite backup: ${resolve(dest)} exists; refusing to overwrite it`,
      {
        details: { store: resolve(dest) },
      },
    );
  }
  let db: Db | null = null;
  try {
    db = new Database(where, { readonly: true, fileMustExist: true, timeout: INNER_BUSY_MS });
    const r = await db.backup(resolve(dest));
    return r.totalPages;
  } catch (error) {
    throw sqliteError(error, where, `backup to ${resolve(dest)}`);
  } finally {
    db?.close();
  }
}

/**
 * Makes `where` an empty SQLite database in WAL mode (one 4 KiB header page) atomically: written
 * under a temporary name and hard-linked into place. When another process linked first, its file
 * is kept and ours removed.
 */
function createEmptyDatabase(where: string, fail: (cause: unknown, what: string) => Error): void {
  const temp = `${where}.new-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const db = new Database(temp);
    try {
      db.pragma('journal_mode = WAL');
    } finally {
      db.close();
    }
    linkSync(temp, where);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== 'EEXIST') throw fail(cause, 'cannot create');
  } finally {
    rmSync(temp, { force: true });
    rmSync(`${temp}-wal`, { force: true });
    rmSync(`${temp}-shm`, { force: true });
  }
}
