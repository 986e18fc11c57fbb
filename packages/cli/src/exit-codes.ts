// The exit codes of the `crystalmath` command, one per kind of failure, so scripts can branch
// on them without parsing messages. They are documented in docs/cli.md; never renumber them.

import { type ErrorCode, isCrystalMathError } from '@crystalmath/core';

/** Exit codes of `crystalmath`. Stable: scripts depend on them. */
export const ExitCode = {
  /** The command did what was asked. */
  OK: 0,
  /** An unexpected failure (a bug, or an error without a more specific code). */
  FAILURE: 1,
  /** The command line itself is wrong: unknown command or option, missing argument. */
  USAGE: 2,
  /** The configuration file is missing or invalid, or names an unknown target. */
  CONFIG: 3,
  /** A job or workflow file, or a value on the command line, is invalid. */
  INVALID_INPUT: 4,
  /** No job or workflow with that id. */
  NOT_FOUND: 5,
  /** A target could not be reached or refused us (connection, authentication, host key, command). */
  UNREACHABLE: 6,
  /** The job is not in a state that allows the operation (cancel a finished job, retry a running one), or what `init` would write exists. */
  CONFLICT: 7,
  /** The store (SQLite file, PostgreSQL) failed or its schema could not be brought up to date. */
  STORE: 8,
  /** `--wait`: the job or workflow ended, but not every job succeeded. */
  JOB_FAILED: 9,
  /** `watch`/`logs --follow`/`--wait` ended by Ctrl-C before the end. */
  INTERRUPTED: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

const BY_CODE: Partial<Record<ErrorCode, ExitCodeValue>> = {
  E_USAGE: ExitCode.USAGE,
  E_EXISTS: ExitCode.CONFLICT,
  E_CONFIG: ExitCode.CONFIG,
  E_SSH_CONFIG: ExitCode.CONFIG,
  E_QUEUE_UNKNOWN_TARGET: ExitCode.CONFIG,
  E_VALIDATION: ExitCode.INVALID_INPUT,
  E_PATH_UNSAFE: ExitCode.INVALID_INPUT,
  E_QUEUE_CYCLE: ExitCode.INVALID_INPUT,
  E_QUEUE_UNKNOWN_DEPENDENCY: ExitCode.INVALID_INPUT,
  E_UNSUPPORTED: ExitCode.INVALID_INPUT,
  E_NOT_FOUND: ExitCode.NOT_FOUND,
  E_QUEUE_JOB_NOT_FOUND: ExitCode.NOT_FOUND,
  E_QUEUE_INVALID_STATE: ExitCode.CONFLICT,
  E_QUEUE_DUPLICATE: ExitCode.CONFLICT,
  E_STORE: ExitCode.STORE,
  E_QUEUE_CLOSED: ExitCode.STORE,
  E_ARTIFACT_STORE: ExitCode.STORE,
  E_ARTIFACT_CHECKSUM: ExitCode.STORE,
  E_MIGRATION_CHECKSUM: ExitCode.STORE,
  E_MIGRATION_UNKNOWN: ExitCode.STORE,
  E_MIGRATION_ORDER: ExitCode.STORE,
  E_MIGRATION_FAILED: ExitCode.STORE,
  E_MIGRATION_LOCK_TIMEOUT: ExitCode.STORE,
  E_MIGRATION_FOREIGN_KEY: ExitCode.STORE,
  E_MIGRATION_SOURCE: ExitCode.STORE,
  E_ABORTED: ExitCode.INTERRUPTED,
};

/** The exit code for an error: by its CrystalMath code, `UNREACHABLE` for transport/SSH/runner failures. */
export function exitCodeFor(err: unknown): ExitCodeValue {
  if (!isCrystalMathError(err)) return ExitCode.FAILURE;
  const mapped = BY_CODE[err.code];
  if (mapped !== undefined) return mapped;
  if (/^E_(SSH|TRANSPORT|RUNNER|SLURM)_?/.test(err.code)) return ExitCode.UNREACHABLE;
  return ExitCode.FAILURE;
}
