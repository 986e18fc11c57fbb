// The one error class of this package. It carries the per-migration results of the run.

import { CrystalMathError, type CrystalMathErrorOptions, type ErrorCode } from '@crystalmath/core';
import type { MigrationResult } from './migration.js';

type MigrationErrorCode = Extract<ErrorCode, `E_MIGRATION_${string}`>;

/** Thrown when a migration run is refused or fails; `results` says what ran. */
export class MigrationError extends CrystalMathError {
  readonly results: readonly MigrationResult[];
  constructor(
    code: MigrationErrorCode,
    message: string,
    options: CrystalMathErrorOptions & { readonly results?: readonly MigrationResult[] } = {},
  ) {
    super(code, `[migrate] ${message}`, options);
    this.results = options.results ?? [];
  }
}
