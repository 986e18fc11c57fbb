// The `crystalmath` program: commander wiring of every command, and `main(argv, io)`, which
// runs one invocation and returns its exit code instead of exiting, so tests drive the real
// CLI in-process. Errors become one line on stderr (`crystalmath: <message> [<code>]`).

import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { CliError, errorJson, formatError } from './cli-error.js';
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
    names: ['artifacts'],
    load: async () => (await import('./commands/artifacts-command.js')).registerArtifactsCommand,
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
  {
    names: ['store'],
    load: async () => (await import('./commands/store-commands.js')).registerStoreCommands,
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
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      // Usage errors are printed by main() in the one-line form every error has.
      outputError: () => {},
    })
    .exitOverride();
  const name = argv === undefined ? undefined : commandName(argv);
  const one = COMMAND_MODULES.find((m) => name !== undefined && m.names.includes(name));
  const modules = one ? [one] : COMMAND_MODULES;
  const registers = await Promise.all(modules.map((m) => m.load()));
  for (const register of registers) register(program, ctx);
  addExamples(program);
  for (const sub of program.commands) {
    sub.exitOverride();
    for (const s of sub.commands) s.exitOverride();
  }
  return { program, ctx };
}

/** Whether `--json` is among the global options (usage errors come before options are read). */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/** A commander error as an E_USAGE CliError: one line, naming the command and a way out. */
function usageError(err: CommanderError, argv: readonly string[]): CliError {
  const name = commandName(argv);
  const text = err.message
    .replace(/^error: /, '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' ');
  let hint = `see \`crystalmath ${name && name !== 'help' ? `${name} ` : ''}--help\``;
  if (name === 'submit' && err.code === 'commander.unknownOption') {
    // `crystalmath submit ls -la`: the command's own options were read as submit's.
    hint = 'put `--` before the command and its options, e.g. `crystalmath submit -- ls -la`';
  }
  return new CliError('E_USAGE', `${name && name !== text ? `${name}: ` : ''}${text} (${hint})`);
}

/** One or two examples at the end of each command's `--help`. */
const EXAMPLES: Readonly<Record<string, readonly string[]>> = {
  init: ['crystalmath init', 'crystalmath init --force   # overwrite the existing file'],
  targets: ['crystalmath targets', 'crystalmath targets check cluster --timeout 30000'],
  check: ['crystalmath targets check', 'crystalmath targets check lab cluster'],
  submit: [
    'crystalmath submit -- pw.x -in scf.in',
    'crystalmath submit --target cluster --walltime 2h --wait --file scf.yaml',
  ],
  list: ['crystalmath list --active', 'crystalmath list --state failed,timeout --limit 200'],
  show: ['crystalmath show 12', 'crystalmath show 12 --json'],
  logs: ['crystalmath logs 12', 'crystalmath logs -f --stderr 12'],
  cancel: ['crystalmath cancel 12', 'crystalmath cancel 12 13 14'],
  retry: ['crystalmath retry 12'],
  workflow: ['crystalmath workflow submit relax.yaml --wait', 'crystalmath workflow show w3'],
  collect: ['crystalmath collect 12', 'crystalmath collect 12 results/ --glob "*.xml"'],
  pause: ['crystalmath pause cluster', 'crystalmath pause   # the whole queue'],
  resume: ['crystalmath resume cluster'],
  prune: ['crystalmath prune --older-than 30d'],
  watch: ['crystalmath watch', 'crystalmath watch -w w3 --exit-when-done'],
  run: ['crystalmath run', 'crystalmath run --json > scheduler.log'],
};

function addExamples(cmd: Command): void {
  for (const sub of cmd.commands) {
    const lines = EXAMPLES[sub.name()];
    if (lines)
      sub.addHelpText('after', `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`);
    addExamples(sub);
  }
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
      const error = usageError(err, argv);
      if (wantsJson(argv)) io.stderr.write(`${JSON.stringify(errorJson(error))}\n`);
      else io.stderr.write(`crystalmath: ${formatError(error)}\n`);
      return ExitCode.USAGE;
    }
    if (ctx.json) io.stderr.write(`${JSON.stringify(errorJson(err))}\n`);
    else io.stderr.write(`crystalmath: ${formatError(err)}\n`);
    if (io.env.CRYSTALMATH_DEBUG && err instanceof Error && err.stack)
      io.stderr.write(`${err.stack}\n`);
    return exitCodeFor(err);
  }
}
