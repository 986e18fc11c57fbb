// The queue's schema, applied by @crystalmath/migrate. Written once for both stores; the only
// dialect difference (how an auto-increment key is spelled) branches on `ctx.dialect`.
// Never edit a migration once released: add the next one.

import { codeMigrations, type MigrationSource } from '@crystalmath/migrate';
import { sql } from 'kysely';

type Dialect = 'sqlite' | 'postgres';

function schema(dialect: Dialect): string[] {
  // No AUTOINCREMENT on SQLite (it writes sqlite_sequence on every insert): ids and event seqs
  // are max + 1, and prune never deletes the newest row, so neither is ever reused.
  const pk = dialect === 'postgres' ? 'bigserial primary key' : 'integer primary key';
  return [
    `create table cm_meta (
       id integer primary key check (id = 1), store_id text not null, paused integer not null default 0)`,
    `create table cm_workflows (
       id ${pk}, name text not null, on_failure text not null, idempotency_key text,
       metadata text not null default '{}', created_at bigint not null, done_at bigint)`,
    `create unique index cm_workflows_idem on cm_workflows (idempotency_key) where idempotency_key is not null`,
    `create table cm_jobs (
       id ${pk}, name text not null, state text not null, target text not null,
       priority integer not null default 0, spec text not null,
       workflow_id bigint references cm_workflows(id), workflow_key text,
       attempt integer not null default 0, attempt_base integer not null default 0,
       max_attempts integer not null default 1, backoff text,
       run_at bigint not null, idempotency_key text,
       tags text not null default '[]', metadata text not null default '{}',
       handle text, runner_status text, exit_code integer, reason text,
       lease_owner text, lease_until bigint, cancel_requested integer not null default 0,
       created_at bigint not null, updated_at bigint not null, started_at bigint, ended_at bigint)`,
    // The one index of the hot paths, over open jobs only (finished jobs leave it, so 100k of
    // them cost nothing): claim (state, target, priority desc, id), slot counts and polls
    // (state, target), lease recovery, "anything open?".
    `create index cm_jobs_open on cm_jobs (state, target, priority desc, id)
       where state in ('waiting', 'ready', 'submitting', 'queued', 'running')`,
    `create unique index cm_jobs_idem on cm_jobs (idempotency_key) where idempotency_key is not null`,
    `create index cm_jobs_workflow on cm_jobs (workflow_id, state) where workflow_id is not null`,
    `create index cm_jobs_ended on cm_jobs (ended_at) where ended_at is not null`,
    `create table cm_deps (
       job_id bigint not null references cm_jobs(id) on delete cascade,
       parent_id bigint not null references cm_jobs(id) on delete cascade,
       condition text not null, primary key (job_id, parent_id))`,
    `create index cm_deps_parent on cm_deps (parent_id)`,
    `create table cm_tags (
       job_id bigint not null references cm_jobs(id) on delete cascade, tag text not null,
       primary key (tag, job_id))`,
    `create index cm_tags_job on cm_tags (job_id)`,
    `create table cm_targets (name text primary key, max_concurrent integer, paused integer not null default 0)`,
    // Append-only; `seq` order is commit order on SQLite (one writer at a time).
    `create table cm_events (
       seq ${pk}, at bigint not null, type text not null, job_id bigint, workflow_id bigint,
       target text, from_state text, to_state text, reason text)`,
  ];
}

/**
 * SQLite evaluates a partial index's `state in (...)` through a temporary table on every row
 * written, which halved the insert rate; the same predicate as an OR chain costs a few
 * comparisons. PostgreSQL keeps `in (...)`: it has no such cost there.
 */
const OPEN_INDEX_SQLITE = [
  'drop index cm_jobs_open',
  `create index cm_jobs_open on cm_jobs (state, target, priority desc, id)
     where state = 'waiting' or state = 'ready' or state = 'submitting' or state = 'queued' or state = 'running'`,
];

/**
 * Live schedulers, one row each (written by its heartbeat, deleted on a clean stop): which
 * targets it serves and how it sees them. `targets` and `health` are JSON; `heartbeat_ms` is
 * the writer's interval, so a reader in any process can tell a live row from a dead one.
 */
const SCHEDULERS = [
  `create table cm_schedulers (
     owner text primary key, host text not null, pid integer not null, targets text not null,
     started_at bigint not null, heartbeat_at bigint not null, heartbeat_ms integer not null,
     health text not null default '{}')`,
];

/**
 * Artifacts (docs/artifacts.md): one row per collected file, recorded in the transaction that
 * ends the job's `collecting` phase (so once), gone with its job; the job's structured `result`;
 * and the open-jobs index again, now with `collecting` (an open state), in each dialect's
 * spelling of migration 0001/0002.
 */
function artifacts(dialect: Dialect): string[] {
  const open = ['waiting', 'ready', 'submitting', 'queued', 'running', 'collecting'];
  const where =
    dialect === 'sqlite'
      ? open.map((s) => `state = '${s}'`).join(' or ')
      : `state in (${open.map((s) => `'${s}'`).join(', ')})`;
  return [
    `create table cm_artifacts (
       job_id bigint not null references cm_jobs(id) on delete cascade, path text not null,
       size bigint not null, sha256 text not null, mode integer not null,
       attempt integer not null, created_at bigint not null, primary key (job_id, path))`,
    'alter table cm_jobs add column result text',
    'drop index cm_jobs_open',
    `create index cm_jobs_open on cm_jobs (state, target, priority desc, id) where ${where}`,
  ];
}

/**
 * The queue's migrations, for `@crystalmath/migrate`'s Migrator. Stores apply them on open; you
 * need this only to migrate a database ahead of time (e.g. in a deploy step).
 *
 * @example
 * await new Migrator({ db: kysely, source: queueMigrations }).migrate();
 */
export const queueMigrations: MigrationSource = codeMigrations({
  '0001_queue': {
    // The checksum covers the SQL itself, not the function text a bundler may rewrite.
    checksumText: JSON.stringify({ sqlite: schema('sqlite'), postgres: schema('postgres') }),
    async up(db, ctx) {
      for (const stmt of schema(ctx.dialect)) await sql.raw(stmt).execute(db);
    },
  },
  '0002_open_index_or_chain': {
    checksumText: JSON.stringify({ sqlite: OPEN_INDEX_SQLITE, postgres: [] }),
    async up(db, ctx) {
      if (ctx.dialect !== 'sqlite') return;
      for (const stmt of OPEN_INDEX_SQLITE) await sql.raw(stmt).execute(db);
    },
  },
  '0003_live_schedulers': {
    checksumText: JSON.stringify({ sqlite: SCHEDULERS, postgres: SCHEDULERS }),
    async up(db) {
      for (const stmt of SCHEDULERS) await sql.raw(stmt).execute(db);
    },
  },
  '0004_artifacts': {
    checksumText: JSON.stringify({ sqlite: artifacts('sqlite'), postgres: artifacts('postgres') }),
    async up(db, ctx) {
      for (const stmt of artifacts(ctx.dialect)) await sql.raw(stmt).execute(db);
    },
  },
});
