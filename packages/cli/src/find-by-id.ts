// Looking up jobs and workflows by an id typed by a user: a malformed id is "no such job",
// not a validation error of the store's id format.

import { isCrystalMathError } from '@crystalmath/core';
import type { Job, Queue, Workflow } from '@crystalmath/queue';

/** The job with this id, or null when there is none (or the id cannot be one). */
export async function findJob(queue: Queue, id: string): Promise<Job | null> {
  try {
    return await queue.get(id);
  } catch (err) {
    if (isCrystalMathError(err, 'E_VALIDATION')) return null;
    throw err;
  }
}

/**
 * Workflow ids are printed as `w<n>` so they cannot be taken for job ids (the two share
 * numbers); `w3` and `3` both name workflow 3 where only a workflow can be meant.
 */
export function workflowLabel(id: string): string {
  return `w${id}`;
}

/** The store's id of a workflow typed as `w3` or `3`. */
export function workflowId(text: string): string {
  return /^[wW]\d+$/.test(text) ? text.slice(1) : text;
}

/** Whether `text` has the workflow form `w<n>` (so a job cannot be meant). */
export function isWorkflowRef(text: string): boolean {
  return /^[wW]\d+$/.test(text);
}

/** The workflow with this id (`w3` or `3`), or null when there is none (or the id cannot be one). */
export async function findWorkflow(queue: Queue, id: string): Promise<Workflow | null> {
  try {
    return await queue.workflow(workflowId(id));
  } catch (err) {
    if (isCrystalMathError(err, 'E_VALIDATION')) return null;
    throw err;
  }
}
