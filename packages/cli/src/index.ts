// @crystalmath/cli: the `crystalmath` command. Its pieces are exported for programs that want
// the same configuration file and wiring: load a config, open the queue it describes, render
// the watch screen, or run the CLI in-process.

export { CliError, errorJson, formatError } from './cli-error.js';
export type { CliIo, OutputStream } from './cli-io.js';
export { processIo } from './cli-io.js';
export { CommandContext, type GlobalOptions } from './command-context.js';
export { checkTarget, type TargetCheck } from './commands/targets-commands.js';
export {
  type CrystalMathConfigInput,
  configSchema,
  localTargetSchema,
  type ParsedConfig,
  type ResourcesConfig,
  resourcesSchema,
  type SshConfig,
  sgeTargetSchema,
  slurmTargetSchema,
  sshSchema,
  sshTargetSchema,
  storeSchema,
  type TargetConfig,
  targetSchema,
} from './config/config-schema.js';
export {
  assertKnownTarget,
  CONFIG_FILE_NAMES,
  findConfigFile,
  type LoadConfigOptions,
  loadConfig,
  parseConfigText,
  pickTarget,
  type ResolvedConfig,
  resolveConfig,
  type StoreConfig,
} from './config/load-config.js';
export { ExitCode, type ExitCodeValue, exitCodeFor } from './exit-codes.js';
export { type Colors, colors } from './format.js';
export {
  jobFileSchema,
  type ParsedJobFile,
  parseJobFile,
  parseWorkflowFile,
  readDataFile,
  workflowFileSchema,
} from './job-file.js';
export { createProgram, main } from './main.js';
export {
  type ConfiguredQueue,
  type OpenConfiguredQueueOptions,
  openConfiguredQueue,
  storeFactory,
} from './open-configured-queue.js';
export {
  describeEvent,
  type RenderWatchOptions,
  renderWatch,
  type WatchSnapshot,
} from './render/render-watch.js';
export { type WiredTarget, type WiredTargets, wireTargets } from './wire-targets.js';
