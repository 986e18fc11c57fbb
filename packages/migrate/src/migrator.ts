// Runs migrations so that a database is never left half-migrated: each migration and its
// history row commit together or not at all, under a database-wide lock (SQLite: the write
// lock of BEGIN IMMEDIATE, PostgreSQL: a session advisory lock), with the history re-read inside
// the lock so concurrent migrators each apply every migration exactly once between them.

import { createHash } from 'node:crypto';
import { isCrystalMathError } from '@crystalmath/core';
import { PostgresAdapter, SqliteAdapter, sql } from 'kysely';
import { guardMigrationDb } from './guard.js';
import {
  type AnyKysely,
  compareMigrationNames,
  type Dialect,
  type MigrationEvent,
  type MigrationResult,
  type MigrationRunResult,
  type MigrationSource,
  type MigrationState,
  type NamedMigration,
} from './migration.js';
import { MigrationError } from './migration-error.js';
import { foreignKeyViolations, newViolations } from './rebuild-table.js';

export interface MigratorOptions {
  readonly db: AnyKysely;
  readonly source: MigrationSource;
  /** Detected from the kysely adapter when omitted. */
  readonly dialect?: Dialect;
  /** History table. Default `crystalmath_migrations`. */
  readonly table?: string;
  /** Longest wait for the migration lock before `E_MIGRATION_LOCK_TIMEOUT`. Default 60 000 ms. */
  readonly lockTimeoutMs?: number;
  readonly logger?: (event: MigrationEvent) => void;
}

interface HistoryRow {
  name: string;
  checksum: string;
  applied_at: string;
  duration_ms: number;
  baseline: number;
}

/** One connection holding the migration lock (PostgreSQL) and running transactions on it. */
interface Session {
  readonly conn: AnyKysely;
  /** Runs `fn` in one transaction (SQLite: BEGIN IMMEDIATE, waited for up to lockTimeoutMs). */
  tx<T>(fn: () => Promise<T>): Promise<T>;
}

const TABLE = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
/** First advisory lock key on PostgreSQL ("crys"); the second is derived from schema and table. */
export const PG_LOCK_CLASS = 0x63_72_79_73;
/** SQLite busy timeout while polling for the write lock: short, because better-sqlite3 waits synchronously. */
const SQLITE_POLL_MS = 25;

/** The two-int advisory lock key the PostgreSQL migrator takes for `schema.table`. */
export function postgresLockKey(schema: string, table: string): [number, number] {
  const h = createHash('sha256').update(`${schema}.${table}`).digest();
  return [PG_LOCK_CLASS, h.readInt32BE(0)];
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code === 'SQLITE_LOCKED');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function abortedError(signal: AbortSignal, when: string): MigrationError {
  return new MigrationError('E_MIGRATION_FAILED', `aborted ${when}`, {
    cause: signal.reason,
    details: { aborted: true },
  });
}

function detectDialect(db: AnyKysely): Dialect {
  const adapter = db.getExecutor().adapter;
  if (adapter instanceof PostgresAdapter) return 'postgres';
  if (adapter instanceof SqliteAdapter) return 'sqlite';
  // A second copy of kysely: its classes are not ours, their names are.
  const name = (adapter as object | undefined)?.constructor?.name ?? '';
  if (/postgres/i.test(name)) return 'postgres';
  if (/sqlite/i.test(name)) return 'sqlite';
  throw new MigrationError(
    'E_MIGRATION_SOURCE',
    `cannot tell the database from kysely's ${name || 'adapter'}: pass dialect: 'sqlite' or 'postgres' (the two databases with transactional DDL)`,
    { details: { field: 'dialect' } },
  );
}

/**
 * Applies migrations from a source, atomically and exactly once.
 *
 * @example
 * const migrator = new Migrator({ db, source: folderMigrations('migrations') });
 * const { results } = await migrator.migrate(); // throws MigrationError on failure
 */
export class Migrator {
  readonly #db: AnyKysely;
  readonly #source: MigrationSource;
  readonly #dialect: Dialect;
  readonly #table: string;
  readonly #lockTimeoutMs: number;
  readonly #logger: ((event: MigrationEvent) => void) | undefined;

  constructor(options: MigratorOptions) {
    this.#db = options.db;
    this.#source = options.source;
    this.#table = options.table ?? 'crystalmath_migrations';
    if (!TABLE.test(this.#table)) {
      throw new MigrationError(
        'E_MIGRATION_SOURCE',
        `table name "${this.#table}" is not a plain identifier`,
        { details: { field: 'table' } },
      );
    }
    const timeout = options.lockTimeoutMs ?? 60_000;
    if (!Number.isFinite(timeout) || timeout < 0) {
      throw new MigrationError(
        'E_MIGRATION_SOURCE',
        `lockTimeoutMs must be a finite number >= 0, not ${timeout}`,
        { details: { field: 'lockTimeoutMs' } },
      );
    }
    this.#lockTimeoutMs = timeout;
    this.#logger = options.logger;
    if (options.dialect !== undefined && !['sqlite', 'postgres'].includes(options.dialect)) {
      throw new MigrationError(
        'E_MIGRATION_SOURCE',
        `dialect must be 'sqlite' or 'postgres', not ${String(options.dialect)}`,
        { details: { field: 'dialect' } },
      );
    }
    this.#dialect = options.dialect ?? detectDialect(options.db);
  }

  get dialect(): Dialect {
    return this.#dialect;
  }

  /**
   * Applies every pending migration in order, each in its own transaction with its history row.
   * Rejects with MigrationError; its `results` says what ran. The signal is checked while
   * waiting for the lock and between migrations (a running migration finishes or rolls back).
   */
  async migrate(options: { readonly signal?: AbortSignal } = {}): Promise<MigrationRunResult> {
    const { signal } = options;
    const results: MigrationResult[] = [];
    try {
      if (signal?.aborted) throw abortedError(signal, 'before the migration lock was taken');
      const migrations = await this.#load();
      return await this.#session(signal, async (s) => {
        // The history is read under the write lock: SQLite readers could otherwise see BUSY
        // while another migrator commits, and the table may not exist yet.
        const history = await s.tx(async () => {
          await this.#ensureTable(s.conn);
          return this.#history(s.conn);
        });
        const pending = this.#pending(migrations, history);
        for (const [i, m] of pending.entries()) {
          const rest = (from: number): MigrationResult[] =>
            pending.slice(from).map((p) => ({ migrationName: p.name, status: 'NotExecuted' }));
          // Let timers and signal handlers run: with better-sqlite3 a whole run could otherwise
          // pass without yielding to the event loop, and an abort would never be seen.
          if (signal) await sleep(0);
          if (signal?.aborted) {
            results.push(...rest(i));
            throw abortedError(signal, `before ${m.name}`);
          }
          this.#emit({ type: 'migration:start', name: m.name });
          const started = Date.now();
          let applied: boolean;
          try {
            applied = await this.#applyOne(s, m, migrations, signal);
          } catch (error) {
            // Refused before its body ran: the lock was not obtained, the run was aborted, or
            // (re-read under the lock) the history drifted.
            const notRun =
              isCrystalMathError(error) &&
              (error.details.aborted === true ||
                [
                  'E_MIGRATION_LOCK_TIMEOUT',
                  'E_MIGRATION_CHECKSUM',
                  'E_MIGRATION_UNKNOWN',
                  'E_MIGRATION_ORDER',
                ].includes(error.code));
            results.push(
              { migrationName: m.name, status: notRun ? 'NotExecuted' : 'Error' },
              ...rest(i + 1),
            );
            this.#emit({ type: 'migration:error', name: m.name, error: error as Error });
            if (isCrystalMathError(error) && error.code.startsWith('E_MIGRATION_')) {
              const message = error.message.replace(/^\[migrate\] /, '');
              throw new MigrationError(
                error.code as ConstructorParameters<typeof MigrationError>[0],
                message.startsWith(m.name) ? message : `${m.name}: ${message}`,
                { cause: error.cause, details: { ...error.details, migration: m.name } },
              );
            }
            throw new MigrationError(
              'E_MIGRATION_FAILED',
              `${m.name} failed and was rolled back: ${(error as Error)?.message ?? String(error)}`,
              { cause: error, details: { migration: m.name } },
            );
          }
          if (applied) {
            const durationMs = Date.now() - started;
            this.#emit({ type: 'migration:success', name: m.name, durationMs });
            results.push({ migrationName: m.name, status: 'Success', durationMs });
          } else {
            this.#emit({
              type: 'migration:skip',
              name: m.name,
              reason: 'applied by another migrator meanwhile',
            });
          }
        }
        return { results };
      });
    } catch (error) {
      throw this.#withResults(error, results);
    }
  }

  /** The migrations `migrate()` would apply now, in order. Throws on a changed or unknown migration. */
  async plan(): Promise<string[]> {
    const migrations = await this.#load();
    const history = await this.#readHistory();
    return this.#pending(migrations, history).map((m) => m.name);
  }

  /** Every migration known to the source or the database, with its state. Never throws on drift. */
  async status(): Promise<MigrationState[]> {
    const migrations = await this.#load();
    const history = await this.#readHistory();
    const byName = new Map(history.map((h) => [h.name, h]));
    const out: MigrationState[] = migrations.map((m) => {
      const h = byName.get(m.name);
      return {
        name: m.name,
        state: !h ? 'pending' : h.checksum !== this.#checksum(m) ? 'changed' : 'applied',
        appliedAt: h?.applied_at ?? null,
        durationMs: h ? Number(h.duration_ms) : null,
        baseline: Number(h?.baseline) === 1,
      };
    });
    const known = new Set(migrations.map((m) => m.name));
    for (const h of history) {
      if (!known.has(h.name))
        out.push({
          name: h.name,
          state: 'unknown',
          appliedAt: h.applied_at,
          durationMs: Number(h.duration_ms),
          baseline: Number(h.baseline) === 1,
        });
    }
    return out.sort((a, b) => compareMigrationNames(a.name, b.name));
  }

  /**
   * Adopts an existing database: records migrations up to and including `upTo` as applied
   * without running them (history rows with `baseline = 1`). Only on a database whose history
   * is empty; the caller vouches that the schema already matches those migrations.
   */
  async baseline(upTo: string): Promise<string[]> {
    try {
      const migrations = await this.#load();
      const idx = migrations.findIndex((m) => m.name === upTo);
      if (idx < 0) {
        throw new MigrationError('E_MIGRATION_UNKNOWN', `baseline: no migration named ${upTo}`, {
          details: { field: 'upTo', migration: upTo },
        });
      }
      const chosen = migrations.slice(0, idx + 1);
      return await this.#session(undefined, (s) =>
        s.tx(async () => {
          await this.#ensureTable(s.conn);
          const history = await this.#history(s.conn);
          if (history.length > 0) {
            throw new MigrationError(
              'E_MIGRATION_ORDER',
              `baseline: the database already has migration history (${history.length} rows); baseline is only for a database never migrated by this package`,
            );
          }
          for (const m of chosen) await this.#record(s.conn, m, 0, true);
          return chosen.map((m) => m.name);
        }),
      );
    } catch (error) {
      throw this.#withResults(error, []);
    }
  }

  #emit(event: MigrationEvent): void {
    try {
      this.#logger?.(event);
    } catch {
      // A failing logger must not fail, or half-fail, a migration.
    }
  }

  #withResults(error: unknown, results: readonly MigrationResult[]): MigrationError {
    const snapshot = [...results];
    if (error instanceof MigrationError || isCrystalMathError(error)) {
      const e = error as MigrationError;
      if (!e.code.startsWith('E_MIGRATION_')) {
        return new MigrationError('E_MIGRATION_FAILED', e.message, {
          cause: e,
          results: snapshot,
        });
      }
      return new MigrationError(
        e.code as ConstructorParameters<typeof MigrationError>[0],
        e.message.replace(/^\[migrate\] /, ''),
        { cause: e.cause, details: e.details, results: snapshot },
      );
    }
    return new MigrationError(
      'E_MIGRATION_FAILED',
      `migration run failed: ${(error as Error)?.message ?? String(error)}`,
      { cause: error, results: snapshot },
    );
  }

  #checksum(m: NamedMigration): string {
    return m.dialectChecksums?.[this.#dialect] ?? m.checksum;
  }

  /** The source's migrations, checked: well-formed, unique, strictly in order. */
  async #load(): Promise<readonly NamedMigration[]> {
    const migrations = await this.#source.getMigrations();
    for (const m of migrations) {
      if (
        typeof m?.name !== 'string' ||
        typeof m.checksum !== 'string' ||
        typeof m.up !== 'function'
      ) {
        throw new MigrationError(
          'E_MIGRATION_SOURCE',
          'a migration source yielded an entry without name, checksum and up()',
          { details: { name: (m as { name?: unknown } | undefined)?.name } },
        );
      }
    }
    for (let i = 1; i < migrations.length; i++) {
      const a = migrations[i - 1]!.name;
      const b = migrations[i]!.name;
      if (a === b) {
        throw new MigrationError('E_MIGRATION_SOURCE', `duplicate migration name ${a}`, {
          details: { migration: a },
        });
      }
      if (compareMigrationNames(a, b) > 0) {
        throw new MigrationError('E_MIGRATION_ORDER', `migrations out of order: ${a} before ${b}`, {
          details: { migration: b },
        });
      }
    }
    return migrations;
  }

  /** The pending migrations, after refusing unknown, changed or out-of-order history. */
  #pending(
    migrations: readonly NamedMigration[],
    history: readonly HistoryRow[],
  ): NamedMigration[] {
    const byName = new Map(migrations.map((m) => [m.name, m]));
    for (const h of history) {
      const m = byName.get(h.name);
      if (!m) {
        throw new MigrationError(
          'E_MIGRATION_UNKNOWN',
          `the database has migration ${h.name}, which this program does not know (an older program on a newer database?)`,
          { details: { migration: h.name } },
        );
      }
      if (this.#checksum(m) !== h.checksum) {
        throw new MigrationError(
          'E_MIGRATION_CHECKSUM',
          `applied migration ${h.name} has changed since it ran (checksum differs): never edit an applied migration, add a new one`,
          { details: { migration: h.name, recorded: h.checksum, current: this.#checksum(m) } },
        );
      }
    }
    const applied = new Set(history.map((h) => h.name));
    let last: string | undefined;
    for (const h of history) {
      if (last === undefined || compareMigrationNames(h.name, last) > 0) last = h.name;
    }
    const pending = migrations.filter((m) => !applied.has(m.name));
    const early =
      last === undefined ? undefined : pending.find((m) => compareMigrationNames(m.name, last) < 0);
    if (early) {
      throw new MigrationError(
        'E_MIGRATION_ORDER',
        `pending migration ${early.name} sorts before applied ${last}: rename it so it sorts last`,
        { details: { migration: early.name, lastApplied: last } },
      );
    }
    return pending;
  }

  /** Applies one migration in its own transaction; false when another migrator applied it first. */
  async #applyOne(
    s: Session,
    m: NamedMigration,
    all: readonly NamedMigration[],
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    const { conn } = s;
    const fkOff = m.disableForeignKeys === true && this.#dialect === 'sqlite';
    let restoreFk = false;
    if (fkOff && (await this.#foreignKeysOn(conn))) {
      // Outside the transaction: inside one, SQLite silently ignores this pragma.
      await sql`PRAGMA foreign_keys = OFF`.execute(conn);
      restoreFk = true;
      if (await this.#foreignKeysOn(conn)) {
        throw new MigrationError(
          'E_MIGRATION_FOREIGN_KEY',
          `${m.name}: PRAGMA foreign_keys = OFF did not take effect (is a transaction open on this connection?); not running it`,
          { details: { migration: m.name } },
        );
      }
    }
    try {
      return await s.tx(async () => {
        // Re-read inside the write lock: another process may have applied it meanwhile.
        const history = await this.#history(conn);
        this.#pending(all, history);
        if (history.some((h) => h.name === m.name)) return false;
        if (signal?.aborted) throw abortedError(signal, `before ${m.name}`);
        const before = fkOff ? await foreignKeyViolations(conn) : [];
        const started = Date.now();
        await m.up(guardMigrationDb(conn, this.#dialect), { dialect: this.#dialect });
        if (fkOff) {
          const added = newViolations(before, await foreignKeyViolations(conn));
          if (added.length > 0) {
            throw new MigrationError(
              'E_MIGRATION_FOREIGN_KEY',
              `${m.name} would leave ${added.length} rows violating foreign keys; rolled back`,
              { details: { migration: m.name, violations: added.slice(0, 20) } },
            );
          }
        }
        await this.#record(conn, m, Date.now() - started, false);
        return true;
      });
    } finally {
      if (restoreFk) await sql`PRAGMA foreign_keys = ON`.execute(conn);
    }
  }

  async #foreignKeysOn(conn: AnyKysely): Promise<boolean> {
    const r = await sql<{ foreign_keys: number }>`PRAGMA foreign_keys`.execute(conn);
    return Number(r.rows[0]?.foreign_keys) === 1;
  }

  async #record(
    conn: AnyKysely,
    m: NamedMigration,
    durationMs: number,
    baseline: boolean,
  ): Promise<void> {
    await sql`insert into ${sql.table(this.#table)} (name, checksum, applied_at, duration_ms, baseline)
      values (${m.name}, ${this.#checksum(m)}, ${new Date().toISOString()}, ${durationMs}, ${baseline ? 1 : 0})`.execute(
      conn,
    );
  }

  /** Runs `fn` on one connection: SQLite transactions wait for the write lock; PostgreSQL holds an advisory lock throughout. */
  async #session<T>(signal: AbortSignal | undefined, fn: (s: Session) => Promise<T>): Promise<T> {
    return this.#db
      .connection()
      .execute(async (conn) =>
        this.#dialect === 'sqlite'
          ? this.#sqliteSession(conn, signal, fn)
          : this.#postgresSession(conn, signal, fn),
      );
  }

  async #sqliteSession<T>(
    conn: AnyKysely,
    signal: AbortSignal | undefined,
    fn: (s: Session) => Promise<T>,
  ): Promise<T> {
    const original = Number(
      (await sql<{ timeout: number }>`PRAGMA busy_timeout`.execute(conn)).rows[0]?.timeout ?? 0,
    );
    // While the write lock is held, waits are short (readers finishing): the connection's own
    // busy timeout, at least 1 s, at most lockTimeoutMs.
    const holding = Math.min(Math.max(original, 1000), this.#lockTimeoutMs);
    const setBusy = (ms: number) =>
      sql.raw(`PRAGMA busy_timeout = ${Math.round(ms)}`).execute(conn);
    const tx = async <R>(body: () => Promise<R>): Promise<R> => {
      await this.#waitForLock(signal, 'database write lock (BEGIN IMMEDIATE)', async () => {
        try {
          await sql`BEGIN IMMEDIATE`.execute(conn);
          return true;
        } catch (e) {
          if (isBusy(e)) return false;
          throw e;
        }
      });
      try {
        await setBusy(holding);
        const out = await body();
        // COMMIT may wait for readers (rollback-journal mode); while busy the transaction stays
        // open and COMMIT can be retried.
        await this.#waitForLock(undefined, 'commit (readers still active)', async () => {
          try {
            await sql`COMMIT`.execute(conn);
            return true;
          } catch (e) {
            if (isBusy(e)) return false;
            throw e;
          }
        });
        return out;
      } catch (e) {
        await sql`ROLLBACK`.execute(conn).catch(() => undefined);
        throw e;
      } finally {
        await setBusy(SQLITE_POLL_MS).catch(() => undefined);
      }
    };
    await setBusy(SQLITE_POLL_MS);
    try {
      return await fn({ conn, tx });
    } finally {
      await setBusy(original).catch(() => undefined);
    }
  }

  async #postgresSession<T>(
    conn: AnyKysely,
    signal: AbortSignal | undefined,
    fn: (s: Session) => Promise<T>,
  ): Promise<T> {
    const schema =
      (await sql<{ s: string | null }>`select current_schema() as s`.execute(conn)).rows[0]?.s ??
      'public';
    const [k1, k2] = postgresLockKey(schema, this.#table);
    await this.#waitForLock(signal, 'migration advisory lock', async () => {
      const r = await sql<{
        ok: boolean;
      }>`select pg_try_advisory_lock(${k1}::int4, ${k2}::int4) as ok`.execute(conn);
      return r.rows[0]?.ok === true;
    });
    const tx = async <R>(body: () => Promise<R>): Promise<R> => {
      await sql`begin`.execute(conn);
      try {
        const out = await body();
        await sql`commit`.execute(conn);
        return out;
      } catch (e) {
        await sql`rollback`.execute(conn).catch(() => undefined);
        throw e;
      }
    };
    try {
      return await fn({ conn, tx });
    } finally {
      await sql`select pg_advisory_unlock(${k1}::int4, ${k2}::int4)`
        .execute(conn)
        .catch(() => undefined);
    }
  }

  /** Calls `attempt` until it returns true, at most lockTimeoutMs, yielding to the event loop between tries. */
  async #waitForLock(
    signal: AbortSignal | undefined,
    what: string,
    attempt: () => Promise<boolean>,
  ): Promise<void> {
    const started = Date.now();
    let waited = false;
    for (;;) {
      if (await attempt()) {
        if (waited) this.#emit({ type: 'lock:acquired', waitedMs: Date.now() - started });
        return;
      }
      const elapsed = Date.now() - started;
      if (elapsed >= this.#lockTimeoutMs) {
        throw new MigrationError(
          'E_MIGRATION_LOCK_TIMEOUT',
          `${what} not obtained in ${this.#lockTimeoutMs} ms: another migrator or writer holds it`,
          { details: { lockTimeoutMs: this.#lockTimeoutMs, waitedMs: elapsed } },
        );
      }
      if (!waited) this.#emit({ type: 'lock:wait', waitedMs: elapsed });
      waited = true;
      if (signal?.aborted) throw abortedError(signal, `while waiting for the ${what}`);
      await sleep(Math.min(15 + Math.random() * 35, Math.max(1, this.#lockTimeoutMs - elapsed)));
    }
  }

  async #ensureTable(conn: AnyKysely): Promise<void> {
    await sql`create table if not exists ${sql.table(this.#table)} (
      name text primary key,
      checksum text not null,
      applied_at text not null,
      duration_ms integer not null,
      baseline integer not null default 0
    )`.execute(conn);
  }

  async #history(conn: AnyKysely): Promise<HistoryRow[]> {
    const r =
      await sql<HistoryRow>`select name, checksum, applied_at, duration_ms, baseline from ${sql.table(this.#table)}`.execute(
        conn,
      );
    return r.rows.sort((a, b) => compareMigrationNames(a.name, b.name));
  }

  /** History without taking the lock or creating the table: a database never migrated has none. */
  async #readHistory(): Promise<HistoryRow[]> {
    const exists =
      this.#dialect === 'sqlite'
        ? await sql<{
            ok: number;
          }>`select count(*) as ok from sqlite_schema where type = 'table' and name = ${this.#table}`.execute(
            this.#db,
          )
        : await sql<{
            ok: boolean;
          }>`select to_regclass(${this.#table}) is not null as ok`.execute(this.#db);
    const ok = exists.rows[0]?.ok;
    if (!(ok === true || Number(ok) === 1)) return [];
    return this.#history(this.#db);
  }
}
