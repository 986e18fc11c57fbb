// @crystalmath/core: the contracts every CrystalMath package shares, and the few small helpers
// that must exist exactly once (shell quoting, path confinement, job validation).

export * from './artifact-store.js';
export {
  ARRAY_SEVERITY,
  type BatchJobRef,
  BatchStatusCache,
  type BatchStatusCacheOptions,
  endedArrayStatus,
  type ParseBatchHandleOptions,
  parseBatchHandle,
  signalName,
} from './batch-poll.js';
export {
  type BatchExitTrapOptions,
  type BatchScriptBodyOptions,
  batchExitTrap,
  batchScriptBody,
} from './batch-script.js';
export * from './errors.js';
export { globToRegExp } from './glob.js';
export * from './job.js';
export {
  FileArtifactStore,
  type FileArtifactStoreOptions,
} from './local/file-artifact-store.js';
export { LocalTransport, type LocalTransportOptions } from './local/local-transport.js';
export * from './outputs.js';
export * from './quote.js';
export * from './runner.js';
export {
  type CollectJobDirOptions,
  checkRunnerJob,
  checkSpecUnder,
  collectJobDir,
  completeUtf8Length,
  type DownloadMatchingOptions,
  downloadMatching,
  outputPatterns,
  type PlannedInput,
  parseMarkedSections,
  planInputs,
  RUNNER_INTERNAL_DIR,
  readTail,
  recoveredHandle,
  runnerExec,
  stageInputs,
  tailOptions,
} from './runner-files.js';
export * from './safe-path.js';
export * from './status.js';
export { isPermanentTargetError, isTransientTargetError, rootErrorCode } from './target-fault.js';
export type * from './transport.js';
