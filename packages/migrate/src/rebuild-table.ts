// SQLite's table rebuild ("create new, copy, drop, rename"), the only way to change a column's
// type or constraints there: the 12 steps of https://www.sqlite.org/lang_altertable.html#otheralter.
// With foreign keys on, dropping the old table would cascade-delete every child row, and
// `PRAGMA foreign_keys` is a no-op inside a transaction: so the pragma is set outside it.

import { sql } from 'kysely';
import { isMigrationDb } from './guard.js';
import type { AnyKysely } from './migration.js';
import { MigrationError } from './migration-error.js';

export interface RebuildTableOptions {
  /** The table to rebuild. */
  readonly table: string;
  /** `CREATE TABLE` statement for the new shape, using `{{table}}` where the name goes. */
  readonly createSql: string;
  /**
   * What to copy. A list of columns present in both shapes, or a record from each new column to
   * an SQL expression over the old table's columns (`{ name: "coalesce(name, '')" }`). Default:
   * every column of the new table that the old one has.
   */
  readonly columns?: readonly string[] | Readonly<Record<string, string>>;
  /**
   * Recreate the old table's own indexes and triggers after the rename (step 8). Default true;
   * set false when the new shape drops a column they use, and recreate them in `afterSql`.
   */
  readonly keepIndexesAndTriggers?: boolean;
  /** Statements to run after the rename and the recreated indexes and triggers. */
  readonly afterSql?: readonly string[];
}

/** A foreign key violation as `PRAGMA foreign_key_check` reports it. */
export interface ForeignKeyViolation {
  readonly table: string;
  readonly rowid: number | null;
  readonly parent: string;
  readonly fkid: number;
}

const quote = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** Every foreign key violation in the database (`PRAGMA foreign_key_check`). */
export async function foreignKeyViolations(db: AnyKysely): Promise<ForeignKeyViolation[]> {
  const rows = (await sql<ForeignKeyViolation>`PRAGMA foreign_key_check`.execute(db)).rows;
  return rows.map((r) => ({
    table: String(r.table),
    rowid: r.rowid === null ? null : Number(r.rowid),
    parent: String(r.parent),
    fkid: Number(r.fkid),
  }));
}

const violationKey = (v: ForeignKeyViolation): string =>
  JSON.stringify([v.table, v.rowid, v.parent, v.fkid]);

/** The violations in `after` that were not in `before`: what a change introduced. */
export function newViolations(
  before: readonly ForeignKeyViolation[],
  after: readonly ForeignKeyViolation[],
): ForeignKeyViolation[] {
  const seen = new Set(before.map(violationKey));
  return after.filter((v) => !seen.has(violationKey(v)));
}

async function foreignKeysOn(db: AnyKysely): Promise<boolean> {
  const r = await sql<{ foreign_keys: number }>`PRAGMA foreign_keys`.execute(db);
  return Number(r.rows[0]?.foreign_keys) === 1;
}

function isSqlite(db: AnyKysely): boolean {
  const name = db.getExecutor().adapter.constructor.name;
  return !/postgres|mysql|mssql/i.test(name);
}

/**
 * Rebuilds an SQLite table to a new shape, keeping its rows, indexes, triggers and every child
 * row that references it.
 *
 * - Inside a migration (the `db` passed to `up`), declare the migration with
 *   `disableForeignKeys: true`: the Migrator turns foreign keys off outside the transaction,
 *   runs `PRAGMA foreign_key_check` before commit and restores the setting. Without it this
 *   throws `E_MIGRATION_FOREIGN_KEY` instead of cascade-deleting child rows.
 * - On a plain kysely instance (outside any transaction) it does all 12 steps itself: foreign
 *   keys off, `BEGIN IMMEDIATE`, rebuild, `foreign_key_check`, `COMMIT`, setting restored.
 *
 * Views that read the table keep working (the rename runs with `legacy_alter_table`, so SQLite
 * does not reject them while the table is briefly absent); a view the new shape breaks fails the
 * rebuild.
 *
 * @example
 * codeMigrations({ '0003_jobs_strict': { disableForeignKeys: true, up: (db) => rebuildTable(db, {
 *   table: 'jobs', createSql: 'create table {{table}} (id integer primary key, name text not null check (name <> \'\'))' }) } })
 */
export async function rebuildTable(db: AnyKysely, options: RebuildTableOptions): Promise<void> {
  if (!isSqlite(db)) {
    throw new MigrationError(
      'E_MIGRATION_SOURCE',
      "rebuildTable is for SQLite; PostgreSQL's ALTER TABLE changes a table in place",
    );
  }
  if (isMigrationDb(db) || db.isTransaction) {
    if (await foreignKeysOn(db)) {
      throw new MigrationError(
        'E_MIGRATION_FOREIGN_KEY',
        `rebuildTable(${options.table}) needs foreign keys off, and PRAGMA foreign_keys cannot change inside a transaction: declare the migration with disableForeignKeys: true`,
        { details: { table: options.table } },
      );
    }
    // The Migrator checks foreign keys itself before committing a disableForeignKeys migration.
    const before = isMigrationDb(db) ? null : await foreignKeyViolations(db);
    await rebuildSteps(db, options);
    if (before) await assertNoNewViolations(db, before, options.table);
    return;
  }
  await db.connection().execute(async (conn) => {
    const wasOn = await foreignKeysOn(conn);
    if (wasOn) {
      await sql`PRAGMA foreign_keys = OFF`.execute(conn);
      if (await foreignKeysOn(conn)) {
        throw new MigrationError(
          'E_MIGRATION_FOREIGN_KEY',
          'rebuildTable: PRAGMA foreign_keys = OFF did not take effect (is a transaction open on this connection?)',
        );
      }
    }
    try {
      await sql`BEGIN IMMEDIATE`.execute(conn);
      try {
        const before = await foreignKeyViolations(conn);
        await rebuildSteps(conn, options);
        await assertNoNewViolations(conn, before, options.table);
        await sql`COMMIT`.execute(conn);
      } catch (e) {
        await sql`ROLLBACK`.execute(conn).catch(() => undefined);
        throw e;
      }
    } finally {
      if (wasOn) await sql`PRAGMA foreign_keys = ON`.execute(conn);
    }
  });
}

async function assertNoNewViolations(
  db: AnyKysely,
  before: readonly ForeignKeyViolation[],
  table: string,
): Promise<void> {
  const added = newViolations(before, await foreignKeyViolations(db));
  if (added.length > 0) {
    throw new MigrationError(
      'E_MIGRATION_FOREIGN_KEY',
      `rebuildTable(${table}) would leave ${added.length} rows violating foreign keys; rolled back`,
      { details: { table, violations: added.slice(0, 20) } },
    );
  }
}

/** Steps 3 to 9, inside the caller's transaction, with foreign keys already off. */
async function rebuildSteps(db: AnyKysely, options: RebuildTableOptions): Promise<void> {
  const { table } = options;
  const exists = await sql<{
    c: number;
  }>`select count(*) as c from sqlite_schema where type = 'table' and name = ${table}`.execute(db);
  if (Number(exists.rows[0]?.c) !== 1) {
    throw new MigrationError('E_MIGRATION_SOURCE', `rebuildTable: no table named ${table}`, {
      details: { table },
    });
  }
  // 3. Remember the table's own indexes and triggers (auto-indexes have no SQL: the new
  //    CREATE TABLE makes its own).
  const dependents = (
    await sql<{ type: string; name: string; sql: string }>`select type, name, sql from sqlite_schema
      where tbl_name = ${table} and type in ('index', 'trigger') and sql is not null
      order by case type when 'index' then 0 else 1 end, name`.execute(db)
  ).rows;
  // 4. Create the new table under a temporary name.
  const tmp = `${table}__cm_rebuild`;
  await sql.raw(options.createSql.replaceAll('{{table}}', quote(tmp))).execute(db);
  // 5. Copy the rows.
  const columnsOf = async (t: string) =>
    (await sql<{ name: string }>`select name from pragma_table_info(${t})`.execute(db)).rows.map(
      (r) => r.name,
    );
  const oldCols = await columnsOf(table);
  const newCols = await columnsOf(tmp);
  const spec = options.columns ?? newCols.filter((c) => oldCols.includes(c));
  const pairs: [string, string][] = Array.isArray(spec)
    ? (spec as readonly string[]).map((c) => [c, quote(c)])
    : Object.entries(spec as Readonly<Record<string, string>>);
  for (const [c] of pairs) {
    if (!newCols.includes(c)) {
      throw new MigrationError(
        'E_MIGRATION_SOURCE',
        `rebuildTable: the new ${table} has no column ${c}`,
        { details: { table, column: c } },
      );
    }
  }
  if (pairs.length > 0) {
    await sql
      .raw(
        `insert into ${quote(tmp)} (${pairs.map(([c]) => quote(c)).join(', ')}) select ${pairs
          .map(([, e]) => e)
          .join(', ')} from ${quote(table)}`,
      )
      .execute(db);
  }
  // 6. Drop the old table (foreign keys are off: no cascade, no child row touched).
  await sql.raw(`drop table ${quote(table)}`).execute(db);
  // 7. Rename. With legacy_alter_table on, SQLite neither rewrites nor re-checks views and
  //    triggers that name the table, which would otherwise fail ("no such table") right now.
  const legacy = Number(
    (await sql<{ legacy_alter_table: number }>`PRAGMA legacy_alter_table`.execute(db)).rows[0]
      ?.legacy_alter_table ?? 0,
  );
  await sql`PRAGMA legacy_alter_table = ON`.execute(db);
  try {
    await sql.raw(`alter table ${quote(tmp)} rename to ${quote(table)}`).execute(db);
  } finally {
    if (legacy !== 1) await sql`PRAGMA legacy_alter_table = OFF`.execute(db);
  }
  // 8. Recreate the indexes and triggers.
  if (options.keepIndexesAndTriggers !== false) {
    for (const d of dependents) {
      try {
        await sql.raw(d.sql).execute(db);
      } catch (cause) {
        throw new MigrationError(
          'E_MIGRATION_SOURCE',
          `rebuildTable: cannot recreate ${d.type} ${d.name} on the new ${table} (${(cause as Error).message}); pass keepIndexesAndTriggers: false and recreate it in afterSql`,
          { cause, details: { table, [d.type]: d.name } },
        );
      }
    }
  }
  for (const stmt of options.afterSql ?? []) await sql.raw(stmt).execute(db);
  // 9. Every view must still compile against the new shape.
  const views = (
    await sql<{ name: string }>`select name from sqlite_schema where type = 'view'`.execute(db)
  ).rows;
  for (const v of views) {
    try {
      await sql.raw(`select * from ${quote(v.name)} limit 0`).execute(db);
    } catch (cause) {
      throw new MigrationError(
        'E_MIGRATION_SOURCE',
        `rebuildTable: view ${v.name} no longer works on the new ${table} (${(cause as Error).message}); drop and recreate it in afterSql`,
        { cause, details: { table, view: v.name } },
      );
    }
  }
}
