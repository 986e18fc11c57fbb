// The one shell-quoting helper. Every package that builds a command line for a POSIX shell
// (a remote login shell over SSH, an sbatch script, a wrapper script) goes through here;
// nothing concatenates user strings into shell text.

import { ValidationError } from './errors.js';

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/**
 * Quotes one string so a POSIX shell reads it back as exactly one word with exactly these bytes.
 *
 * Single quotes preserve everything except a single quote, which is written as `'\''`.
 * NUL cannot appear in a shell word or an argv element, so it is rejected.
 *
 * @example shQuote("it's") // => 'it'\''s'
 */
export function shQuote(value: string, field = 'argument'): string {
  if (value.includes('\0')) throw new ValidationError(field, 'must not contain a NUL byte');
  if (value !== '' && SAFE.test(value)) return value;
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** Quotes each element of `argv` and joins them with spaces: a command line for `sh`. */
export function shJoin(argv: readonly string[], field = 'argv'): string {
  return argv.map((arg, i) => shQuote(arg, `${field}[${i}]`)).join(' ');
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Throws a ValidationError unless `name` is a portable environment variable name. */
export function assertEnvName(name: string, field = 'env'): void {
  if (!ENV_NAME.test(name)) {
    throw new ValidationError(`${field}.${name}`, 'is not a valid environment variable name');
  }
}

/** `export NAME='value'` lines for a POSIX shell script, names validated, values quoted. */
export function shExports(env: Readonly<Record<string, string>>, field = 'env'): string {
  return Object.entries(env)
    .map(([name, value]) => {
      assertEnvName(name, field);
      return `export ${name}=${shQuote(value, `${field}.${name}`)}`;
    })
    .join('\n');
}
