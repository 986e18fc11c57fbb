// @crystalmath/runner-process: detached jobs on this machine or any SSH host, with status that
// cannot lie (exit records written by a wrapper, PID identity checked by start time and boot id).

export { LocalRunner, type LocalRunnerOptions } from './local-runner.js';
export type { ProcessHandleData } from './process-handle.js';
export { ProcessRunner, type ProcessRunnerOptions } from './process-runner.js';
export { SshRunner, type SshRunnerOptions } from './ssh-runner.js';
