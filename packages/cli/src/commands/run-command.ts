// `crystalmath run`: the scheduler in the foreground. It logs each state change as a line,
// and on SIGINT/SIGTERM (the CLI's abort signal) it stops cleanly: the claim in flight
// finishes, running jobs keep running on their targets, and the process exits 0. Another
// `run` later (or elsewhere, on the same store) re-attaches to them.

import type { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { workflowLabel } from '../find-by-id.js';
import { clockTime } from '../format.js';
import { openConfiguredQueue } from '../open-configured-queue.js';
import { oneLineText } from '../render/job-view.js';

/** Registers `run`. */
export function registerRunCommand(program: Command, ctx: CommandContext): void {
  program
    .command('run')
    .description('run the scheduler in the foreground until Ctrl-C / SIGTERM')
    .option('-q, --quiet', 'do not log job state changes')
    .action(async (flags: { quiet?: boolean }) => {
      const config = await ctx.config();
      // Event lines carry the time the change happened (`at`), not the time they are printed.
      const log = (fields: Record<string, unknown>, human: string, at = Date.now()): void => {
        if (ctx.json) ctx.out(JSON.stringify({ at, ...fields }));
        else ctx.out(`${ctx.c.dim(clockTime(at))}  ${human}`);
      };
      const cq = await openConfiguredQueue(config, {
        logger: {
          warn: (msg) => log({ level: 'warn', msg }, ctx.c.yellow(`warning: ${msg}`)),
          error: (msg) => log({ level: 'error', msg }, ctx.c.red(`error: ${msg}`)),
        },
      });
      const { queue } = cq;
      const names = new Map<string, string>();
      if (!flags.quiet) {
        // Names are looked up before logging; a chain keeps the lines in event order.
        let chain: Promise<void> = Promise.resolve();
        queue.on('job:state', (e) => {
          chain = chain.then(async () => {
            if (!names.has(e.jobId)) {
              const j = await queue.get(e.jobId).catch(() => null);
              if (j) names.set(j.id, j.workflowKey ?? j.name);
            }
            const name = names.get(e.jobId) ?? e.jobId;
            log(
              { event: e },
              `${name} (${e.jobId})  ${e.from ?? 'new'} → ${e.to}  [${e.target}]${e.reason ? `  ${oneLineText(e.reason)}` : ''}`,
              e.at,
            );
          });
        });
        // On the same chain: a workflow's end is printed after its last job's change, as logged.
        queue.on('workflow:done', (e) => {
          chain = chain.then(() => {
            log({ event: e }, `workflow ${workflowLabel(e.workflowId)} done`, e.at);
          });
        });
      }
      queue.on('error', ({ error, context }) =>
        log(
          { level: 'error', context, code: (error as { code?: string }).code, msg: error.message },
          ctx.c.red(`${context}: ${error.message}`),
        ),
      );
      const targets = Object.keys(config.targets).join(', ');
      log(
        { msg: 'started', targets: Object.keys(config.targets) },
        `scheduler started (targets: ${targets}); Ctrl-C to stop`,
      );
      const stopped = new Promise<void>((resolve) => {
        if (!ctx.io.signal) return; // without a signal, run until the process is killed
        if (ctx.io.signal.aborted) return resolve();
        ctx.io.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      try {
        await Promise.race([queue.start(), stopped]);
        await stopped;
        log(
          { msg: 'stopping' },
          'stopping: finishing the claim in flight; running jobs keep running',
        );
      } finally {
        await cq.close();
      }
      log({ msg: 'stopped' }, 'scheduler stopped');
    });
}
