// The `crystalmath` program: commander wiring of every command, and `main(argv, io)`, which
// runs one invocation and returns its exit code instead of exiting, so tests drive the real
// CLI in-process. Errors become one line on stderr (`crystalmath: <message> [<code>]`).

import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { errorJson, formatError } from './cli-error.js';
import { type CliIo, processIo } from './cli-io.js';
import { CommandContext, type GlobalOptions } from './command-context.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';

type Register = (program: Command, ctx: CommandContext) => void;

/**
 * The command modules, in help order, loaded on demand: `crystalmath list` loads only the job
 * commands and what they need, not the SSH pool, the watch screen or the progress bar.
 */
const COMMAND_MODULES: readonly {
  readonly names: readonly string[];
  readonly load: () => Promise<Register>;
}[] = [
  {
    names: ['init'],
    load: async () => (await import('./commands/init-command.js')).registerInitCommand,
  },
  {
    names: ['targets'],
    load: async () => (await import('./commands/targets-commands.js')).registerTargetsCommands,
  },
  {
    names: ['submit', 'list', 'ls', 'show', 'logs', 'cancel', 'retry'],
    load: async () => (await import('./commands/jobs-commands.js')).registerJobCommands,
  },
  {
    names: ['workflow'],
    load: async () => (await import('./commands/workflow-commands.js')).registerWorkflowCommands,
  },
  {
    names: ['collect'],
    load: async () => (await import('./commands/collect-command.js')).registerCollectCommand,
  },
  {
    names: ['pause', 'resume', 'prune'],
    load: async () => (await import('./commands/control-commands.js')).registerControlCommands,
  },
  {
    names: ['watch'],
    load: async () => (await import('./commands/watch-command.js')).registerWatchCommand,
  },
  {
    names: ['run'],
    load: async () => (await import('./commands/run-command.js')).registerRunCommand,
  },
];

/** Global options that take a value, so the command name is found after them. */
const GLOBAL_WITH_VALUE = new Set(['-c', '--config']);

/** The first word of `argv` that is not a global option (the command's name), if any. */
function commandName(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') return undefined;
    if (GLOBAL_WITH_VALUE.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    return a;
  }
  return undefined;
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/**
 * Builds the commander program for one invocation. With `argv`, only the module of the command
 * it names is loaded (all of them for help, or a name that is no command).
 */
export async function createProgram(
  io: CliIo,
  argv?: readonly string[],
): Promise<{ program: Command; ctx: CommandContext }> {
  const program = new Command('crystalmath');
  const ctx = new CommandContext(io, () => program.opts<GlobalOptions>());
  program
    .description('Run and follow computational jobs on this machine, SSH hosts and SLURM clusters.')
    .version(version(), '-V, --version')
    .option('-c, --config <file>', 'configuration file (default: ./crystalmath.config.{json,yaml})')
    .option('--json', 'machine-readable output (JSON; errors as JSON on stderr)')
    .option('--no-color', 'no colours in human output')
    .showHelpAfterError('(run `crystalmath --help` for usage)')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride();
  const name = argv === undefined ? undefined : commandName(argv);
  const one = COMMAND_MODULES.find((m) => name !== undefined && m.names.includes(name));
  const modules = one ? [one] : COMMAND_MODULES;
  const registers = await Promise.all(modules.map((m) => m.load()));
  for (const register of registers) register(program, ctx);
  for (const sub of program.commands) {
    sub.exitOverride();
    for (const s of sub.commands) s.exitOverride();
  }
  return { program, ctx };
}

/**
 * Runs `crystalmath` with `argv` (without `node` and the script) and returns the exit code.
 *
 * @example
 * const code = await main(['list', '--json']);
 */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  const { program, ctx } = await createProgram(io, argv);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (
        err.code === 'commander.helpDisplayed' ||
        err.code === 'commander.version' ||
        err.code === 'commander.help'
      )
        return ExitCode.OK;
      return ExitCode.USAGE;
    }
    if (ctx.json) io.stderr.write(`${JSON.stringify(errorJson(err))}\n`);
    else io.stderr.write(`crystalmath: ${formatError(err)}\n`);
    if (io.env.CRYSTALMATH_DEBUG && err instanceof Error && err.stack)
      io.stderr.write(`${err.stack}\n`);
    return exitCodeFor(err);
  }
}
