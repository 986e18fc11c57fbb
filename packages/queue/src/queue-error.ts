// The error class of this package.

import { CrystalMathError, type CrystalMathErrorOptions, type ErrorCode } from '@crystalmath/core';

/**
 * The codes a QueueError carries: the `E_QUEUE_*` family, plus `E_STORE` for a failure of the
 * database itself (SQLite or PostgreSQL driver error, missing `pg`). Bad arguments are
 * ValidationErrors (`E_VALIDATION`); a given-up wait is an AbortError (`E_ABORTED`).
 */
export type QueueErrorCode = Extract<ErrorCode, `E_QUEUE_${string}`> | 'E_STORE';

/** Thrown by the queue: unknown ids and targets, illegal transitions, cycles, a closed queue. */
export class QueueError extends CrystalMathError {
  declare readonly code: QueueErrorCode;

  constructor(code: QueueErrorCode, message: string, options: CrystalMathErrorOptions = {}) {
    super(code, `[queue] ${message}`, options);
  }
}
