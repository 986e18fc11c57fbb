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

/**
 * Quotes each element of `argv` and joins them with spaces: the ARGUMENTS of a command.
 * For a whole command, whose first word is in command position, use `shCommand`.
 */
export function shJoin(argv: readonly string[], field = 'argv'): string {
  return argv.map((arg, i) => shQuote(arg, `${field}[${i}]`)).join(' ');
}

/**
 * Words a shell reads specially in command position: POSIX reserved words, those of bash,
 * ksh and zsh. Quoted, each is an ordinary word again (a program name).
 */
export const SHELL_RESERVED_WORDS: ReadonlySet<string> = new Set([
  '!',
  '{',
  '}',
  '[[',
  ']]',
  'case',
  'coproc',
  'do',
  'done',
  'elif',
  'else',
  'end',
  'esac',
  'fi',
  'for',
  'foreach',
  'function',
  'if',
  'in',
  'nocorrect',
  'noglob',
  'repeat',
  'select',
  'then',
  'time',
  'until',
  'while',
]);

/**
 * Quotes the word in command position so the shell reads it as a program name, as
 * `execvp(value)` would: a word containing `=` (else `X=1` is an assignment) or equal to a
 * reserved word (else `if` opens a compound command) is always quoted; other words as `shQuote`.
 *
 * @example shQuoteCommand('X=1') // => "'X=1'" (runs the program `X=1`: not found, status 127)
 */
export function shQuoteCommand(value: string, field = 'argv[0]'): string {
  const word = shQuote(value, field);
  if (word !== value || !(value.includes('=') || SHELL_RESERVED_WORDS.has(value))) return word;
  return `'${value}'`;
}

/**
 * A command line for `sh` that runs `argv` as `execvp` would: the first word quoted by
 * `shQuoteCommand`, the arguments by `shQuote`. Throws a ValidationError for an empty argv.
 *
 * @example shCommand(['PATH=/x', 'ls']) // => "'PATH=/x' ls" (the program `PATH=/x`, not `ls`)
 */
export function shCommand(argv: readonly string[], field = 'argv'): string {
  if (argv.length === 0) throw new ValidationError(field, 'must not be empty');
  return argv
    .map((arg, i) =>
      i === 0 ? shQuoteCommand(arg, `${field}[0]`) : shQuote(arg, `${field}[${i}]`),
    )
    .join(' ');
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
