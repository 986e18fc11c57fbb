// @crystalmath/runner-slurm: SLURM through sbatch/squeue/sacct/scancel over any Transport,
// with the script generator and the output parsers as pure, separately usable functions.

// The outputs-glob reading of every runner, kept here for existing importers.
export { globToRegExp } from '@crystalmath/core';
export { formatWalltime, parseSlurmDuration } from './format-walltime.js';
export {
  isKnownSlurmState,
  mapSlurmState,
  normaliseSlurmState,
  SLURM_STATE_MAP,
} from './map-slurm-state.js';
export { parseExitCodePair, parseSacct, SACCT_FIELDS, type SacctEntry } from './parse-sacct.js';
export { parseScontrolJobs, type ScontrolJob } from './parse-scontrol-job.js';
export {
  countArrayTasks,
  parseSbatchParsable,
  parseSlurmJobRef,
  type SlurmJobRef,
} from './parse-slurm-job-id.js';
export { parseSqueue, SQUEUE_FORMAT, type SqueueEntry } from './parse-squeue.js';
export {
  type AccountingMode,
  buildPollScript,
  type ExitRecord,
  type PollOutput,
  parseExitFiles,
  parsePollOutput,
  type SlurmCommands,
} from './poll-script.js';
export {
  jobNameHasKey,
  RESERVED_DIRECTIVES,
  type RenderedSlurmScript,
  type RenderSlurmScriptOptions,
  renderSlurmScript,
  type SlurmDirective,
  type SlurmTargetOptions,
  slurmJobName,
  validateSlurmTargetOptions,
} from './render-slurm-script.js';
export { type PollFacts, resolveStatus, type TrackedJob } from './resolve-status.js';
export { SlurmCommandError, SlurmParseError } from './slurm-errors.js';
export {
  SLURM_RESOURCE_FIELDS,
  type SlurmDefaults,
  type SlurmDependency,
  type SlurmDependencyType,
  type SlurmResources,
  validateSlurmResources,
} from './slurm-resources.js';
export {
  ARCHIVE_INPUT_MAX_BYTES,
  type SlurmHandleData,
  SlurmRunner,
  type SlurmRunnerOptions,
  slurmJobId,
} from './slurm-runner.js';
