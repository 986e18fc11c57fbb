// Shared helpers for this package's tests: re-exports from core and the testbed wiring.

export { isCrystalMathError, type JobSpec } from '@crystalmath/core';
export { NASTY_STRINGS as NASTY_STRINGS_FOR_TESTS } from '@crystalmath/core/testing';
