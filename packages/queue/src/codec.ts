// The spec/row codec: how a JobSpec is stored (JSON, bytes as `{ $bytes: base64 }`), how a
// stored row becomes the public Job, and the opaque page cursors. Pure functions, no I/O.

import {
  isCrystalMathError,
  type JobSpec,
  type JsonValue,
  type RunnerHandle,
  type RunnerStatus,
  ValidationError,
} from '@crystalmath/core';
import type { DepRow, JobRow } from './store/store.js';
import { JOB_STATES, type Job, type JobState, type Metadata } from './types.js';

export function encodeSpec(spec: JobSpec): string {
  // The replacer costs; only bytes to stage in need it.
  const bytes = spec.inputs?.some((i) => 'content' in i && i.content instanceof Uint8Array);
  if (!bytes) return JSON.stringify(spec);
  return JSON.stringify(spec, (_k, v: unknown) =>
    v instanceof Uint8Array ? { $bytes: Buffer.from(v).toString('base64') } : v,
  );
}

export function decodeSpec(text: string): JobSpec {
  if (!text.includes('"$bytes"')) return JSON.parse(text) as JobSpec;
  return JSON.parse(text, (_k, v: unknown) => {
    const o = v as { $bytes?: unknown } | null;
    return o !== null && typeof o === 'object' && typeof o.$bytes === 'string'
      ? new Uint8Array(Buffer.from(o.$bytes, 'base64'))
      : v;
  }) as JobSpec;
}

export function zeroCounts(): Record<JobState, number> {
  return Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
}

/** Dependency rows grouped by job id, as `Job.dependsOn` lists. */
export function dependsOnById(deps: readonly DepRow[]): Map<number, Job['dependsOn'][number][]> {
  const out = new Map<number, Job['dependsOn'][number][]>();
  for (const d of deps) {
    const list = out.get(Number(d.job_id)) ?? [];
    list.push({ job: String(d.parent_id), condition: d.condition });
    out.set(Number(d.job_id), list);
  }
  return out;
}

/** A stored row as the public Job (PostgreSQL may return numeric columns as strings). */
export function rowToJob(r: JobRow, dependsOn: Job['dependsOn']): Job {
  const num = (v: number | null): number | null => (v === null ? null : Number(v));
  return {
    id: String(r.id),
    name: r.name,
    state: r.state,
    target: r.target,
    priority: Number(r.priority),
    spec: decodeSpec(r.spec),
    workflowId: r.workflow_id === null ? null : String(r.workflow_id),
    workflowKey: r.workflow_key,
    dependsOn,
    attempt: Number(r.attempt),
    attemptsBeforeRetry: Number(r.attempt_base),
    maxAttempts: Number(r.max_attempts),
    runAt: Number(r.run_at),
    idempotencyKey: r.idempotency_key,
    tags: JSON.parse(r.tags) as string[],
    metadata: JSON.parse(r.metadata) as Metadata,
    handle: r.handle === null ? null : (JSON.parse(r.handle) as RunnerHandle),
    runnerStatus: r.runner_status === null ? null : (JSON.parse(r.runner_status) as RunnerStatus),
    exitCode: num(r.exit_code),
    reason: r.reason,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    startedAt: num(r.started_at),
    endedAt: num(r.ended_at),
    result:
      r.result === null || r.result === undefined ? null : (JSON.parse(r.result) as JsonValue),
  };
}

/** An opaque page cursor: the last id of a page, tagged with what it pages (`j`, `w`). */
export function makeCursor(kind: string, id: number): string {
  return Buffer.from(`${kind}:${id}`).toString('base64url');
}

/** The id in a cursor `makeCursor(kind, ...)` made, or undefined for none; E_VALIDATION otherwise. */
export function readCursor(cursor: unknown, kind: string, from: string): number | undefined {
  if (cursor === undefined) return undefined;
  const text = typeof cursor === 'string' ? Buffer.from(cursor, 'base64url').toString() : '';
  const m = new RegExp(`^${kind}:([0-9]{1,15})$`).exec(text);
  if (!m) throw new ValidationError('cursor', `is not a cursor returned by ${from}`);
  return Number(m[1]);
}

/** An error as one line for a job's `reason` or a log: its code first where it has one. */
export function errorMessage(error: unknown): string {
  if (isCrystalMathError(error)) return `${error.code}: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}
