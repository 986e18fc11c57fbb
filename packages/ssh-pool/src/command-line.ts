// The one place that turns a Transport command into the text the remote login shell runs.
// Every user string goes through core's shQuote; names are validated; nothing is concatenated
// unquoted. The final `exec` makes the command replace the shell, so its exit signal and
// status reach us unchanged and a session signal reaches it directly.

import {
  assertEnvName,
  type Command,
  shCommand,
  shQuote,
  ValidationError,
} from '@crystalmath/core';

/**
 * Linux refuses one execve argument longer than 128 KiB (MAX_ARG_STRLEN), and sshd passes the
 * whole command line as one argument to the login shell.
 */
export const MAX_COMMAND_LINE_BYTES = 131_071;

export interface CommandLineOptions {
  /** Directory to run in (relative to the login directory). */
  readonly cwd?: string | undefined;
  readonly env?: Readonly<Record<string, string>> | undefined;
}

/**
 * The shell text for a command: `cd <cwd> && export N=<v> && exec <argv>`, or
 * `exec /bin/sh -c <script>` for a script. Throws `E_VALIDATION` for an empty argv, a NUL byte,
 * an invalid variable name or a line longer than the remote limit.
 *
 * @example
 * buildCommandLine(['printf', '%s', "it's"], { cwd: 'jobs/a', env: { X: '1' } });
 * // => "cd jobs/a && export X=1 && exec printf %s 'it'\''s'"
 */
export function buildCommandLine(command: Command, options: CommandLineOptions = {}): string {
  const parts: string[] = [];
  if (options.cwd !== undefined) {
    if (options.cwd === '') throw new ValidationError('options.cwd', 'must not be empty');
    parts.push(`cd ${shQuote(options.cwd, 'options.cwd')}`);
  }
  for (const [name, value] of Object.entries(options.env ?? {})) {
    assertEnvName(name, 'options.env');
    if (typeof value !== 'string') {
      throw new ValidationError(`options.env.${name}`, 'must be a string');
    }
    parts.push(`export ${name}=${shQuote(value, `options.env.${name}`)}`);
  }
  if (Array.isArray(command)) {
    const argv = command as readonly string[];
    if (argv.length === 0) throw new ValidationError('argv', 'must not be empty');
    argv.forEach((arg, i) => {
      if (typeof arg !== 'string') throw new ValidationError(`argv[${i}]`, 'must be a string');
    });
    // `exec -x` would be read as an option by the shell's exec (dash has no `--`): a program
    // whose name starts with '-' runs as a plain command instead. Either way the first word is
    // quoted as a program name (`X=1` is not an assignment, `if` not a reserved word).
    parts.push(`${(argv[0] as string).startsWith('-') ? '' : 'exec '}${shCommand(argv)}`);
  } else {
    const script = (command as { readonly script?: unknown }).script;
    if (typeof script !== 'string') {
      throw new ValidationError('command.script', 'must be a string');
    }
    parts.push(`exec /bin/sh -c ${shQuote(script, 'command.script')}`);
  }
  const line = parts.join(' && ');
  const bytes = Buffer.byteLength(line);
  if (bytes > MAX_COMMAND_LINE_BYTES) {
    throw new ValidationError(
      Array.isArray(command) ? 'argv' : 'command.script',
      `the command line is ${bytes} bytes; a remote shell accepts at most ${MAX_COMMAND_LINE_BYTES}: ` +
        'write large inputs to a file (writeFile) and pass its path, or feed them through stdin',
    );
  }
  return line;
}
