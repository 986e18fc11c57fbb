// @crystalmath/core/testing: the conformance suites every Transport and Runner must pass, and
// small helpers for tests. Requires vitest (an optional peer dependency).

export {
  type ArtifactStoreFixture,
  artifactStoreConformance,
} from './artifact-store-conformance.js';
export {
  RUNNER_RULES,
  type RunnerCaseContext,
  type RunnerCaseResult,
  type RunnerConformanceCase,
  type RunnerConformanceOptions,
  type RunnerFixture,
  runnerConformance,
  runnerConformanceCases,
  runRunnerConformance,
  testJobKey,
  waitForState,
  waitForTerminal,
} from './runner-conformance.js';
export {
  COMMAND_WORDS,
  NASTY_STRINGS,
  type TransportConformanceOptions,
  type TransportFixture,
  transportConformance,
} from './transport-conformance.js';
