// Errors specific to the SLURM runner: a scheduler command that failed, and scheduler output
// that could not be understood. Both carry a stable code and secret-free details.

import { CrystalMathError, type CrystalMathErrorOptions } from '@crystalmath/core';

/** Thrown when `sbatch`, `squeue`, `sacct` or `scancel` fails in a way the runner cannot absorb. */
export class SlurmCommandError extends CrystalMathError {
  constructor(message: string, options: CrystalMathErrorOptions = {}) {
    super('E_SLURM_COMMAND', `[runner-slurm] ${message}`, options);
  }
}

/** Thrown when scheduler output does not have the expected shape. */
export class SlurmParseError extends CrystalMathError {
  constructor(message: string, options: CrystalMathErrorOptions = {}) {
    super('E_SLURM_PARSE', `[runner-slurm] ${message}`, options);
  }
}

/** Keeps at most `max` characters of command output for an error message or detail. */
export function clip(text: string, max = 500): string {
  const t = text.trim();
  return t.length <= max ? t : `${t.slice(0, max)}…`;
}
