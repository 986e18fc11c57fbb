// @crystalmath/queue/postgres: the PostgreSQL store on its own entry point. `pg` is an optional
// peer dependency, imported only when a store is opened: install it next to the queue to use this.

export { type PostgresStoreOptions, postgresStore } from './store/postgres/postgres-store.js';
