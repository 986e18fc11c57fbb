// `crystalmath workflow submit <file>` (a YAML/JSON DAG, submitted all-or-nothing) and
// `crystalmath workflow show <id>`. Every job's target and spec is checked before the store
// is opened.

import { isAbsolute, resolve } from 'node:path';
import { isCrystalMathError } from '@crystalmath/core';
import type { Job, Metadata, WorkflowDefinition, WorkflowJobDefinition } from '@crystalmath/queue';
import { TERMINAL_JOB_STATES } from '@crystalmath/queue';
import type { Command } from 'commander';
import { CliError } from '../cli-error.js';
import type { CommandContext } from '../command-context.js';
import { assertKnownTarget, pickTarget } from '../config/load-config.js';
import { ExitCode } from '../exit-codes.js';
import { findWorkflow, workflowLabel } from '../find-by-id.js';
import { parseWorkflowFile, readDataFile } from '../job-file.js';
import { countsSummary, workflowDetails } from '../render/job-view.js';
import { noSchedulerHint, unservedTargets } from '../scheduler-hint.js';
import { waitForJobs } from '../wait-for.js';
import { warnWalltime } from './jobs-commands.js';

/** Registers `workflow submit`, `workflow show` and `workflow cancel`. */
export function registerWorkflowCommands(program: Command, ctx: CommandContext): void {
  const workflow = program
    .command('workflow')
    .description('submit and inspect workflows (DAGs of jobs)');

  workflow
    .command('submit')
    .description('submit a workflow file (YAML or JSON): all its jobs or none')
    .argument('<file>', 'workflow file')
    .option('-t, --target <name>', "default target of its jobs (overrides the file's)")
    .option('-w, --wait', 'wait until every job ends; exit 9 unless all succeeded')
    .action(async (fileArg: string, flags: { target?: string; wait?: boolean }) => {
      const config = await ctx.config();
      const file = isAbsolute(fileArg) ? fileArg : resolve(ctx.io.cwd, fileArg);
      const parsed = parseWorkflowFile(await readDataFile(file), file);
      const target = pickTarget(config, flags.target ?? parsed.target);
      const jobs: Record<string, WorkflowJobDefinition<Metadata>> = {};
      for (const [key, job] of Object.entries(parsed.jobs)) {
        assertKnownTarget(config, job.target ?? target, `jobs.${key}.target`);
        jobs[key] = job;
      }
      const definition: WorkflowDefinition<Metadata> = { ...parsed, target, jobs };
      await ctx.withQueue(async ({ queue, wired }) => {
        for (const [key, job] of Object.entries(jobs))
          warnWalltime(ctx, job.spec, config, wired, job.target ?? target, `jobs.${key}`);
        const wf = await queue.submitWorkflow(definition);
        if (!ctx.json)
          for (const t of await unservedTargets(
            queue,
            Object.values(wf.jobs).map((j) => j.target),
          ))
            ctx.err(`note: ${noSchedulerHint(t)}`);
        if (!flags.wait) {
          ctx.emit(wf, () =>
            ctx.out(
              `submitted workflow ${workflowLabel(wf.id)} (${wf.name}): ${Object.keys(wf.jobs).length} jobs, ${countsSummary(wf.counts, ctx.c)}`,
            ),
          );
          return;
        }
        if (!ctx.json) ctx.err(`submitted workflow ${workflowLabel(wf.id)} (${wf.name}); waiting`);
        const ids = Object.values(wf.jobs).map((j) => j.id);
        const done = await waitForJobs(ctx, queue, ids, wf.name);
        const final = await findWorkflow(queue, wf.id);
        if (!done || !final) {
          ctx.exitCode = ExitCode.INTERRUPTED;
          ctx.err(
            `stopped waiting: workflow ${workflowLabel(wf.id)} keeps running in the queue (\`crystalmath workflow cancel ${workflowLabel(wf.id)}\` stops it, \`crystalmath watch -w ${workflowLabel(wf.id)}\` follows it)`,
          );
          return;
        }
        ctx.emit(final, () => ctx.out(workflowDetails(final, ctx.c)));
        if (done.some((j) => j.state !== 'succeeded')) ctx.exitCode = ExitCode.JOB_FAILED;
      });
    });

  workflow
    .command('show')
    .description('show a workflow and its jobs')
    .argument('<id>', 'workflow id (w3 or 3)')
    .action(async (id: string) => {
      await ctx.withQueue(async ({ queue }) => {
        const wf = await findWorkflow(queue, id);
        if (!wf) throw new CliError('E_NOT_FOUND', `workflow show: no workflow with id "${id}"`);
        ctx.emit(wf, () => ctx.out(workflowDetails(wf, ctx.c)));
      });
    });

  workflow
    .command('cancel')
    .description(
      "cancel a workflow's unfinished jobs (asking their runners to stop those submitted)",
    )
    .argument('<id>', 'workflow id (w3 or 3)')
    .action(async (id: string) => {
      await ctx.withQueue(async ({ queue }) => {
        const wf = await findWorkflow(queue, id);
        if (!wf) throw new CliError('E_NOT_FOUND', `workflow cancel: no workflow with id "${id}"`);
        // Dependents first (newest id first): cancelling a parent first would skip its waiting
        // dependents, and cancelling those afterwards would find them already ended.
        const open = Object.values(wf.jobs)
          .filter((j) => !TERMINAL_JOB_STATES.has(j.state))
          .sort((a, b) => Number(b.id) - Number(a.id));
        const cancelled: Job[] = [];
        for (const j of open) {
          try {
            cancelled.push(await queue.cancel(j.id));
          } catch (error) {
            // It ended (or was skipped) since the workflow was read: nothing left to cancel.
            if (!isCrystalMathError(error, 'E_QUEUE_INVALID_STATE')) throw error;
          }
        }
        const label = workflowLabel(wf.id);
        ctx.emit({ workflow: wf.id, cancelled }, () =>
          ctx.out(
            open.length === 0
              ? `workflow ${label} (${wf.name}) has no unfinished job: nothing to cancel`
              : `workflow ${label} (${wf.name}): cancelling ${cancelled.length} job(s): ${cancelled.map((j) => `${j.workflowKey ?? j.name} (${j.id})`).join(', ')}`,
          ),
        );
      });
    });
}
