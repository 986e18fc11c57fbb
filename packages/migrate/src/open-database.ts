// Opens a kysely instance for a path or a postgres:// URL, loading the driver on demand so a
// user of one database does not need the other's driver installed.

import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import type { AnyKysely } from './migration.js';
import { MigrationError } from './migration-error.js';

export interface OpenDatabaseOptions {
  /** SQLite: switch the file to WAL journal mode (persistent). Default true. */
  readonly wal?: boolean;
  /** SQLite: `PRAGMA foreign_keys = ON` for this connection. Default true. */
  readonly foreignKeys?: boolean;
  /** SQLite: fail instead of creating a missing file. Default false. */
  readonly mustExist?: boolean;
}

/** True for a `postgres://` or `postgresql://` URL. */
export function isPostgresUrl(target: string): boolean {
  return /^postgres(ql)?:\/\//.test(target);
}

/** A kysely instance over better-sqlite3 (a file path) or pg (a `postgres://` URL). */
export async function openDatabase(
  target: string,
  options: OpenDatabaseOptions = {},
): Promise<AnyKysely> {
  if (isPostgresUrl(target)) {
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
      { cause },
    );
  });
  const Database = mod.default;
  let database: InstanceType<typeof Database>;
  try {
    database = new Database(target, { fileMustExist: options.mustExist === true });
  } catch (cause) {
    throw new MigrationError(
      'E_MIGRATION_SOURCE',
      `cannot open SQLite database ${target}: ${(cause as Error).message}`,
      { cause, details: { target } },
    );
  }
  if (options.wal !== false) database.pragma('journal_mode = WAL');
  if (options.foreignKeys !== false) database.pragma('foreign_keys = ON');
  return new Kysely({ dialect: new SqliteDialect({ database }) });
}
