// The error class of this package.

import { CrystalMathError, type CrystalMathErrorOptions, type ErrorCode } from '@crystalmath/core';

/** Thrown by the queue: unknown ids and targets, illegal transitions, cycles, a closed queue. */
export class QueueError extends CrystalMathError {
  constructor(code: ErrorCode, message: string, options: CrystalMathErrorOptions = {}) {
    super(code, `[queue] ${message}`, options);
  }
}
