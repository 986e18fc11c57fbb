// @crystalmath/queue: the durable job queue and scheduler — priorities, DAGs, per-target
// limits, exactly-once submission — over SQLite (embedded) or PostgreSQL.

export { DEFAULT_DEADLINES, DEFAULT_UNREACHABLE_BACKOFF } from './attorney.js';
export { DEFAULT_HEARTBEAT_MS, HEARTBEAT_LIVE_BEATS } from './heartbeat.js';
export { queueMigrations } from './migrations.js';
export { openQueue } from './open-queue.js';
export { QueueError, type QueueErrorCode } from './queue-error.js';
export { DEFAULT_BACKOFF, DEFAULT_STOP_TIMEOUT_MS, STORE_BACKOFF } from './scheduler.js';
export { type PostgresStoreOptions, postgresStore } from './store/postgres/postgres-store.js';
export { LEGAL_TRANSITIONS } from './store/rules.js';
export {
  backupSqliteStore,
  checkSqliteStore,
  type SqliteCheckResult,
  type SqliteStoreOptions,
  sqliteStore,
} from './store/sqlite/sqlite-store.js';
export type * from './types.js';
export { JOB_STATES, TERMINAL_JOB_STATES } from './types.js';
