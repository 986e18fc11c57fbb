// @crystalmath/runner-sge: Grid Engine through qsub/qstat/qacct/qdel over any Transport, with
// the script generator and the output parsers as pure, separately usable functions.

export {
  FAILED_KILLED,
  FAILED_LIMIT,
  mapQacct,
  mapSgeState,
  type SgeAccountingState,
  type SgeQstatState,
} from './map-sge-state.js';
export { parseQacct, parseSgeMemory, parseSgeTime, type QacctRecord } from './parse-qacct.js';
export { parseQstatJErrors } from './parse-qstat-j.js';
export { isQstatXml, parseQstatXml, type QstatEntry } from './parse-qstat-xml.js';
export { parseQsubTerse } from './parse-qsub.js';
export {
  buildPollScript,
  type PollOutput,
  parseJobFiles,
  parsePollOutput,
  type SgeCommands,
} from './poll-script.js';
export {
  ALLOWED_EXTRA_OPTIONS,
  type RenderedSgeScript,
  type RenderSgeScriptOptions,
  renderSgeScript,
  type SgeDirective,
  sgeJobName,
} from './render-sge-script.js';
export {
  countTaskRange,
  type ExitRecord,
  type PollFacts,
  resolveStatus,
  signalName,
  type TrackedJob,
} from './resolve-status.js';
export { SgeCommandError, SgeParseError } from './sge-errors.js';
export {
  countSgeArrayTasks,
  parseSgeArray,
  SGE_RESOURCE_FIELDS,
  type SgeDefaults,
  type SgeResources,
  validateSgeResources,
} from './sge-resources.js';
export { type SgeHandleData, SgeRunner, type SgeRunnerOptions, sgeJobId } from './sge-runner.js';
