// @crystalmath/queue/sqlite: the embedded SQLite store on its own entry point (better-sqlite3 is
// a dependency of the package: it works after a plain install), with its maintenance helpers.

export {
  backupSqliteStore,
  checkSqliteStore,
  type SqliteCheckResult,
  type SqliteStoreOptions,
  sqliteStore,
} from './store/sqlite/sqlite-store.js';
