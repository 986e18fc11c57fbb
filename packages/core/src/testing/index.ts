// @crystalmath/core/testing: the conformance suites every Transport and Runner must pass, and
// small helpers for tests. Requires vitest (an optional peer dependency).

export {
  type RunnerConformanceOptions,
  type RunnerFixture,
  runnerConformance,
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
