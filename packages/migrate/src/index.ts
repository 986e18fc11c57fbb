// @crystalmath/migrate: atomic, checksummed schema migrations over kysely (SQLite, PostgreSQL).
export type {
  AnyKysely,
  Dialect,
  Migration,
  MigrationContext,
  MigrationEvent,
  MigrationResult,
  MigrationRunResult,
  MigrationSource,
  MigrationState,
  MigrationStatus,
  NamedMigration,
} from './migration.js';
export { MigrationError } from './migration-error.js';
export { Migrator, type MigratorOptions } from './migrator.js';
export { openDatabase } from './open-database.js';
export { type RebuildTableOptions, rebuildTable } from './rebuild-table.js';
export {
  type CodeMigration,
  codeMigrations,
  folderMigrations,
  type SqlMigration,
} from './sources.js';
export { splitSqlStatements } from './split-sql.js';
