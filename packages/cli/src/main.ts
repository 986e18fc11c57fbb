// The `crystalmath` program: commander wiring of every command, and `main(argv, io)`, which
// runs one invocation and returns its exit code instead of exiting, so tests drive the real
// CLI in-process. Errors become one line on stderr (`crystalmath: <message> [<code>]`).

import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { errorJson, formatError } from './cli-error.js';
import { type CliIo, processIo } from './cli-io.js';
import { CommandContext, type GlobalOptions } from './command-context.js';
import { registerCollectCommand } from './commands/collect-command.js';
import { registerControlCommands } from './commands/control-commands.js';
import { registerInitCommand } from './commands/init-command.js';
import { registerJobCommands } from './commands/jobs-commands.js';
import { registerRunCommand } from './commands/run-command.js';
import { registerStoreCommands } from './commands/store-commands.js';
import { registerTargetsCommands } from './commands/targets-commands.js';
import { registerWatchCommand } from './commands/watch-command.js';
import { registerWorkflowCommands } from './commands/workflow-commands.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';

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

/** Builds the commander program for one invocation. */
export function createProgram(io: CliIo): { program: Command; ctx: CommandContext } {
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
  registerInitCommand(program, ctx);
  registerTargetsCommands(program, ctx);
  registerJobCommands(program, ctx);
  registerWorkflowCommands(program, ctx);
  registerCollectCommand(program, ctx);
  registerControlCommands(program, ctx);
  registerWatchCommand(program, ctx);
  registerRunCommand(program, ctx);
  registerStoreCommands(program, ctx);
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
  const { program, ctx } = createProgram(io);
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
