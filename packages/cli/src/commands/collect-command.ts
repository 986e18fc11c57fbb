// `crystalmath collect <id> [dest]`: copies a job's output files back through its runner
// (stage-out), with a live byte counter on a terminal: large outputs over SSH take a while.
// The runner copies atomically (temporary name, then rename), so the counter watches `dest`.

import { mkdir, readdir, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { CliError } from '../cli-error.js';
import type { CommandContext } from '../command-context.js';
import { findJob } from '../find-by-id.js';
import { formatBytes, formatDuration } from '../format.js';

async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await treeBytes(p);
    else
      total += await stat(p).then(
        (s) => s.size,
        () => 0,
      );
  }
  return total;
}

/** Registers `collect`. */
export function registerCollectCommand(program: Command, ctx: CommandContext): void {
  program
    .command('collect')
    .description("copy a job's output files (its spec's `outputs` globs) to a local folder")
    .argument('<id>', 'job id')
    .argument('[dest]', 'local folder (default: ./<name>-<id>)')
    .option(
      '-g, --glob <pattern>',
      "collect these globs instead of the spec's outputs (repeatable)",
      (v: string, p: string[] = []) => [...p, v],
    )
    .action(async (id: string, destArg: string | undefined, flags: { glob?: string[] }) => {
      await ctx.withQueue(async ({ queue, wired }) => {
        const job = await findJob(queue, id);
        if (!job) throw new CliError('E_QUEUE_JOB_NOT_FOUND', `collect: no job with id "${id}"`);
        if (!job.handle)
          throw new CliError(
            'E_QUEUE_INVALID_STATE',
            `collect: job ${id} has not been submitted yet (${job.state})`,
          );
        const runner = wired.targets[job.target]?.runner;
        if (!runner)
          throw new CliError(
            'E_QUEUE_UNKNOWN_TARGET',
            `collect: job ${id} ran on target "${job.target}", which the config no longer declares`,
          );
        if (!runner.collect)
          throw new CliError(
            'E_UNSUPPORTED',
            `collect: the ${runner.kind} runner of target "${job.target}" cannot collect files`,
          );
        if (!flags.glob && (job.spec.outputs ?? []).length === 0)
          throw new CliError(
            'E_VALIDATION',
            `collect: job ${id} declares no outputs: name the files with --glob, e.g. --glob '*.out'`,
          );
        const dest =
          destArg === undefined
            ? resolve(ctx.io.cwd, `${job.name}-${job.id}`)
            : isAbsolute(destArg)
              ? destArg
              : resolve(ctx.io.cwd, destArg);
        await mkdir(dest, { recursive: true });
        const started = Date.now();
        const tty = ctx.io.stderr.isTTY === true && !ctx.json;
        const timer = tty
          ? setInterval(() => {
              void treeBytes(dest).then((b) => {
                const secs = (Date.now() - started) / 1000;
                ctx.io.stderr.write(
                  `\r\x1b[Kcollecting ${job.name}: ${formatBytes(b)}  ${formatBytes(b / Math.max(secs, 0.1))}/s  ${formatDuration(Date.now() - started)}`,
                );
              });
            }, 250)
          : undefined;
        try {
          const r = await runner.collect(job.handle, dest, {
            ...(flags.glob ? { globs: flags.glob } : {}),
            ...(ctx.io.signal ? { signal: ctx.io.signal } : {}),
          });
          if (tty) ctx.io.stderr.write('\r\x1b[K');
          ctx.emit({ id, dest, ...r }, () =>
            ctx.out(
              `collected ${r.files.length} file(s), ${formatBytes(r.bytes)} into ${dest} in ${formatDuration(Date.now() - started)}`,
            ),
          );
        } finally {
          if (timer) clearInterval(timer);
        }
      });
    });
}
