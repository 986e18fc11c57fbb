// Opens a kysely instance for a path or a postgres:// URL, loading the driver on demand so a
// user of one database does not need the other's driver installed.

import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import type { AnyKysely } from './migration.js';
import { MigrationError } from './migration-error.js';

/** A kysely instance over better-sqlite3 (a file path) or pg (a `postgres://` URL). */
export async function openDatabase(target: string): Promise<AnyKysely> {
  if (/^postgres(ql)?:\/\//.test(target)) {
    const pg = await import('pg').catch((cause) => {
      throw new MigrationError(
        'E_MIGRATION_SOURCE',
        'the pg package is needed for PostgreSQL: npm i pg',
        { cause },
      );
    });
    const Pool = (pg.default ?? pg).Pool;
    return new Kysely({
      dialect: new PostgresDialect({ pool: new Pool({ connectionString: target, max: 2 }) }),
    });
  }
  const mod = await import('better-sqlite3').catch((cause) => {
    throw new MigrationError(
      'E_MIGRATION_SOURCE',
      'the better-sqlite3 package is needed for SQLite: npm i better-sqlite3@12',
      {
        cause,
      },
    );
  });
  const Database = mod.default;
  const database = new Database(target);
  database.pragma('journal_mode = WAL');
  database.pragma('foreign_keys = ON');
  return new Kysely({ dialect: new SqliteDialect({ database }) });
}
