// Errors of the Grid Engine runner: a scheduler command that failed, and scheduler output that
// could not be understood. They use core's generic runner codes (`E_RUNNER_COMMAND`,
// `E_RUNNER_PARSE`), the ones any runner adapter outside this repository can use as well.

import { CrystalMathError, type CrystalMathErrorOptions } from '@crystalmath/core';

/** Thrown when `qsub`, `qstat`, `qacct` or `qdel` fails in a way the runner cannot absorb. */
export class SgeCommandError extends CrystalMathError {
  constructor(message: string, options: CrystalMathErrorOptions = {}) {
    super('E_RUNNER_COMMAND', `[runner-sge] ${message}`, options);
  }
}

/** Thrown when scheduler output does not have the expected shape. */
export class SgeParseError extends CrystalMathError {
  constructor(message: string, options: CrystalMathErrorOptions = {}) {
    super('E_RUNNER_PARSE', `[runner-sge] ${message}`, options);
  }
}

/** Keeps at most `max` characters of command output for an error message or detail. */
export function clip(text: string, max = 500): string {
  const t = text.trim();
  return t.length <= max ? t : `${t.slice(0, max)}…`;
}
