// `crystalmath artifacts <id>` lists the outputs the queue collected for a job (path, size,
// sha256, from its database); `crystalmath artifacts get <id> <path> [dest]` copies one out of
// the artifact store, verified against its recorded sha256 while it streams.

import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { CliError } from '../cli-error.js';
import type { CommandContext } from '../command-context.js';
import { findJob } from '../find-by-id.js';
import { formatBytes } from '../format.js';

/** Registers `artifacts` (list) and `artifacts get`. */
export function registerArtifactsCommand(program: Command, ctx: CommandContext): void {
  program
    .command('artifacts')
    .description("list a job's collected outputs, or `artifacts get <id> <path> [dest]` one")
    .argument('<id>', 'job id, or `get`')
    .argument('[args...]', 'for get: <id> <path> [dest]')
    .action(async (first: string, args: string[]) => {
      if (first === 'get') return get(ctx, args);
      if (args.length > 0)
        throw new CliError('E_USAGE', `artifacts: unexpected argument "${args[0]}"`);
      await ctx.withQueue(async ({ queue }) => {
        const job = await findJob(queue, first);
        if (!job)
          throw new CliError('E_QUEUE_JOB_NOT_FOUND', `artifacts: no job with id "${first}"`);
        const list = await queue.artifacts(job.id);
        ctx.emit(list, () => {
          if (list.length === 0) {
            ctx.out(
              job.state === 'collecting'
                ? `job ${job.id} is collecting its outputs`
                : `job ${job.id} has no collected outputs`,
            );
            return;
          }
          const width = Math.max(...list.map((a) => a.path.length), 4);
          ctx.out(ctx.c.dim(`${'path'.padEnd(width)}  ${'size'.padStart(10)}  sha256`));
          for (const a of list)
            ctx.out(
              `${a.path.padEnd(width)}  ${formatBytes(a.size).padStart(10)}  ${a.sha256.slice(0, 16)}`,
            );
        });
      });
    });
}

async function get(ctx: CommandContext, args: readonly string[]): Promise<void> {
  const [id, path, destArg, ...rest] = args;
  if (id === undefined || path === undefined || rest.length > 0)
    throw new CliError('E_USAGE', 'artifacts get: expected <id> <path> [dest]');
  await ctx.withQueue(async ({ queue }) => {
    const job = await findJob(queue, id);
    if (!job) throw new CliError('E_QUEUE_JOB_NOT_FOUND', `artifacts get: no job with id "${id}"`);
    let dest =
      destArg === undefined
        ? resolve(ctx.io.cwd, basename(path))
        : isAbsolute(destArg)
          ? destArg
          : resolve(ctx.io.cwd, destArg);
    if ((await stat(dest).catch(() => null))?.isDirectory()) dest = join(dest, basename(path));
    const source = await queue.readArtifact(
      job.id,
      path,
      ctx.io.signal ? { signal: ctx.io.signal } : {},
    );
    // Written under a temporary name and renamed: a failed or corrupted copy leaves nothing.
    const tmp = `${dest}.cm-${randomBytes(4).toString('hex')}`;
    try {
      await pipeline(source, createWriteStream(tmp, { flags: 'wx' }));
      await rename(tmp, dest);
    } catch (error) {
      await unlink(tmp).catch(() => undefined);
      throw error;
    }
    const size = (await stat(dest)).size;
    ctx.emit({ id: job.id, path, dest, size }, () =>
      ctx.out(`copied ${path} (${formatBytes(size)}) of job ${job.id} to ${dest}`),
    );
  });
}
