// Queue control: pause and resume (the whole queue or one target) and prune old finished jobs.

import type { Command } from 'commander';
import { CliError } from '../cli-error.js';
import type { CommandContext } from '../command-context.js';
import { assertKnownTarget } from '../config/load-config.js';
import { parseDuration } from '../format.js';

/** Registers pause, resume and prune. */
export function registerControlCommands(program: Command, ctx: CommandContext): void {
  for (const verb of ['pause', 'resume'] as const) {
    program
      .command(verb)
      .description(
        verb === 'pause'
          ? 'stop claiming new jobs (running jobs go on): the whole queue, or one target'
          : 'claim jobs again: the whole queue, or one target',
      )
      .argument('[target]', 'a target name; omit for the whole queue')
      .action(async (target: string | undefined) => {
        const config = await ctx.config();
        if (target !== undefined) assertKnownTarget(config, target);
        await ctx.withQueue(async ({ queue }) => {
          await (target === undefined ? queue[verb]() : queue[verb](target));
          const what = target === undefined ? 'queue' : `target ${target}`;
          ctx.emit({ [verb === 'pause' ? 'paused' : 'resumed']: target ?? null }, () =>
            ctx.out(`${what} ${verb === 'pause' ? 'paused' : 'resumed'}`),
          );
        });
      });
  }

  program
    .command('prune')
    .description('delete finished jobs (and their events) that ended before a given age')
    .requiredOption('--older-than <duration>', 'e.g. 7d, 12h, 30m')
    .action(async (flags: { olderThan: string }) => {
      const ms = parseDuration(flags.olderThan);
      if (ms === undefined) {
        throw new CliError(
          'E_VALIDATION',
          `--older-than: expected a duration such as 7d, 12h or 30m, got "${flags.olderThan}"`,
        );
      }
      await ctx.withQueue(async ({ queue }) => {
        const r = await queue.prune({ olderThanMs: ms });
        ctx.emit(r, () => ctx.out(`pruned ${r.jobs} jobs and ${r.events} events`));
      });
    });
}
