// @crystalmath/migrate: atomic, checksummed schema migrations over kysely (SQLite, PostgreSQL).
export { isMigrationDb } from './guard.js';
export {
  type AnyKysely,
  compareMigrationNames,
  type Dialect,
  type Migration,
  type MigrationContext,
  type MigrationEvent,
  type MigrationResult,
  type MigrationRunResult,
  type MigrationSource,
  type MigrationState,
  type MigrationStatus,
  type NamedMigration,
} from './migration.js';
export { MigrationError } from './migration-error.js';
export { Migrator, type MigratorOptions } from './migrator.js';
export { type OpenDatabaseOptions, openDatabase } from './open-database.js';
export {
  type ForeignKeyViolation,
  foreignKeyViolations,
  type RebuildTableOptions,
  rebuildTable,
} from './rebuild-table.js';
export {
  type CodeMigration,
  codeMigrations,
  folderMigrations,
  type SqlMigration,
} from './sources.js';
export { splitSqlStatements } from './split-sql.js';
