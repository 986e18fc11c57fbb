// @crystalmath/queue: the durable job queue and scheduler.
export type * from './types.js';
export { JOB_STATES, TERMINAL_JOB_STATES } from './types.js';
