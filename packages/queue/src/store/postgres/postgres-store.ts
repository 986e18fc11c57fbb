// The PostgreSQL store: `pg` Pool, schema applied by @crystalmath/migrate through kysely's
// PostgresDialect (advisory lock), hot paths as plain parameterised SQL. Every write is one
// short READ COMMITTED transaction; rows are locked before they are read-then-written, claims
// take the target's row lock before counting its live jobs, and event rows are inserted last
// under one advisory lock so their `seq` order is the commit order (see #commitEvents).

import { createHash } from 'node:crypto';
import { isTerminalRunnerState, ValidationError } from '@crystalmath/core';
import { Migrator } from '@crystalmath/migrate';
import { Kysely, PostgresDialect } from 'kysely';
import type {
  Client,
  ClientConfig,
  Pool,
  PoolClient,
  PoolConfig,
  QueryConfig,
  QueryResult,
} from 'pg';
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
import { type EventRow, type PendingEvent, toEvent } from '../event-row.js';
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
  submittedMove,
} from '../rules.js';
import {
  HANDLED_SQL,
  LIVE_SQL,
  OPEN_SQL,
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

type Param =
  | string
  | number
  | null
  | readonly string[]
  | readonly number[]
  | readonly (string | number | null)[];

/** Options of `postgresStore`. */
export interface PostgresStoreOptions {
  /** `postgres://user:password@host:port/database`. The password never appears in errors. */
  readonly connectionString: string;
  /** Connections in this process's pool. Default 5 (plus one for LISTEN while a scheduler runs). */
  readonly poolSize?: number;
  /**
   * Schema holding the queue's tables (created if missing), e.g. to keep several queues in one
   * database. Default: the connection's `search_path` (normally `public`).
   */
  readonly schema?: string;
  /** Longest wait for the migration lock on open. Default 60 000 ms. */
  readonly lockTimeoutMs?: number;
  /** Longest wait for a new connection (a silent host) before E_STORE. Default 10 000 ms. */
  readonly connectTimeoutMs?: number;
  /**
   * After this many jobs claimed through this store object, it runs `VACUUM (SKIP_LOCKED)
   * cm_jobs` in the background on a connection of its own (2 min deadline): every claim leaves
   * dead versions in the open-jobs index that later claims and polls walk through until a vacuum
   * removes them, and autovacuum may come a minute later. 0 turns it off. Default 25 000.
   */
  readonly vacuumEvery?: number;
  /** Called with the SQL of every statement the store executes (diagnostics, query-count tests). */
  readonly onQuery?: (sql: string) => void;
}

/** The NOTIFY channel: a payload-less wake-up for schedulers of the same database. */
export const NOTIFY_CHANNEL = 'cm_queue';
/** Advisory lock key held while a transaction inserts its event rows and commits. */
const EVENTS_LOCK = 0x636d5f65; // 'cm_e'
/** SQLSTATEs after which the whole transaction is run again: deadlock, serialization, unique. */
const RETRYABLE = new Set(['40P01', '40001', '23505']);
const MAX_TRIES = 8;
const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;
const VACUUM_EVERY = 25_000;
/** Deadline of the store's own VACUUM (statement_timeout on its connection). */
const VACUUM_TIMEOUT_MS = 120_000;

/**
 * The shared store: one PostgreSQL database for schedulers, producers and observers on several
 * hosts. Claims use `FOR UPDATE SKIP LOCKED` with the target's row locked, so per-target limits
 * stay exact with any number of schedulers; schedulers wake each other with `NOTIFY cm_queue`.
 * Needs the optional peer dependency `pg`.
 *
 * @example
 * const queue = await openQueue({
 *   store: postgresStore({ connectionString: 'postgres://cm@db.lan/crystalmath' }),
 *   targets,
 * });
 */
export function postgresStore(options: PostgresStoreOptions): QueueStoreFactory {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('store', 'postgresStore options must be an object');
  }
  const cs = options.connectionString;
  if (typeof cs !== 'string' || !/^postgres(ql)?:\/\//.test(cs)) {
    throw new ValidationError('store.connectionString', 'must be a postgres:// URL');
  }
  const size = options.poolSize;
  if (size !== undefined && (!Number.isInteger(size) || size < 1 || size > 100)) {
    throw new ValidationError('store.poolSize', 'must be an integer from 1 to 100');
  }
  const lock = options.lockTimeoutMs;
  if (lock !== undefined && (!Number.isFinite(lock) || lock < 0)) {
    throw new ValidationError('store.lockTimeoutMs', 'must be a non-negative number');
  }
  const connect = options.connectTimeoutMs;
  if (connect !== undefined && (!Number.isInteger(connect) || connect < 1)) {
    throw new ValidationError('store.connectTimeoutMs', 'must be a positive integer');
  }
  const vacuum = options.vacuumEvery;
  if (vacuum !== undefined && (!Number.isInteger(vacuum) || vacuum < 0)) {
    throw new ValidationError('store.vacuumEvery', 'must be a non-negative integer');
  }
  if (options.schema !== undefined && !SCHEMA.test(options.schema)) {
    throw new ValidationError('store.schema', 'must be a plain lower-case identifier');
  }
  const factory: StoreFactory = {
    dialect: 'postgres',
    description: describeUrl(cs) + (options.schema ? `#${options.schema}` : ''),
    open: () => PostgresStore.open(options),
  };
  return factory;
}

/** `postgres://user@host:port/db`: the URL without its password or query. */
function describeUrl(cs: string): string {
  try {
    const u = new URL(cs);
    const user = u.username ? `${decodeURIComponent(u.username)}@` : '';
    return `postgres://${user}${u.host}${u.pathname}`;
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

type PgModule = typeof import('pg');

/**
 * Maps a driver error to E_STORE naming the server (`where`: the URL without its password).
 * The cause is a COPY holding only the message and the codes: pg-pool hangs the client on its
 * errors (`error.client`), whose connection parameters hold the password.
 */
function storeError(error: unknown, where: string): unknown {
  if (error instanceof QueueError || error instanceof ValidationError) return error;
  if (error instanceof Error) {
    const cause = sanitized(error);
    const code = cause.code ? ` (${cause.code})` : '';
    return new QueueError('E_STORE', `PostgreSQL ${where}: ${error.message}${code}`, {
      cause,
      details: { store: where, ...(cause.code ? { code: cause.code } : {}) },
    });
  }
  return error;
}

/** A secret-free copy of a driver error: message, name, code and errno fields only. */
function sanitized(error: Error): Error & { code?: string } {
  const copy = new Error(error.message) as Error & Record<string, unknown>;
  copy.name = error.name;
  const e = error as unknown as Record<string, unknown>;
  for (const k of ['code', 'errno', 'syscall', 'address', 'port', 'severity', 'routine']) {
    const v = e[k];
    if (typeof v === 'string' || typeof v === 'number') copy[k] = v;
  }
  copy.stack = `${copy.name}: ${copy.message}`;
  return copy as Error & { code?: string };
}

/** A dropped client's late `error` event: nothing to do (the query it ran got the error). */
const ignoreClientError = (): void => undefined;

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

const statementNames = new Map<string, string>();

/**
 * A named statement: PostgreSQL parses and plans it once per connection instead of on every
 * call (the store's statements are a fixed set of texts; values are always parameters).
 */
function prepared(text: string, params: readonly Param[]): QueryConfig {
  let name = statementNames.get(text);
  if (name === undefined) {
    // A bound on what a connection keeps: past it, statements go unnamed (parsed each time).
    if (statementNames.size >= 500) return { text, values: params as unknown[] };
    name = `cm_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    statementNames.set(text, name);
  }
  return { name, text, values: params as unknown[] };
}

/** SQL types of the cm_jobs columns a transition may set, for typed `unnest` arrays. */
const COLUMN_TYPES: Readonly<Record<string, string>> = {
  handle: 'text',
  runner_status: 'text',
  reason: 'text',
  lease_owner: 'text',
  lease_until: 'bigint',
  started_at: 'bigint',
  ended_at: 'bigint',
  run_at: 'bigint',
  exit_code: 'integer',
  attempt_base: 'integer',
  cancel_requested: 'integer',
};

/** One write transaction: its client, the jobs it ended, the events it will write. */
class Tx {
  readonly ended: { id: number; state: JobState; workflow_id: number | null }[] = [];
  readonly touched = new Set<number>();
  readonly events: PendingEvent[] = [];
  /** Set when work became ready: NOTIFY on commit. */
  notify = false;
  /** The rows of the `#write` preamble, run with BEGIN. */
  preamble: Record<string, unknown>[] = [];
  /** The highest event seq a statement of this transaction inserted outside `events`. */
  seq = 0;

  constructor(
    readonly client: PoolClient,
    readonly now: number,
    readonly onQuery: ((sql: string) => void) | undefined,
  ) {}

  async all<T>(sql: string, ...params: Param[]): Promise<T[]> {
    this.onQuery?.(sql);
    return (await this.client.query(prepared(sql, params))).rows as T[];
  }

  async get<T>(sql: string, ...params: Param[]): Promise<T | undefined> {
    return (await this.all<T>(sql, ...params))[0];
  }

  async run(sql: string, ...params: Param[]): Promise<number> {
    this.onQuery?.(sql);
    return (await this.client.query(prepared(sql, params))).rowCount ?? 0;
  }

  event(
    type: string,
    job: number | null,
    wf: number | null,
    target: string | null,
    from: string | null,
    to: string | null,
    reason: string | null,
  ): void {
    this.events.push({
      at: this.now,
      type,
      job_id: job,
      workflow_id: wf,
      target,
      from_state: from as JobState | null,
      to_state: to as JobState | null,
      reason,
    });
    if (to === 'ready') this.notify = true;
  }

  /** The guarded transition plus its event; false (nothing written) when not in `from`. */
  async move(
    id: number,
    from: JobState,
    to: JobState,
    set: Record<string, string | number | null> = {},
    reason: string | null = null,
  ): Promise<boolean> {
    const cols = Object.keys(set);
    const params: Param[] = [to, this.now, ...cols.map((c) => set[c] ?? null), id, from];
    const n = cols.length;
    const sql = `update cm_jobs set state = $1, updated_at = $2${cols.map((c, i) => `, ${c} = $${i + 3}`).join('')}
      where id = $${n + 3} and state = $${n + 4} returning workflow_id, target`;
    const row = await this.get<{ workflow_id: number | null; target: string }>(sql, ...params);
    if (row === undefined) return false;
    this.event('job:state', id, row.workflow_id, row.target, from, to, reason);
    if (row.workflow_id !== null) this.touched.add(row.workflow_id);
    if (isTerminal(to)) this.ended.push({ id, state: to, workflow_id: row.workflow_id });
    return true;
  }

  /** `move` of a transition decided in rules.ts. */
  async apply(m: Move | null): Promise<boolean> {
    return m !== null && this.move(m.id, m.from, m.to, m.set, m.reason ?? null);
  }

  /**
   * Many guarded transitions in as few statements as there are distinct (from, to, columns)
   * shapes: one `UPDATE ... FROM unnest(...)` each, instead of a round trip per job. Same
   * result as calling `move` for each in order (events in the order given); returns the ids
   * that moved.
   */
  async moveMany(items: readonly Move[]): Promise<Set<number>> {
    const moved = new Set<number>();
    const groups = new Map<string, Move[]>();
    for (const m of items) {
      const cols = Object.keys(m.set ?? {}).sort();
      if (cols.some((c) => COLUMN_TYPES[c] === undefined)) {
        if (await this.move(m.id, m.from, m.to, m.set, m.reason ?? null)) moved.add(m.id);
        continue;
      }
      const key = `${m.from}>${m.to}>${cols.join(',')}`;
      const group = groups.get(key) ?? [];
      group.push(m);
      groups.set(key, group);
    }
    const rowsById = new Map<number, { workflow_id: number | null; target: string }>();
    for (const group of groups.values()) {
      const { from, to } = group[0]!;
      const cols = Object.keys(group[0]!.set ?? {}).sort();
      const arrays: Param[] = [
        group.map((m) => m.id),
        ...cols.map((c) => group.map((m) => (m.set?.[c] ?? null) as string | number | null)),
      ];
      const types = ['bigint', ...cols.map((c) => COLUMN_TYPES[c]!)];
      const rows = await this.all<{ id: number; workflow_id: number | null; target: string }>(
        `update cm_jobs j set state = $1, updated_at = $2${cols.map((c) => `, ${c} = u.${c}`).join('')}
         from unnest(${types.map((t, i) => `$${i + 4}::${t}[]`).join(', ')}) as u(id${cols.map((c) => `, ${c}`).join('')})
         where j.id = u.id and j.state = $3
         returning j.id, j.workflow_id, j.target`,
        to,
        this.now,
        from,
        ...arrays,
      );
      for (const r of rows) rowsById.set(Number(r.id), r);
    }
    for (const m of items) {
      const row = rowsById.get(m.id);
      if (row === undefined) continue;
      moved.add(m.id);
      this.event('job:state', m.id, row.workflow_id, row.target, m.from, m.to, m.reason ?? null);
      if (row.workflow_id !== null) this.touched.add(row.workflow_id);
      if (isTerminal(m.to))
        this.ended.push({ id: m.id, state: m.to, workflow_id: row.workflow_id });
    }
    return moved;
  }

  /** The row, locked for this transaction (so a read-then-write cannot race another writer). */
  async lockRow(id: number): Promise<JobRow | undefined> {
    return this.get<JobRow>('select * from cm_jobs where id = $1 for update', id);
  }

  /**
   * Releases or skips the dependents of every job ended in this transaction, transitively. The
   * child row is locked before its open parents are counted: two transactions ending two
   * parents of one child serialise there, and the second counts after the first committed.
   */
  async settle(): Promise<void> {
    // Round by round, every job ended so far at once: two queries per round, not per job.
    while (this.ended.length > 0) {
      const ended = this.ended.splice(0).map((e) => e.id);
      const children = await this.all<{
        id: number;
        run_at: number;
        on_failure: FailurePolicy | null;
      }>(
        `select j.id, j.run_at, w.on_failure from cm_jobs j
         left join cm_workflows w on w.id = j.workflow_id
         where j.id in (select d.job_id from cm_deps d where d.parent_id = any($1::bigint[]))
           and j.state = 'waiting'
         order by j.id for update of j`,
        ended,
      );
      if (children.length === 0) continue;
      // Judged on ALL their parents: another one may have ended in this same transaction.
      const parents = new Map<
        number,
        { id: number; state: JobState; condition: EdgeCondition; workflow_key: string | null }[]
      >();
      for (const p of await this.all<{
        job_id: number;
        id: number;
        state: JobState;
        condition: EdgeCondition;
        workflow_key: string | null;
      }>(
        `select d.job_id, p.id, p.state, d.condition, p.workflow_key from cm_deps d join cm_jobs p on p.id = d.parent_id
         where d.job_id = any($1::bigint[]) order by d.job_id, p.id`,
        children.map((c) => c.id),
      )) {
        const list = parents.get(Number(p.job_id)) ?? [];
        list.push(p);
        parents.set(Number(p.job_id), list);
      }
      const moves: Move[] = [];
      for (const child of children) {
        const m = dependentMove(
          child,
          parents.get(Number(child.id)) ?? [],
          child.on_failure,
          this.now,
        );
        if (m !== null) moves.push(m);
      }
      await this.moveMany(moves); // skipped ones join `ended` for the next round
    }
    for (const wf of [...this.touched].sort((a, b) => a - b)) {
      const open = await this.get(
        `select 1 from cm_jobs where workflow_id = $1 and state in ${OPEN_SQL} limit 1`,
        wf,
      );
      if (
        open === undefined &&
        (await this.run(
          'update cm_workflows set done_at = $1 where id = $2 and done_at is null',
          this.now,
          wf,
        )) === 1
      ) {
        this.event('workflow:done', null, wf, null, null, null, null);
      }
    }
    this.touched.clear();
  }
}

export class PostgresStore implements QueueStore {
  readonly dialect = 'postgres' as const;
  readonly storeId: string;
  readonly #pool: Pool;
  readonly #pg: PgModule;
  readonly #clientConfig: ClientConfig;
  /** The server as errors name it: `postgres://user@host:port/db`, never the password. */
  readonly #where: string;
  readonly #onQuery: ((sql: string) => void) | undefined;
  readonly #listeners = new Set<() => Promise<void>>();
  readonly #vacuumEvery: number;
  /** Jobs claimed through this object since its last VACUUM started. */
  #claimedSinceVacuum = 0;
  #vacuuming: Promise<void> | null = null;
  #closed = false;
  #lastSeq: number;

  private constructor(
    pg: PgModule,
    pool: Pool,
    clientConfig: ClientConfig,
    where: string,
    storeId: string,
    lastSeq: number,
    onQuery: ((sql: string) => void) | undefined,
    vacuumEvery: number,
  ) {
    this.#pg = pg;
    this.#pool = pool;
    this.#clientConfig = clientConfig;
    this.#where = where;
    this.storeId = storeId;
    this.#lastSeq = lastSeq;
    this.#onQuery = onQuery;
    this.#vacuumEvery = vacuumEvery;
  }

  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Connects, applies the queue's migrations (advisory-locked), and returns the store. */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    let pg: PgModule;
    try {
      // A dynamic import: `pg` is an optional peer, needed only by users of this store.
      const mod = (await import('pg')) as PgModule & { default?: PgModule };
      pg = mod.default ?? mod;
    } catch (cause) {
      throw new QueueError(
        'E_STORE',
        'postgresStore needs the "pg" package: install it next to @crystalmath/queue',
        { cause },
      );
    }
    const base = pg.types;
    // bigint columns (ids, epoch ms, count(*)) as JS numbers: they stay far below 2^53.
    const types = {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === 20 && format !== 'binary'
          ? (v: string) => Number(v)
          : base.getTypeParser(oid, format as 'text')) as typeof base.getTypeParser,
    };
    const clientConfig: ClientConfig = {
      connectionString: options.connectionString,
      types,
      application_name: 'crystalmath-queue',
      ...(options.schema !== undefined ? { options: `-c search_path=${options.schema}` } : {}),
    };
    const where = describeUrl(options.connectionString);
    const poolConfig: PoolConfig = {
      ...clientConfig,
      max: options.poolSize ?? 5,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    };
    const pool = new pg.Pool(poolConfig);
    // An idle client whose server went away emits here; the next query reconnects.
    pool.on('error', ignoreClientError);
    // pg-pool detaches its own listener while a client is checked out: a connection lost in the
    // middle of a transaction would then emit an unhandled `error` and end the process. Every
    // client gets one for life; the query in flight rejects with the error and #write wraps it.
    pool.on('connect', (client) => client.on('error', ignoreClientError));
    try {
      if (options.schema !== undefined)
        // Two processes creating it at once: one of them gets a duplicate error, harmlessly.
        await pool.query(`create schema if not exists ${options.schema}`).catch((e: unknown) => {
          if (sqlState(e) !== '23505' && sqlState(e) !== '42P06') throw e;
        });
      const kysely = new Kysely({ dialect: new PostgresDialect({ pool }) });
      await new Migrator({
        db: kysely,
        source: queueMigrations,
        lockTimeoutMs: options.lockTimeoutMs ?? 60_000,
      }).migrate();
      const id = (await import('node:crypto')).randomBytes(3).toString('hex');
      await pool.query(
        'insert into cm_meta (id, store_id, paused) values (1, $1, 0) on conflict (id) do nothing',
        [id],
      );
      const meta = await pool.query<{ store_id: string }>(
        'select store_id from cm_meta where id = 1',
      );
      const seq = await pool.query<{ seq: number | null }>('select max(seq) seq from cm_events');
      return new PostgresStore(
        pg,
        pool,
        clientConfig,
        where,
        meta.rows[0]!.store_id,
        seq.rows[0]?.seq ?? 0,
        options.onQuery,
        options.vacuumEvery ?? VACUUM_EVERY,
      );
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw storeError(error, where);
    }
  }

  // ---------------------------------------------------------------- plumbing

  #assertOpen(): void {
    if (this.#closed) throw new QueueError('E_QUEUE_CLOSED', 'the store is closed');
  }

  /**
   * Counts claimed jobs and, every `vacuumEvery`, vacuums cm_jobs in the background: a claimed
   * job leaves dead versions of its row in the open-jobs index (ready, submitting, queued, ...
   * each state change is a new version), and until a vacuum removes them every claim, poll and
   * lease scan walks through them (measured: 1 000 index pages per claim beside 100 000 finished
   * jobs, against 4 after a vacuum). SKIP_LOCKED: when another process is vacuuming it, this
   * one does nothing. Never inside a transaction, on its own connection, with a deadline; a
   * failure (or a role that does not own the table, which PostgreSQL only warns about) changes
   * nothing but the speed, so it is not reported.
   */
  #countClaimed(n: number): void {
    if (this.#vacuumEvery === 0 || n === 0) return;
    this.#claimedSinceVacuum += n;
    if (this.#claimedSinceVacuum < this.#vacuumEvery || this.#vacuuming || this.#closed) return;
    this.#claimedSinceVacuum = 0;
    this.#onQuery?.('vacuum (skip_locked) cm_jobs');
    const client = new this.#pg.Client({
      ...this.#clientConfig,
      statement_timeout: VACUUM_TIMEOUT_MS,
      connectionTimeoutMillis: 10_000,
    });
    this.#vacuuming = (async () => {
      try {
        await client.connect();
        await client.query('vacuum (skip_locked) cm_jobs');
      } catch {
        // Only the speed depends on it (see above).
      } finally {
        await client.end().catch(() => undefined);
        this.#vacuuming = null;
      }
    })();
  }

  async #all<T>(sql: string, ...params: Param[]): Promise<T[]> {
    this.#assertOpen();
    this.#onQuery?.(sql);
    try {
      return (await this.#pool.query(prepared(sql, params))).rows as T[];
    } catch (error) {
      throw storeError(error, this.#where);
    }
  }

  async #get<T>(sql: string, ...params: Param[]): Promise<T | undefined> {
    return (await this.#all<T>(sql, ...params))[0];
  }

  /**
   * One short transaction on a pooled client; dependents of the jobs it ends are settled and
   * its events written before it commits. Run again from the start after a deadlock or a
   * unique-key race (another process inserted the same idempotency key first).
   */
  /**
   * One transaction around `fn`, retried on deadlock, serialization and unique violations.
   * `preamble` (SQL text without parameters) goes out with BEGIN in one round trip, its rows in
   * `tx.preamble`; NOTIFY goes out with COMMIT. Round trips are what a PostgreSQL write costs.
   */
  async #write<T>(now: number, fn: (tx: Tx) => Promise<T>, preamble?: string): Promise<T> {
    this.#assertOpen();
    for (let attempt = 1; ; attempt++) {
      let client: PoolClient;
      try {
        client = await this.#pool.connect();
      } catch (error) {
        throw storeError(error, this.#where);
      }
      let broken = false;
      try {
        this.#onQuery?.('begin');
        const tx = new Tx(client, now, this.#onQuery);
        if (preamble === undefined) await client.query('begin');
        else {
          this.#onQuery?.(preamble);
          const results = (await client.query(`begin; ${preamble}`)) as unknown as QueryResult[];
          tx.preamble = results[1]?.rows ?? [];
        }
        const result = await fn(tx);
        await tx.settle();
        const seq = Math.max(tx.seq, await this.#commitEvents(tx));
        this.#onQuery?.('commit');
        if (tx.notify) {
          this.#onQuery?.('notify');
          await client.query(`select pg_notify('${NOTIFY_CHANNEL}', ''); commit`);
        } else await client.query('commit');
        if (seq > this.#lastSeq) this.#lastSeq = seq;
        return result;
      } catch (error) {
        try {
          await client.query('rollback');
        } catch {
          broken = true;
        }
        const state = sqlState(error);
        if (state !== undefined && RETRYABLE.has(state) && attempt < MAX_TRIES) {
          await new Promise((r) => setTimeout(r, Math.random() * 5 * attempt));
          continue;
        }
        throw storeError(error, this.#where);
      } finally {
        client.release(broken);
      }
    }
  }

  /**
   * Inserts the transaction's events last, holding one advisory lock until commit: sequence
   * values are handed out at insert time, so without it a reader could see seq 10 committed
   * while seq 9 is still in flight, and skip 9 for good. The lock is held only for this insert
   * and the commit; the rest of the transaction runs concurrently with other writers.
   */
  async #commitEvents(tx: Tx): Promise<number> {
    if (tx.events.length === 0) return 0;
    const col = <K extends keyof PendingEvent>(k: K) => tx.events.map((e) => e[k]);
    // The lock in the same statement: every row inserted is joined with the lock's one row, so
    // the lock is held before the first `seq` is drawn, whatever order the planner picks.
    // Only the highest seq comes back: one row, not one per event.
    const rows = await tx.all<{ seq: number }>(
      `with l as materialized (select pg_advisory_xact_lock($9) locked),
       ins as (
         insert into cm_events (at, type, job_id, workflow_id, target, from_state, to_state, reason)
         select at, type, job_id, workflow_id, target, from_state, to_state, reason
         from l, unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
           with ordinality as e(at, type, job_id, workflow_id, target, from_state, to_state, reason, ord)
         order by ord returning seq)
       select max(seq) seq from ins`,
      col('at'),
      col('type'),
      col('job_id'),
      col('workflow_id'),
      col('target'),
      col('from_state'),
      col('to_state'),
      col('reason'),
      EVENTS_LOCK,
    );
    return rows.reduce((m, r) => Math.max(m, r.seq), 0);
  }

  // ---------------------------------------------------------------- producer

  async insertJobs(
    jobs: readonly NewJob[],
    workflow: NewWorkflow | null,
    now: number,
  ): Promise<InsertResult> {
    // One row whatever the batch size: the ids as one comma-separated text.
    const draw = `select string_agg(nextval(pg_get_serial_sequence('cm_jobs', 'id'))::text, ',') ids from generate_series(1, ${jobs.length})`;
    return this.#write(
      now,
      async (tx) => {
        const result: InsertResult = { ids: [], states: [], existing: [], workflowId: null };
        if (workflow?.idempotencyKey) {
          const wf = await tx.get<{ id: number }>(
            'select id from cm_workflows where idempotency_key = $1',
            workflow.idempotencyKey,
          );
          if (wf) {
            const rows = await tx.all<{ id: number; state: JobState }>(
              'select id, state from cm_jobs where workflow_id = $1 order by id',
              wf.id,
            );
            return existingWorkflow(wf.id, rows);
          }
        }
        if (workflow) {
          const wf = await tx.get<{ id: number }>(
            `insert into cm_workflows (name, on_failure, idempotency_key, metadata, created_at)
           values ($1, $2, $3, $4, $5) returning id`,
            workflow.name,
            workflow.onFailure,
            workflow.idempotencyKey,
            workflow.metadata,
            now,
          );
          result.workflowId = wf!.id;
          tx.event('workflow:created', null, result.workflowId, null, null, null, null);
        }
        const policy = workflow?.onFailure ?? null;
        // A constant number of statements whatever the batch size: existing idempotency keys and
        // existing parents are read in one query each, ids come from the sequence in one, and
        // jobs, edges and tags go in as one `unnest` INSERT each.
        const keys = [...new Set(jobs.map((j) => j.idempotencyKey).filter((k) => k !== null))];
        const byKey = new Map(
          keys.length === 0
            ? []
            : (
                await tx.all<{
                  id: number;
                  state: JobState;
                  spec: string;
                  target: string;
                  idempotency_key: string;
                }>(
                  'select id, state, spec, target, idempotency_key from cm_jobs where idempotency_key = any($1::text[])',
                  keys,
                )
              ).map((r) => [r.idempotency_key, r]),
        );
        // FOR SHARE, in id order: a transaction ending one of these parents waits for our commit,
        // then sees the new dependent when it settles (or we wait for it and see the parent ended).
        const parentIds = [
          ...new Set(
            jobs.flatMap((j) => j.deps.map((d) => d.parent)).filter((p) => typeof p === 'number'),
          ),
        ].sort((a, b) => a - b);
        const parentState = new Map(
          parentIds.length === 0
            ? []
            : (
                await tx.all<{ id: number; state: JobState }>(
                  'select id, state from cm_jobs where id = any($1::bigint[]) order by id for share',
                  parentIds,
                )
              ).map((r) => [Number(r.id), r.state]),
        );
        // Ids were drawn with BEGIN, one per job (a job that turns out to exist leaves a gap, as
        // any rolled-back insert does); ascending, so the batch keeps its order.
        const drawn = String(tx.preamble[0]?.ids ?? '');
        const ids = drawn
          .split(',')
          .map(Number)
          .sort((a, b) => a - b);
        const rows: (NewJob & { id: number; state: JobState; reason: string | null })[] = [];
        const deps: { job: number; parent: number; condition: EdgeCondition }[] = [];
        const tags: { job: number; tag: string }[] = [];
        const batchKeys = new Map<
          string,
          { id: number; state: JobState; spec: string; target: string }
        >();
        for (const job of jobs) {
          if (job.idempotencyKey !== null) {
            const found = byKey.get(job.idempotencyKey) ?? batchKeys.get(job.idempotencyKey);
            if (found) {
              assertSameDefinition(found, job);
              result.ids.push(Number(found.id));
              result.states.push(found.state);
              result.existing.push(true);
              continue;
            }
          }
          const id = ids[rows.length]!;
          const { state, skip, parents } = planNewJob(
            job,
            result,
            (parent) => parentState.get(parent),
            policy,
          );
          for (const p of parents) deps.push({ job: id, parent: p.id, condition: p.condition });
          rows.push({ ...job, id, state, reason: skip });
          if (job.tags.length > 0) for (const tag of new Set(job.tags)) tags.push({ job: id, tag });
          if (job.idempotencyKey !== null)
            batchKeys.set(job.idempotencyKey, { id, state, spec: job.spec, target: job.target });
          if (result.workflowId !== null) tx.touched.add(result.workflowId);
          result.ids.push(id);
          result.states.push(state);
          result.existing.push(false);
        }
        // A plain batch (no workflow, no dependency, no tag, nothing skipped) is one statement:
        // its rows as one JSON parameter, inserted with their `job:state` events under the
        // events lock (see #commitEvents), nothing written after it but COMMIT.
        if (
          rows.length > 0 &&
          workflow === null &&
          deps.length === 0 &&
          tags.length === 0 &&
          tx.events.length === 0 &&
          rows.every((r) => r.state !== 'skipped')
        ) {
          if (rows.some((r) => r.state === 'ready')) tx.notify = true;
          const seq = await tx.get<{ seq: number | string | null }>(
            `with l as materialized (select pg_advisory_xact_lock($3) locked),
             j as (
               insert into cm_jobs (id, name, state, target, priority, spec, workflow_id, workflow_key,
                 max_attempts, backoff, run_at, idempotency_key, tags, metadata, reason, created_at,
                 updated_at, ended_at)
               select id, name, state, target, priority, spec, null, workflow_key, max_attempts,
                 backoff, run_at, idempotency_key, tags, metadata, reason, $2::bigint, $2::bigint, null
               from json_to_recordset($1::json) as u(id bigint, name text, state text, target text,
                 priority integer, spec text, workflow_key text, max_attempts integer, backoff text,
                 run_at bigint, idempotency_key text, tags text, metadata text, reason text)
               returning id, target, state, reason),
             e as (
               insert into cm_events (at, type, job_id, workflow_id, target, from_state, to_state, reason)
               select $2::bigint, 'job:state', j.id, null, j.target, null, j.state, j.reason
               from l, j order by j.id returning seq)
             select max(seq) seq from e`,
            JSON.stringify(
              rows.map((r) => ({
                id: r.id,
                name: r.name,
                state: r.state,
                target: r.target,
                priority: r.priority,
                spec: r.spec,
                workflow_key: r.workflowKey,
                max_attempts: r.maxAttempts,
                backoff: r.backoff,
                run_at: r.runAt,
                idempotency_key: r.idempotencyKey,
                tags: r.tags.length === 0 ? '[]' : JSON.stringify(r.tags),
                metadata: r.metadata,
                reason: r.reason,
              })),
            ),
            now,
            EVENTS_LOCK,
          );
          tx.seq = Number(seq?.seq ?? 0);
          return result;
        }
        for (const r of rows)
          tx.event('job:state', r.id, result.workflowId, r.target, null, r.state, r.reason);
        if (rows.length > 0) {
          const col = <T>(f: (r: (typeof rows)[number]) => T): T[] => rows.map(f);
          await tx.run(
            `insert into cm_jobs (id, name, state, target, priority, spec, workflow_id, workflow_key,
             max_attempts, backoff, run_at, idempotency_key, tags, metadata, reason, created_at, updated_at, ended_at)
           select id, name, state, target, priority, spec, $1::bigint, workflow_key, max_attempts, backoff,
             run_at, idempotency_key, tags, metadata, reason, $2::bigint, $2::bigint,
             case when state = 'skipped' then $2::bigint end
           from unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::integer[], $8::text[],
             $9::text[], $10::integer[], $11::text[], $12::bigint[], $13::text[], $14::text[], $15::text[], $16::text[])
             as u(id, name, state, target, priority, spec, workflow_key, max_attempts, backoff, run_at,
               idempotency_key, tags, metadata, reason)`,
            result.workflowId,
            now,
            col((r) => r.id),
            col((r) => r.name),
            col((r) => r.state),
            col((r) => r.target),
            col((r) => r.priority),
            col((r) => r.spec),
            col((r) => r.workflowKey),
            col((r) => r.maxAttempts),
            col((r) => r.backoff),
            col((r) => r.runAt),
            col((r) => r.idempotencyKey),
            col((r) => (r.tags.length === 0 ? '[]' : JSON.stringify(r.tags))),
            col((r) => r.metadata),
            col((r) => r.reason),
          );
        }
        if (deps.length > 0)
          await tx.run(
            `insert into cm_deps (job_id, parent_id, condition)
           select * from unnest($1::bigint[], $2::bigint[], $3::text[])`,
            deps.map((d) => d.job),
            deps.map((d) => d.parent),
            deps.map((d) => d.condition),
          );
        if (tags.length > 0)
          await tx.run(
            'insert into cm_tags (job_id, tag) select * from unnest($1::bigint[], $2::text[])',
            tags.map((t) => t.job),
            tags.map((t) => t.tag),
          );
        return result;
      },
      draw,
    );
  }

  // ---------------------------------------------------------------- read

  async getJobs(ids: readonly number[]): Promise<JobRow[]> {
    if (ids.length === 0) return [];
    return this.#all<JobRow>('select * from cm_jobs where id = any($1::bigint[])', ids);
  }

  async depsOf(ids: readonly number[]): Promise<DepRow[]> {
    if (ids.length === 0) return [];
    return this.#all<DepRow>(
      'select job_id, parent_id, condition from cm_deps where job_id = any($1::bigint[]) order by job_id, parent_id',
      ids,
    );
  }

  async list(filter: ListFilter, fromId: number, limit: number): Promise<JobRow[]> {
    const newest = filter.order === 'newest';
    const params: Param[] = [fromId];
    const where = [newest ? 'j.id < $1' : 'j.id > $1'];
    const add = (clause: (n: string) => string, value: Param): void => {
      params.push(value);
      where.push(clause(`$${params.length}`));
    };
    if (filter.state !== undefined) {
      const states = Array.isArray(filter.state) ? filter.state : [filter.state];
      add((p) => `j.state = any(${p}::text[])`, states as readonly string[]);
    }
    if (filter.target !== undefined) add((p) => `j.target = ${p}`, filter.target);
    if (filter.workflow !== undefined) add((p) => `j.workflow_id = ${p}`, Number(filter.workflow));
    if (filter.tag !== undefined)
      add((p) => `j.id in (select job_id from cm_tags where tag = ${p})`, filter.tag);
    params.push(limit);
    return this.#all<JobRow>(
      `select j.* from cm_jobs j where ${where.join(' and ')} order by j.id ${newest ? 'desc' : 'asc'} limit $${params.length}`,
      ...params,
    );
  }

  async counts(): Promise<{ state: JobState; target: string; n: number }[]> {
    return this.#all('select state, target, count(*) n from cm_jobs group by state, target');
  }

  async workflowRow(id: number): Promise<WorkflowRow | null> {
    return (
      (await this.#get<WorkflowRow>(
        'select id, name, on_failure, created_at from cm_workflows where id = $1',
        id,
      )) ?? null
    );
  }

  async listWorkflows(
    beforeId: number,
    limit: number,
  ): Promise<(WorkflowRow & { done_at: number | null })[]> {
    return this.#all(
      'select id, name, on_failure, created_at, done_at from cm_workflows where id < $1 order by id desc limit $2',
      beforeId,
      limit,
    );
  }

  async workflowJobs(id: number): Promise<JobRow[]> {
    return this.#all<JobRow>('select * from cm_jobs where workflow_id = $1 order by id', id);
  }

  // ---------------------------------------------------------------- targets

  async ensureTargets(
    targets: readonly { name: string; maxConcurrent?: number | null; paused?: boolean }[],
  ): Promise<void> {
    if (targets.length === 0) return;
    await this.#write(0, async (tx) => {
      for (const t of [...targets].sort((a, b) => (a.name < b.name ? -1 : 1))) {
        await tx.run(
          'insert into cm_targets (name, max_concurrent, paused) values ($1, $2, $3) on conflict (name) do nothing',
          t.name,
          t.maxConcurrent ?? null,
          t.paused ? 1 : 0,
        );
        if (t.maxConcurrent !== undefined)
          await tx.run(
            'update cm_targets set max_concurrent = $1 where name = $2',
            t.maxConcurrent,
            t.name,
          );
        if (t.paused !== undefined)
          await tx.run(
            'update cm_targets set paused = $1 where name = $2',
            t.paused ? 1 : 0,
            t.name,
          );
      }
    });
  }

  async targets(): Promise<TargetRow[]> {
    return this.#all<TargetRow>(
      `select t.name, t.max_concurrent, t.paused,
        (select count(*) from cm_jobs j where j.target = t.name and j.state in ${LIVE_SQL}) active,
        (select json_agg(json_build_object('owner', s.owner, 'heartbeat_at', s.heartbeat_at,
            'heartbeat_ms', s.heartbeat_ms, 'health', s.health))::text
         from cm_schedulers s where s.targets::jsonb ? t.name) schedulers
       from cm_targets t order by t.name`,
    );
  }

  async setTarget(
    name: string,
    patch: { maxConcurrent?: number | null; paused?: boolean },
    now: number,
  ): Promise<void> {
    await this.#write(now, async (tx) => {
      if (
        (await tx.get('select 1 from cm_targets where name = $1 for update', name)) === undefined
      ) {
        throw new QueueError('E_QUEUE_UNKNOWN_TARGET', `unknown target "${name}"`, {
          details: { field: 'target', target: name },
        });
      }
      if (patch.maxConcurrent !== undefined) {
        await tx.run(
          'update cm_targets set max_concurrent = $1 where name = $2',
          patch.maxConcurrent,
          name,
        );
        // The new limit travels in `reason` (the event table has no column of its own for it).
        tx.event(
          'target:limit',
          null,
          null,
          name,
          null,
          null,
          patch.maxConcurrent === null ? null : String(patch.maxConcurrent),
        );
        tx.notify = true;
      }
      if (patch.paused !== undefined) {
        await tx.run(
          'update cm_targets set paused = $1 where name = $2',
          patch.paused ? 1 : 0,
          name,
        );
        tx.event(
          patch.paused ? 'queue:paused' : 'queue:resumed',
          null,
          null,
          name,
          null,
          null,
          null,
        );
        if (!patch.paused) tx.notify = true;
      }
    });
  }

  async setQueuePaused(paused: boolean, now: number): Promise<void> {
    await this.#write(now, async (tx) => {
      await tx.run('update cm_meta set paused = $1 where id = 1', paused ? 1 : 0);
      tx.event(paused ? 'queue:paused' : 'queue:resumed', null, null, null, null, null, null);
      if (!paused) tx.notify = true;
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
    return this.#write(now, async (tx) => {
      // The targets' rows locked, in name order: claims of one target serialise here, and the
      // live count below (a fresh snapshot under READ COMMITTED) includes every earlier claim.
      // None when the whole queue is paused.
      const slots = await tx.all<{ name: string; max_concurrent: number | null }>(
        `select name, max_concurrent from cm_targets
         where paused = 0 and name = any($1::text[])
           and exists (select 1 from cm_meta where id = 1 and paused = 0)
         order by name for update of cm_targets`,
        targets,
      );
      const claimed: JobRow[] = [];
      for (const t of slots) {
        const room = limit - claimed.length;
        let free = room;
        if (t.max_concurrent !== null) {
          const live = await tx.get<{ n: number }>(
            `select count(*) n from cm_jobs where target = $1 and state in ${LIVE_SQL}`,
            t.name,
          );
          free = Math.min(room, t.max_concurrent - (live?.n ?? 0));
        }
        if (free <= 0) continue;
        const ready = await tx.all<{ id: number }>(
          `select id from cm_jobs where state = 'ready' and target = $1 and run_at <= $2
           order by priority desc, id limit $3 for update skip locked`,
          t.name,
          now,
          free,
        );
        if (ready.length === 0) continue;
        const rows = await tx.all<JobRow>(
          `update cm_jobs set state = 'submitting', updated_at = $1, attempt = attempt + 1,
             lease_owner = $2, lease_until = $3
           where id = any($4::bigint[]) and state = 'ready' returning *`,
          now,
          owner,
          now + leaseMs,
          ready.map((r) => r.id),
        );
        const byId = new Map(rows.map((r) => [r.id, r]));
        for (const { id } of ready) {
          const row = byId.get(id);
          if (row === undefined) continue;
          tx.event('job:state', id, row.workflow_id, row.target, 'ready', 'submitting', null);
          if (row.workflow_id !== null) tx.touched.add(row.workflow_id);
          claimed.push(row);
        }
        if (claimed.length >= limit) break;
      }
      return claimed;
    }).then((claimed) => {
      this.#countClaimed(claimed.length);
      return claimed;
    });
  }

  async recordSubmitted(
    results: readonly SubmittedResult[],
    owner: string,
    now: number,
  ): Promise<SubmittedResult[]> {
    if (results.length === 0) return [];
    return this.#write(now, async (tx) => {
      const toCancel: SubmittedResult[] = [];
      const sorted = [...results].sort((a, b) => a.id - b.id);
      // Locked in id order, like every multi-row lock here, so writers cannot deadlock.
      const rows = new Map(
        (
          await tx.all<JobRow>(
            'select * from cm_jobs where id = any($1::bigint[]) order by id for update',
            sorted.map((r) => r.id),
          )
        ).map((r) => [Number(r.id), r]),
      );
      const moves: Move[] = [];
      for (const r of sorted) {
        const row = rows.get(r.id);
        if (row === undefined) continue;
        if (!holdsClaim(row, r.attempt, owner)) {
          // Another scheduler recovered the claim: it adopted this very submission (same job key)
          // through find(), unless the job was cancelled meanwhile.
          if (row.state === 'cancelled' && row.attempt === r.attempt) toCancel.push(r);
          continue;
        }
        moves.push(submittedMove(r));
        if (row.cancel_requested) toCancel.push(r);
      }
      await tx.moveMany(moves);
      // In the caller's order, as the SQLite store returns them.
      return results.filter((r) => toCancel.includes(r));
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
    await this.#write(now, async (tx) => {
      const row = await tx.lockRow(id);
      if (holdsClaim(row, attempt, owner))
        await tx.apply(submitFailedMove(row, reason, retryAt, now));
    });
  }

  async renewLeases(
    ids: readonly number[],
    owner: string,
    until: number,
    _now: number,
  ): Promise<number> {
    if (ids.length === 0) return 0;
    this.#assertOpen();
    // One statement, so no transaction of its own: it changes no state and writes no event.
    const sql = `update cm_jobs set lease_until = $1 where lease_owner = $2 and state = 'submitting'
      and id = any($3::bigint[])`;
    this.#onQuery?.(sql);
    try {
      return (await this.#pool.query(prepared(sql, [until, owner, ids]))).rowCount ?? 0;
    } catch (error) {
      throw storeError(error, this.#where);
    }
  }

  async liveJobs(targets: readonly string[]): Promise<JobRow[]> {
    if (targets.length === 0) return [];
    return this.#all<JobRow>(
      `select * from cm_jobs where state in ${HANDLED_SQL} and target = any($1::text[]) order by id`,
      targets,
    );
  }

  async applyStatuses(
    updates: readonly StatusUpdate[],
    retry: RetryPolicy,
    now: number,
  ): Promise<void> {
    if (updates.length === 0) return;
    await this.#write(now, async (tx) => {
      const rows = new Map(
        (
          await tx.all<JobRow>(
            'select * from cm_jobs where id = any($1::bigint[]) order by id for update',
            updates.map((u) => u.id),
          )
        ).map((r) => [r.id, r]),
      );
      const moves: Move[] = [];
      const notes: { id: number; state: JobState; runnerStatus: string; reason: string | null }[] =
        [];
      for (const u of updates) {
        const row = rows.get(u.id);
        if (
          !row ||
          row.attempt !== u.attempt ||
          (row.state !== 'queued' && row.state !== 'running')
        )
          continue;
        if (u.collect === true && isTerminalRunnerState(u.status.state)) {
          moves.push(collectingMove(row, u.status, now));
          continue;
        }
        const d = decideStatus(row, u.status, retry, now);
        if (d.kind === 'move')
          moves.push({ id: row.id, from: row.state, to: d.to, set: d.set, reason: d.reason });
        else if (d.kind === 'note')
          notes.push({
            id: row.id,
            state: row.state,
            runnerStatus: d.runnerStatus,
            reason: d.reason,
          });
      }
      await tx.moveMany(moves);
      if (notes.length > 0)
        await tx.run(
          `update cm_jobs j set runner_status = u.runner_status, reason = u.reason, updated_at = $1
           from unnest($2::bigint[], $3::text[], $4::text[], $5::text[]) as u(id, state, runner_status, reason)
           where j.id = u.id and j.state = u.state`,
          now,
          notes.map((n) => n.id),
          notes.map((n) => n.state),
          notes.map((n) => n.runnerStatus),
          notes.map((n) => n.reason),
        );
    });
  }

  async collectingJobs(targets: readonly string[]): Promise<JobRow[]> {
    if (targets.length === 0) return [];
    return this.#all<JobRow>(
      `select * from cm_jobs where state = 'collecting' and target = any($1::text[]) order by id`,
      targets,
    );
  }

  async finishCollect(
    outcome: CollectOutcome,
    retry: RetryPolicy,
    now: number,
  ): Promise<JobState | null> {
    return this.#write(now, async (tx) => {
      const m = collectedMove(await tx.lockRow(outcome.id), outcome, retry, now);
      if (m === null) return null;
      const a = outcome.artifacts;
      if (a.length > 0)
        await tx.run(
          `insert into cm_artifacts (job_id, path, size, sha256, mode, attempt, created_at)
           select $1, u.path, u.size, u.sha256, u.mode, $2, $3
           from unnest($4::text[], $5::bigint[], $6::text[], $7::integer[]) as u(path, size, sha256, mode)
           on conflict (job_id, path) do update set size = excluded.size, sha256 = excluded.sha256,
             mode = excluded.mode, attempt = excluded.attempt, created_at = excluded.created_at`,
          outcome.id,
          outcome.attempt,
          now,
          a.map((x) => x.path),
          a.map((x) => x.size),
          a.map((x) => x.sha256),
          a.map((x) => x.mode),
        );
      return (await tx.apply(m)) ? m.to : null;
    });
  }

  async artifacts(id: number): Promise<ArtifactRow[]> {
    return this.#all<ArtifactRow>('select * from cm_artifacts where job_id = $1 order by path', id);
  }

  async expiredLeases(
    now: number,
    targets: readonly string[],
    deadOwner: string | null,
  ): Promise<JobRow[]> {
    if (targets.length === 0) return [];
    return this.#all<JobRow>(
      `select * from cm_jobs where state = 'submitting' and target = any($1::text[])
       and (lease_until < $2 or lease_owner = $3) order by id`,
      targets,
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
    return this.#write(now, async (tx) => {
      const row = await tx.lockRow(id);
      return holdsClaim(row, attempt, expectedOwner) && tx.apply(leaseMove(row, outcome, now));
    });
  }

  async requestCancel(id: number, now: number): Promise<JobRow | null> {
    return this.#write(now, async (tx) => {
      const row = await tx.lockRow(id);
      if (!row) return null;
      const m = cancelRequest(row, now);
      if (m === 'flag')
        await tx.run(
          'update cm_jobs set cancel_requested = 1, updated_at = $1 where id = $2',
          now,
          id,
        );
      else await tx.apply(m);
      return (await tx.get<JobRow>('select * from cm_jobs where id = $1', id)) ?? null;
    });
  }

  async markCancelled(id: number, now: number): Promise<void> {
    await this.#write(now, async (tx) => {
      await tx.apply(markCancelledMove(await tx.lockRow(id), now));
    });
  }

  async retry(id: number, now: number): Promise<JobRow | null> {
    return this.#write(now, async (tx) => {
      const row = await tx.lockRow(id);
      if (!row) return null;
      assertRetryable(row);
      const reset = async (job: JobRow, policy: FailurePolicy | null): Promise<boolean> => {
        const parents = await tx.all<{ state: JobState; condition: EdgeCondition }>(
          'select p.state, d.condition from cm_deps d join cm_jobs p on p.id = d.parent_id where d.job_id = $1 for share of p',
          job.id,
        );
        return tx.apply(retryMove(job, parents, policy, now));
      };
      const policyOf = async (job: JobRow): Promise<FailurePolicy | null> =>
        job.workflow_id === null
          ? null
          : ((
              await tx.get<{ on_failure: FailurePolicy }>(
                'select on_failure from cm_workflows where id = $1',
                job.workflow_id,
              )
            )?.on_failure ?? null);
      if (!(await reset(row, await policyOf(row)))) throw blockedRetryError(id);
      // Dependents skipped because of this job wait for it again, transitively.
      const todo = [id];
      for (let parent = todo.pop(); parent !== undefined; parent = todo.pop()) {
        const skipped = await tx.all<JobRow>(
          `select j.* from cm_deps d join cm_jobs j on j.id = d.job_id
           where d.parent_id = $1 and j.state = 'skipped' order by j.id for update of j`,
          parent,
        );
        for (const child of skipped)
          if (await reset(child, await policyOf(child))) todo.push(child.id);
      }
      return (await tx.get<JobRow>('select * from cm_jobs where id = $1', id)) ?? null;
    });
  }

  async reprioritize(id: number, priority: number, now: number): Promise<JobRow | null> {
    return this.#write(now, async (tx) => {
      await tx.run(
        'update cm_jobs set priority = $1, updated_at = $2 where id = $3',
        priority,
        now,
        id,
      );
      return (await tx.get<JobRow>('select * from cm_jobs where id = $1', id)) ?? null;
    });
  }

  async prune(before: number): Promise<{ jobs: number; events: number }> {
    return this.#write(before, async (tx) => {
      // A finished job that an open job still depends on is kept (its outcome decides the child).
      const jobs = await tx.run(
        `delete from cm_jobs where ended_at < $1 and state in ${TERMINAL_SQL}
         and not exists (select 1 from cm_deps d join cm_jobs c on c.id = d.job_id
           where d.parent_id = cm_jobs.id and c.state in ${OPEN_SQL})`,
        before,
      );
      await tx.run(
        'delete from cm_workflows where done_at < $1 and not exists (select 1 from cm_jobs j where j.workflow_id = cm_workflows.id)',
        before,
      );
      const events = await tx.run('delete from cm_events where at < $1', before);
      return { jobs, events };
    });
  }

  async events(after: number, limit: number): Promise<QueueEvent[]> {
    const rows = await this.#all<EventRow>(
      'select * from cm_events where seq > $1 order by seq limit $2',
      after,
      limit,
    );
    return rows.map(toEvent);
  }

  async lastEventSeq(): Promise<number> {
    return (
      (await this.#get<{ seq: number | null }>('select max(seq) seq from cm_events'))?.seq ?? 0
    );
  }

  // ---------------------------------------------------------------- live schedulers

  /** One statement (upsert plus the purge of long-dead rows), so no transaction of its own. */
  async heartbeat(row: SchedulerRow, forgetBefore: number): Promise<void> {
    await this.#all(
      `with gone as (delete from cm_schedulers where heartbeat_at < $9 and owner <> $1)
       ${schedulerUpsertSql((i) => `$${i}`)}`,
      ...schedulerUpsertValues(row),
      forgetBefore,
    );
  }

  async removeScheduler(owner: string): Promise<void> {
    await this.#all('delete from cm_schedulers where owner = $1', owner);
  }

  async schedulers(): Promise<SchedulerRow[]> {
    const rows = await this.#all<SchedulerRow>(
      'select * from cm_schedulers order by started_at, owner',
    );
    // bigint columns come back as strings from pg.
    return rows.map((r) => ({
      ...r,
      pid: Number(r.pid),
      started_at: Number(r.started_at),
      heartbeat_at: Number(r.heartbeat_at),
      heartbeat_ms: Number(r.heartbeat_ms),
    }));
  }

  async allTerminal(ids: readonly number[] | null): Promise<boolean> {
    const open =
      ids === null
        ? await this.#get(`select 1 from cm_jobs where state in ${OPEN_SQL} limit 1`)
        : await this.#get(
            `select 1 from cm_jobs where id = any($1::bigint[]) and state in ${OPEN_SQL} limit 1`,
            ids,
          );
    return open === undefined;
  }

  /**
   * LISTEN on a connection of its own: `wake` runs on every NOTIFY of another transaction
   * (enqueue, dependency release, retry, resume). A lost connection is re-opened with backoff,
   * and `wake` runs once it is back (notifications sent meanwhile are lost).
   */
  async subscribe(wake: () => void): Promise<() => Promise<void>> {
    this.#assertOpen();
    let client: Client | null = null;
    let stopped = false;
    let timer: NodeJS.Timeout | null = null;
    const connect = async (): Promise<void> => {
      const c = new this.#pg.Client(this.#clientConfig);
      c.on('notification', () => wake());
      c.on('error', () => {
        if (client !== c) return;
        client = null;
        c.end().catch(() => undefined);
        schedule(250);
      });
      await c.connect();
      await c.query(`listen ${NOTIFY_CHANNEL}`);
      if (stopped) {
        await c.end().catch(() => undefined);
        return;
      }
      client = c;
    };
    const schedule = (ms: number): void => {
      if (stopped) return;
      timer = setTimeout(() => {
        timer = null;
        connect().then(
          () => wake(),
          () => schedule(Math.min(ms * 2, 10_000)),
        );
      }, ms);
      timer.unref();
    };
    try {
      await connect();
    } catch (error) {
      throw storeError(error, this.#where);
    }
    const unsubscribe = async (): Promise<void> => {
      stopped = true;
      this.#listeners.delete(unsubscribe);
      if (timer) clearTimeout(timer);
      const c = client;
      client = null;
      await c?.end().catch(() => undefined);
    };
    this.#listeners.add(unsubscribe);
    return unsubscribe;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#listeners].map((u) => u()));
    // A background VACUUM (bounded by its statement_timeout) ends before the store says closed.
    await this.#vacuuming;
    await this.#pool.end();
  }
}
