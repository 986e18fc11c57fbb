// The error base every CrystalMath package throws. Errors carry a stable `code` from a closed
// union so callers branch on codes, never on messages; `isCrystalMathError` recognises them
// across duplicate package copies through a global symbol rather than `instanceof`.

/** Every error code any CrystalMath package can throw. Codes are stable; messages are not. */
export type ErrorCode =
  // input validation (core, every package)
  | 'E_VALIDATION'
  | 'E_PATH_UNSAFE'
  | 'E_ABORTED'
  | 'E_NOT_FOUND'
  | 'E_UNSUPPORTED'
  | 'E_CONFIG'
  // the command line (CLI)
  | 'E_USAGE'
  | 'E_EXISTS'
  // transports
  | 'E_TRANSPORT'
  | 'E_TRANSPORT_TIMEOUT'
  | 'E_TRANSPORT_CLOSED'
  // ssh-pool
  | 'E_SSH_CONNECT'
  | 'E_SSH_AUTH'
  | 'E_SSH_HOSTKEY_UNKNOWN'
  | 'E_SSH_HOSTKEY_MISMATCH'
  | 'E_SSH_HOSTKEY_REVOKED'
  | 'E_SSH_ACQUIRE_TIMEOUT'
  | 'E_SSH_CIRCUIT_OPEN'
  | 'E_SSH_CHANNEL'
  | 'E_SSH_SFTP'
  | 'E_SSH_TIMEOUT'
  | 'E_SSH_POOL_CLOSED'
  | 'E_SSH_CONFIG'
  // migrate
  | 'E_MIGRATION_CHECKSUM'
  | 'E_MIGRATION_UNKNOWN'
  | 'E_MIGRATION_ORDER'
  | 'E_MIGRATION_FAILED'
  | 'E_MIGRATION_LOCK_TIMEOUT'
  | 'E_MIGRATION_FOREIGN_KEY'
  | 'E_MIGRATION_SOURCE'
  // runners
  | 'E_RUNNER_SUBMIT'
  | 'E_RUNNER_POLL'
  | 'E_RUNNER_CANCEL'
  | 'E_RUNNER_HANDLE'
  | 'E_RUNNER_COLLECT'
  // for any runner adapter, first- or third-party: a scheduler command failed, or its output
  // had an unexpected shape (the SLURM runner predates them and keeps its own two codes)
  | 'E_RUNNER_COMMAND'
  | 'E_RUNNER_PARSE'
  | 'E_RUNNER_TIMEOUT'
  | 'E_SLURM_COMMAND'
  | 'E_SLURM_PARSE'
  // queue
  | 'E_QUEUE_CYCLE'
  | 'E_QUEUE_UNKNOWN_DEPENDENCY'
  | 'E_QUEUE_UNKNOWN_TARGET'
  | 'E_QUEUE_JOB_NOT_FOUND'
  | 'E_QUEUE_INVALID_STATE'
  | 'E_QUEUE_DUPLICATE'
  | 'E_QUEUE_CLOSED'
  | 'E_STORE'
  // artifacts (core's ArtifactStore, the queue's collection)
  | 'E_ARTIFACT_CHECKSUM'
  | 'E_ARTIFACT_STORE'
  | 'E_ARTIFACT_MISSING';

const BRAND = Symbol.for('crystalmath.error');

/** Options accepted by every CrystalMath error constructor. */
export interface CrystalMathErrorOptions {
  readonly cause?: unknown;
  /** Structured, secret-free context (field names, host, job id). Shown by `toJSON`. */
  readonly details?: Readonly<Record<string, unknown>>;
}

/**
 * Base class of every error thrown by CrystalMath.
 *
 * Match errors by code: `if (isCrystalMathError(err, 'E_SSH_AUTH')) ...`.
 */
export class CrystalMathError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: CrystalMathErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details ?? {};
    Object.defineProperty(this, BRAND, { value: true, enumerable: false });
  }

  toJSON(): { name: string; code: ErrorCode; message: string; details: Record<string, unknown> } {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      details: { ...this.details },
    };
  }
}

/** Thrown when an input does not satisfy its contract; `field` names the offending input. */
export class ValidationError extends CrystalMathError {
  readonly field: string;
  constructor(field: string, message: string, options: CrystalMathErrorOptions = {}) {
    super('E_VALIDATION', `${field}: ${message}`, {
      ...options,
      details: { ...options.details, field },
    });
    this.field = field;
  }
}

/** Thrown when a path would escape its root or is not a safe relative path. */
export class UnsafePathError extends CrystalMathError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('E_PATH_UNSAFE', `${field}: ${message}`, { details: { field } });
    this.field = field;
  }
}

/** Thrown when an operation is given up because its AbortSignal fired. */
export class AbortError extends CrystalMathError {
  constructor(message = 'operation aborted', options: CrystalMathErrorOptions = {}) {
    super('E_ABORTED', message, options);
  }
}

/** Thrown by a transport when a command or file operation fails for a reason other than the
 * command's own exit status (spawn failure, missing file, I/O error). */
export class TransportError extends CrystalMathError {}

/**
 * True when `value` is a CrystalMath error (from any copy of this package), optionally with
 * the given code.
 */
export function isCrystalMathError(value: unknown, code?: ErrorCode): value is CrystalMathError {
  if (typeof value !== 'object' || value === null) return false;
  if ((value as Record<symbol, unknown>)[BRAND] !== true) return false;
  return code === undefined || (value as CrystalMathError).code === code;
}

/** Throws an AbortError carrying the signal's reason when `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what = 'operation'): void {
  if (signal?.aborted) throw new AbortError(`${what} aborted`, { cause: signal.reason });
}
