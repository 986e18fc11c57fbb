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

/**
 * Shell lines that define `cm_nl` (a line feed) and `cm_cr` (a carriage return), which
 * `shQuoteOneLine` and `shCommandOneLine` refer to. Put them in a script before any line that
 * uses those helpers.
 */
export const SH_LINE_BREAK_VARS: readonly string[] = [
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a template
  "cm_nl=$(printf '\\nx'); cm_nl=${cm_nl%x}",
  "cm_cr=$(printf '\\r')",
];

/**
 * Quotes one string like `quote` (`shQuote` by default, `shQuoteCommand` for a command word), but
 * so that the shell text stays on ONE line: each LF and CR inside the value is spelt as the fixed
 * word `"$cm_nl"` / `"$cm_cr"` between quoted pieces (define them with `SH_LINE_BREAK_VARS`).
 *
 * Batch schedulers read directives anywhere in a script, even inside a quoted string (Grid
 * Engine's `#$`, sbatch's `#PBS`), and sbatch refuses a script with CR LF; a value that keeps its
 * line breaks could inject scheduler options. Use this for every user value in a batch script.
 *
 * @example shQuoteOneLine('a\n#PBS -N x') // => 'a'"$cm_nl"'#PBS -N x'
 */
export function shQuoteOneLine(value: string, field = 'argument', quote = shQuote): string {
  if (!/[\r\n]/.test(value)) return quote(value, field);
  return value
    .split(/(\r|\n)/)
    .map((piece, i) => {
      if (piece === '\n') return '"$cm_nl"';
      if (piece === '\r') return '"$cm_cr"';
      if (piece === '') return '';
      return i === 0 ? quote(piece, field) : shQuote(piece, field);
    })
    .join('');
}

/**
 * `shCommand` for a batch script: the first word quoted as a program, every word kept on one
 * line by `shQuoteOneLine`. Throws a ValidationError for an empty argv.
 */
export function shCommandOneLine(argv: readonly string[], field = 'argv'): string {
  if (argv.length === 0) throw new ValidationError(field, 'must not be empty');
  return argv
    .map((arg, i) =>
      i === 0
        ? shQuoteOneLine(arg, `${field}[0]`, shQuoteCommand)
        : shQuoteOneLine(arg, `${field}[${i}]`),
    )
    .join(' ');
}

/** `export NAME=value` lines like `shExports`, each value kept on one line (`shQuoteOneLine`). */
export function shExportsOneLine(env: Readonly<Record<string, string>>, field = 'env'): string[] {
  return Object.entries(env).map(([name, value]) => {
    assertEnvName(name, field);
    return `export ${name}=${shQuoteOneLine(value, `${field}.${name}`)}`;
  });
}
