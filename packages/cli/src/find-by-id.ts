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

/** The workflow with this id, or null when there is none (or the id cannot be one). */
export async function findWorkflow(queue: Queue, id: string): Promise<Workflow | null> {
  try {
    return await queue.workflow(id);
  } catch (err) {
    if (isCrystalMathError(err, 'E_VALIDATION')) return null;
    throw err;
  }
}
