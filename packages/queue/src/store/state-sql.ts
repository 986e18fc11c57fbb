// The job-state lists both stores' SQL uses, derived from the one vocabulary in
// @crystalmath/core (status.ts), so a new state is added in one place.

import {
  HANDLED_JOB_STATES,
  type JobState,
  LIVE_JOB_STATES,
  OPEN_JOB_STATES,
  TERMINAL_JOB_STATES,
} from '@crystalmath/core';
import type { SchedulerRow } from './store.js';

/** `('a', 'b')`: states as an SQL list, for `state in ${...}`. */
export function sqlList(states: Iterable<JobState>): string {
  return `(${[...states].map((s) => `'${s}'`).join(', ')})`;
}

/** The terminal states, for `state in ${TERMINAL_SQL}`. */
export const TERMINAL_SQL = sqlList(TERMINAL_JOB_STATES);
/** The states that hold a target slot. */
export const LIVE_SQL = sqlList(LIVE_JOB_STATES);
/** The states that are not terminal. */
export const OPEN_SQL = sqlList(OPEN_JOB_STATES);
/** The states a runner holds a handle for (polled). */
export const HANDLED_SQL = sqlList(HANDLED_JOB_STATES);

/**
 * The open-jobs predicate on `column` as an OR chain (`state = 'waiting' or ...`), the spelling
 * of SQLite's partial index `cm_jobs_open` (migration 0002): SQLite uses a partial index only
 * when a query repeats its WHERE term, and evaluates `IN (...)` through a temporary table.
 */
export function openOrChain(column: string): string {
  return `(${OPEN_JOB_STATES.map((s) => `${column} = '${s}'`).join(' or ')})`;
}

/**
 * A scheduler's heartbeat as one upsert on `cm_schedulers`, its eight values in column order
 * (owner, host, pid, targets, started_at, heartbeat_at, heartbeat_ms, health); `param(i)`
 * spells the i-th placeholder (1-based) in the dialect.
 */
export function schedulerUpsertSql(param: (i: number) => string): string {
  const values = [1, 2, 3, 4, 5, 6, 7, 8].map(param).join(', ');
  return `insert into cm_schedulers (owner, host, pid, targets, started_at, heartbeat_at, heartbeat_ms, health)
     values (${values})
     on conflict (owner) do update set host = excluded.host, pid = excluded.pid,
       targets = excluded.targets, started_at = excluded.started_at,
       heartbeat_at = excluded.heartbeat_at, heartbeat_ms = excluded.heartbeat_ms,
       health = excluded.health`;
}

/** The eight values of `schedulerUpsertSql`, in its column order. */
export function schedulerUpsertValues(row: SchedulerRow): (string | number)[] {
  return [
    row.owner,
    row.host,
    row.pid,
    row.targets,
    row.started_at,
    row.heartbeat_at,
    row.heartbeat_ms,
    row.health,
  ];
}
