// The cm_events row and its mapping to the public QueueEvent: one definition for both stores.

import type { JobState, QueueEvent } from '../types.js';

/** A row of cm_events as both dialects return it. */
export interface EventRow {
  seq: number;
  at: number;
  type: string;
  job_id: number | null;
  workflow_id: number | null;
  target: string | null;
  from_state: JobState | null;
  to_state: JobState | null;
  reason: string | null;
}

/** An event row a transaction has produced and will insert before it commits. */
export type PendingEvent = Omit<EventRow, 'seq'>;

/** The columns of cm_events a store inserts, in the order `PendingEvent` values are written. */
export const EVENT_COLUMNS = [
  'at',
  'type',
  'job_id',
  'workflow_id',
  'target',
  'from_state',
  'to_state',
  'reason',
] as const;

/** The public event of a row. `target:limit` carries its new limit in `reason`. */
export function toEvent(r: EventRow): QueueEvent {
  const wf = r.workflow_id === null ? null : String(r.workflow_id);
  switch (r.type) {
    case 'job:state':
      return {
        seq: r.seq,
        at: r.at,
        type: 'job:state',
        jobId: String(r.job_id),
        workflowId: wf,
        target: r.target ?? '',
        from: r.from_state,
        to: r.to_state as JobState,
        reason: r.reason,
      };
    case 'target:limit':
      return {
        seq: r.seq,
        at: r.at,
        type: 'target:limit',
        target: r.target ?? '',
        maxConcurrent: r.reason === null ? null : Number(r.reason),
      };
    case 'workflow:created':
    case 'workflow:done':
      return { seq: r.seq, at: r.at, type: r.type, workflowId: wf ?? '' };
    default:
      return {
        seq: r.seq,
        at: r.at,
        type: r.type as 'queue:paused' | 'queue:resumed',
        target: r.target,
      };
  }
}
