// The error the CLI raises for its own problems (config, job files, unknown targets), and the
// one-line rendering of any error: `crystalmath: <message> [<code>]`, with no stack and no
// secret-bearing details.

import { CrystalMathError, type ErrorCode, isCrystalMathError } from '@crystalmath/core';

/** Thrown by the CLI for configuration, job-file and command-line problems. */
export class CliError extends CrystalMathError {
  constructor(
    code: ErrorCode,
    message: string,
    options: { readonly cause?: unknown; readonly details?: Record<string, unknown> } = {},
  ) {
    super(code, message.startsWith('[cli]') ? message : `[cli] ${message}`, options);
  }
}

/** One line describing `err` for a human: the message (first line only) and the code. */
export function formatError(err: unknown): string {
  if (isCrystalMathError(err)) {
    return `${firstLine(err.message)} [${err.code}]`;
  }
  if (err instanceof Error) return firstLine(err.message);
  return firstLine(String(err));
}

/** The error as a JSON object for `--json` output. */
export function errorJson(err: unknown): {
  error: { code: string; message: string; details?: Record<string, unknown> };
} {
  if (isCrystalMathError(err)) {
    return {
      error: { code: err.code, message: firstLine(err.message), details: { ...err.details } },
    };
  }
  return {
    error: {
      code: 'E_UNEXPECTED',
      message: firstLine(err instanceof Error ? err.message : String(err)),
    },
  };
}

function firstLine(s: string): string {
  const line = s.split('\n', 1)[0] ?? '';
  return line.trim();
}
