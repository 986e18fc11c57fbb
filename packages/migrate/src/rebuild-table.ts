// SQLite's table rebuild ("create new, copy, drop, rename"), the only way to change a column's
// type or constraints there. Use it inside a migration declared with `disableForeignKeys: true`:
// with foreign keys on, dropping the old table would cascade-delete every child row.

import { sql } from 'kysely';
import type { AnyKysely } from './migration.js';
import { MigrationError } from './migration-error.js';

export interface RebuildTableOptions {
  /** The table to rebuild. */
  readonly table: string;
  /** `CREATE TABLE` statement for the new shape, using `{{table}}` where the name goes. */
  readonly createSql: string;
  /** Columns to copy (same names in old and new). Default: every column of the new table that the old one has. */
  readonly columns?: readonly string[];
  /** Statements to run after the rename (indexes, triggers, views that referenced the table). */
  readonly afterSql?: readonly string[];
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Rebuilds an SQLite table to a new shape, keeping its rows. Run it in a migration with
 * `disableForeignKeys: true`; the Migrator then checks `PRAGMA foreign_key_check` before commit.
 *
 * @example
 * codeMigrations({ '0003_jobs_strict': { disableForeignKeys: true, up: (db) => rebuildTable(db, {
 *   table: 'jobs', createSql: 'create table {{table}} (id integer primary key, name text not null check (name <> \'\'))' }) } })
 */
export async function rebuildTable(db: AnyKysely, options: RebuildTableOptions): Promise<void> {
  const { table } = options;
  if (!IDENT.test(table)) {
    throw new MigrationError(
      'E_MIGRATION_SOURCE',
      `rebuildTable: table "${table}" is not a plain identifier`,
      {
        details: { field: 'table' },
      },
    );
  }
  const fk = await sql<{ foreign_keys: number }>`PRAGMA foreign_keys`.execute(db);
  if (Number(fk.rows[0]?.foreign_keys) === 1) {
    throw new MigrationError(
      'E_MIGRATION_FOREIGN_KEY',
      'rebuildTable needs foreign keys off: declare the migration with disableForeignKeys: true',
    );
  }
  const tmp = `${table}__rebuild`;
  await sql.raw(options.createSql.replaceAll('{{table}}', `"${tmp}"`)).execute(db);
  const oldCols = (
    await sql<{ name: string }>`select name from pragma_table_info(${table})`.execute(db)
  ).rows.map((r) => r.name);
  const newCols = (
    await sql<{ name: string }>`select name from pragma_table_info(${tmp})`.execute(db)
  ).rows.map((r) => r.name);
  const cols = options.columns ?? newCols.filter((c) => oldCols.includes(c));
  for (const c of cols) {
    if (!IDENT.test(c))
      throw new MigrationError(
        'E_MIGRATION_SOURCE',
        `rebuildTable: column "${c}" is not a plain identifier`,
      );
  }
  const list = cols.map((c) => `"${c}"`).join(', ');
  await sql.raw(`insert into "${tmp}" (${list}) select ${list} from "${table}"`).execute(db);
  await sql.raw(`drop table "${table}"`).execute(db);
  await sql.raw(`alter table "${tmp}" rename to "${table}"`).execute(db);
  for (const stmt of options.afterSql ?? []) await sql.raw(stmt).execute(db);
}
