// Runs migrations so that a database is never left half-migrated: each migration and its
// history row commit together or not at all, under a database-wide lock (SQLite: BEGIN
// IMMEDIATE, PostgreSQL: a session advisory lock), with the history re-read inside the lock so
// concurrent migrators each apply every migration exactly once between them.

import { throwIfAborted } from '@crystalmath/core';
import { PostgresAdapter, SqliteAdapter, sql } from 'kysely';
import type {
  AnyKysely,
  Dialect,
  MigrationEvent,
  MigrationResult,
  MigrationRunResult,
  MigrationSource,
  MigrationState,
  NamedMigration,
} from './migration.js';
import { MigrationError } from './migration-error.js';

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
  baseline: number;
}

const TABLE = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
/** Advisory lock key for PostgreSQL: a constant so every CrystalMath migrator agrees. */
const PG_LOCK_KEY = 0x63_72_79_73; // "crys"

function isBusy(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || code === 'SQLITE_BUSY_SNAPSHOT';
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
  readonly #log: (event: MigrationEvent) => void;

  constructor(options: MigratorOptions) {
    this.#db = options.db;
    this.#source = options.source;
    this.#table = options.table ?? 'crystalmath_migrations';
    if (!TABLE.test(this.#table)) {
      throw new MigrationError(
        'E_MIGRATION_SOURCE',
        `table name "${this.#table}" is not a plain identifier`,
        {
          details: { field: 'table' },
        },
      );
    }
    this.#lockTimeoutMs = options.lockTimeoutMs ?? 60_000;
    this.#log = options.logger ?? (() => undefined);
    const adapter = options.db.getExecutor().adapter;
    this.#dialect =
      options.dialect ??
      (adapter instanceof PostgresAdapter
        ? 'postgres'
        : adapter instanceof SqliteAdapter
          ? 'sqlite'
          : 'sqlite');
  }

  get dialect(): Dialect {
    return this.#dialect;
  }

  /** Applies every pending migration in order. Rejects with MigrationError; `results` says what ran. */
  async migrate(options: { readonly signal?: AbortSignal } = {}): Promise<MigrationRunResult> {
    const migrations = await this.#source.getMigrations();
    return this.#withLock(async (conn) => {
      const results: MigrationResult[] = [];
      const history = await this.#history(conn);
      const pending = this.#validate(migrations, history);
      for (const [i, m] of pending.entries()) {
        const notExecuted = (): MigrationResult[] =>
          pending
            .slice(i + 1)
            .map((p) => ({ migrationName: p.name, status: 'NotExecuted' as const }));
        try {
          throwIfAborted(options.signal, 'migrate');
        } catch (cause) {
          results.push(
            ...[{ migrationName: m.name, status: 'NotExecuted' as const }],
            ...notExecuted(),
          );
          throw new MigrationError('E_MIGRATION_FAILED', `aborted before ${m.name}`, {
            cause,
            results,
          });
        }
        this.#log({ type: 'migration:start', name: m.name });
        const started = Date.now();
        try {
          const applied = await this.#applyOne(conn, m, migrations);
          const durationMs = Date.now() - started;
          if (applied) {
            this.#log({ type: 'migration:success', name: m.name, durationMs });
            results.push({ migrationName: m.name, status: 'Success', durationMs });
          } else {
            this.#log({
              type: 'migration:skip',
              name: m.name,
              reason: 'applied by another migrator',
            });
          }
        } catch (error) {
          this.#log({ type: 'migration:error', name: m.name, error: error as Error });
          results.push({ migrationName: m.name, status: 'Error' }, ...notExecuted());
          if (error instanceof MigrationError) {
            throw new MigrationError(
              error.code as 'E_MIGRATION_FAILED',
              error.message.replace(/^\[migrate\] /, ''),
              {
                cause: error.cause,
                results,
              },
            );
          }
          throw new MigrationError(
            'E_MIGRATION_FAILED',
            `${m.name} failed and was rolled back: ${(error as Error).message}`,
            {
              cause: error,
              results,
              details: { migration: m.name },
            },
          );
        }
      }
      return { results };
    });
  }

  /** The migrations `migrate()` would apply now, in order. Throws on a changed or unknown migration. */
  async plan(): Promise<string[]> {
    const migrations = await this.#source.getMigrations();
    const history = await this.#readHistory(this.#db);
    return this.#validate(migrations, history).map((m) => m.name);
  }

  /** Every migration known to the source or the database, with its state. Never throws on drift. */
  async status(): Promise<MigrationState[]> {
    const migrations = await this.#source.getMigrations();
    const history = await this.#readHistory(this.#db);
    const byName = new Map(history.map((h) => [h.name, h]));
    const out: MigrationState[] = migrations.map((m) => {
      const h = byName.get(m.name);
      return {
        name: m.name,
        state: !h ? 'pending' : h.checksum !== m.checksum ? 'changed' : 'applied',
        appliedAt: h?.applied_at ?? null,
        baseline: h?.baseline === 1,
      };
    });
    const known = new Set(migrations.map((m) => m.name));
    for (const h of history) {
      if (!known.has(h.name))
        out.push({
          name: h.name,
          state: 'unknown',
          appliedAt: h.applied_at,
          baseline: h.baseline === 1,
        });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /**
   * Adopts an existing database: records migrations up to and including `upTo` as applied
   * without running them. Only on a database whose history is empty.
   */
  async baseline(upTo: string): Promise<string[]> {
    const migrations = await this.#source.getMigrations();
    const idx = migrations.findIndex((m) => m.name === upTo);
    if (idx < 0) {
      throw new MigrationError('E_MIGRATION_UNKNOWN', `baseline: no migration named ${upTo}`, {
        details: { field: 'upTo' },
      });
    }
    return this.#withLock(async (conn) => {
      const history = await this.#history(conn);
      if (history.length > 0) {
        throw new MigrationError(
          'E_MIGRATION_ORDER',
          'baseline: the database already has migration history',
        );
      }
      const names = migrations.slice(0, idx + 1);
      await this.#tx(conn, async () => {
        for (const m of names) await this.#record(conn, m, 0, true);
      });
      return names.map((m) => m.name);
    });
  }

  #validate(
    migrations: readonly NamedMigration[],
    history: readonly HistoryRow[],
  ): NamedMigration[] {
    for (let i = 1; i < migrations.length; i++) {
      if (migrations[i - 1]!.name >= migrations[i]!.name) {
        throw new MigrationError(
          'E_MIGRATION_ORDER',
          `migrations out of order: ${migrations[i - 1]!.name} before ${migrations[i]!.name}`,
        );
      }
    }
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
      if (m.checksum !== h.checksum) {
        throw new MigrationError(
          'E_MIGRATION_CHECKSUM',
          `applied migration ${h.name} has changed since it ran (checksum differs)`,
          {
            details: { migration: h.name },
          },
        );
      }
    }
    const applied = new Set(history.map((h) => h.name));
    const lastApplied = history.reduce((max, h) => (h.name > max ? h.name : max), '');
    const pending = migrations.filter((m) => !applied.has(m.name));
    const early = pending.find((m) => m.name < lastApplied);
    if (early) {
      throw new MigrationError(
        'E_MIGRATION_ORDER',
        `pending migration ${early.name} sorts before applied ${lastApplied}`,
        {
          details: { migration: early.name },
        },
      );
    }
    return pending;
  }

  /** Applies one migration in its own transaction; false when another migrator applied it first. */
  async #applyOne(
    conn: AnyKysely,
    m: NamedMigration,
    all: readonly NamedMigration[],
  ): Promise<boolean> {
    const fkOff = m.disableForeignKeys === true && this.#dialect === 'sqlite';
    let fkBefore = 0;
    if (fkOff) {
      fkBefore = Number(
        (await sql<{ foreign_keys: number }>`PRAGMA foreign_keys`.execute(conn)).rows[0]
          ?.foreign_keys ?? 0,
      );
      await sql`PRAGMA foreign_keys = OFF`.execute(conn);
    }
    try {
      return await this.#tx(conn, async () => {
        // Re-read inside the write lock: another process may have applied it meanwhile.
        const history = await this.#history(conn);
        if (history.some((h) => h.name === m.name)) return false;
        this.#validate(all, history);
        const started = Date.now();
        await m.up(conn, { dialect: this.#dialect });
        if (fkOff) {
          const bad = await sql`PRAGMA foreign_key_check`.execute(conn);
          if (bad.rows.length > 0) {
            throw new MigrationError(
              'E_MIGRATION_FOREIGN_KEY',
              `${m.name} leaves ${bad.rows.length} rows violating foreign keys`,
              {
                details: { migration: m.name, violations: bad.rows.length },
              },
            );
          }
        }
        await this.#record(conn, m, Date.now() - started, false);
        return true;
      });
    } finally {
      if (fkOff && fkBefore === 1) await sql`PRAGMA foreign_keys = ON`.execute(conn);
    }
  }

  async #record(
    conn: AnyKysely,
    m: NamedMigration,
    durationMs: number,
    baseline: boolean,
  ): Promise<void> {
    await sql`insert into ${sql.table(this.#table)} (name, checksum, applied_at, duration_ms, baseline)
      values (${m.name}, ${m.checksum}, ${new Date().toISOString()}, ${durationMs}, ${baseline ? 1 : 0})`.execute(
      conn,
    );
  }

  /** One transaction on the locked connection. SQLite: BEGIN IMMEDIATE, retried while busy. */
  async #tx<T>(conn: AnyKysely, fn: () => Promise<T>): Promise<T> {
    if (this.#dialect === 'sqlite') await this.#beginImmediate(conn);
    else await sql`begin`.execute(conn);
    try {
      const out = await fn();
      await sql`commit`.execute(conn);
      return out;
    } catch (e) {
      await sql`rollback`.execute(conn).catch(() => undefined);
      throw e;
    }
  }

  async #beginImmediate(conn: AnyKysely): Promise<void> {
    const started = Date.now();
    let warned = false;
    for (;;) {
      try {
        await sql`begin immediate`.execute(conn);
        if (warned) this.#log({ type: 'lock:acquired', waitedMs: Date.now() - started });
        return;
      } catch (e) {
        if (!isBusy(e)) throw e;
        const waited = Date.now() - started;
        if (waited >= this.#lockTimeoutMs) {
          throw new MigrationError(
            'E_MIGRATION_LOCK_TIMEOUT',
            `database write lock not obtained in ${this.#lockTimeoutMs} ms`,
            {
              cause: e,
            },
          );
        }
        if (!warned) this.#log({ type: 'lock:wait', waitedMs: waited });
        warned = true;
        await new Promise((r) => setTimeout(r, 20 + Math.random() * 30));
      }
    }
  }

  /** Runs `fn` on one connection holding the migration lock (PostgreSQL) and the history table. */
  async #withLock<T>(fn: (conn: AnyKysely) => Promise<T>): Promise<T> {
    return this.#db.connection().execute(async (conn) => {
      if (this.#dialect === 'sqlite') {
        // Short busy timeout: waiting happens in #beginImmediate's loop, bounded by lockTimeoutMs,
        // instead of blocking the event loop inside better-sqlite3.
        await sql`PRAGMA busy_timeout = 50`.execute(conn).catch(() => undefined);
        await this.#tx(conn, () => this.#ensureTable(conn));
        return fn(conn);
      }
      const started = Date.now();
      for (;;) {
        const r = await sql<{
          ok: boolean;
        }>`select pg_try_advisory_lock(${PG_LOCK_KEY}) as ok`.execute(conn);
        if (r.rows[0]?.ok) break;
        if (Date.now() - started >= this.#lockTimeoutMs) {
          throw new MigrationError(
            'E_MIGRATION_LOCK_TIMEOUT',
            `migration lock not obtained in ${this.#lockTimeoutMs} ms`,
          );
        }
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 50));
      }
      try {
        await this.#ensureTable(conn);
        return await fn(conn);
      } finally {
        await sql`select pg_advisory_unlock(${PG_LOCK_KEY})`.execute(conn).catch(() => undefined);
      }
    });
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
      await sql<HistoryRow>`select name, checksum, applied_at, baseline from ${sql.table(this.#table)} order by name`.execute(
        conn,
      );
    return r.rows.map((row) => ({ ...row, baseline: Number(row.baseline) }));
  }

  /** History without creating the table: a database never migrated has none. */
  async #readHistory(db: AnyKysely): Promise<HistoryRow[]> {
    try {
      return await this.#history(db);
    } catch (e) {
      if (/no such table|does not exist/i.test((e as Error).message)) return [];
      throw e;
    }
  }
}
