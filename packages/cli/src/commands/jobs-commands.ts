// The job commands: submit (a command line or a job file), list, show, logs, cancel, retry.
// Inputs are validated in full before the queue is opened, so a bad job changes nothing.

import { basename } from 'node:path';
import type { JobSpec, Resources } from '@crystalmath/core';
import type { EnqueueOptions, Job, JobState, ListFilter, Metadata } from '@crystalmath/queue';
import { JOB_STATES, TERMINAL_JOB_STATES } from '@crystalmath/queue';
import type { Command } from 'commander';
import { CliError } from '../cli-error.js';
import type { CommandContext } from '../command-context.js';
import { assertKnownTarget, pickTarget, type ResolvedConfig } from '../config/load-config.js';
import { ExitCode } from '../exit-codes.js';
import { findJob, findWorkflow, isWorkflowRef, workflowId, workflowLabel } from '../find-by-id.js';
import { formatDuration, parseDuration } from '../format.js';
import { parseJobFile, readDataFile } from '../job-file.js';
import { jobDetails, jobsTable, oneLineText } from '../render/job-view.js';
import { noSchedulerHint, unservedTargets } from '../scheduler-hint.js';
import { waitForJobs } from '../wait-for.js';
import type { WiredTargets } from '../wire-targets.js';
import { intOption, sleep } from './options.js';

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

function nameFromCommand(argv: readonly string[]): string {
  const base = basename(argv[0] ?? 'job')
    .replace(/[^A-Za-z0-9._+-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '');
  return (base || 'job').slice(0, 128);
}

interface SubmitFlags {
  target?: string;
  name?: string;
  file?: string;
  script?: string;
  priority?: number;
  maxAttempts?: number;
  tag?: string[];
  env?: string[];
  after?: string[];
  cpus?: number;
  memory?: number;
  walltime?: string;
  partition?: string;
  wait?: boolean;
}

/** Builds the spec and options of `submit` from flags or a job file; throws before any change. */
async function buildSubmission(
  ctx: CommandContext,
  command: readonly string[],
  f: SubmitFlags,
): Promise<{ spec: JobSpec; options: EnqueueOptions<Metadata> }> {
  const config = await ctx.config();
  if (f.file !== undefined) {
    if (command.length > 0 || f.script !== undefined) {
      throw new CliError('E_VALIDATION', 'submit: give either --file or a command, not both');
    }
    const file = f.file.startsWith('/') ? f.file : `${ctx.io.cwd}/${f.file}`;
    const parsed = parseJobFile(await readDataFile(file), file);
    const target = pickTarget(config, f.target ?? parsed.target);
    const options = parsed.options(target);
    return {
      spec: parsed.spec,
      options: {
        ...options,
        ...(f.priority !== undefined ? { priority: f.priority } : {}),
      },
    };
  }
  if ((command.length === 0) === (f.script === undefined)) {
    throw new CliError(
      'E_VALIDATION',
      'submit: give a command after --, --script <text>, or --file <job.yaml>',
    );
  }
  const target = pickTarget(config, f.target);
  const env: Record<string, string> = {};
  for (const pair of f.env ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CliError('E_VALIDATION', `--env: expected NAME=value, got "${pair}"`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const resources: Record<string, unknown> = {};
  if (f.cpus !== undefined) resources.cpusPerTask = f.cpus;
  if (f.memory !== undefined) resources.memoryMb = f.memory;
  if (f.partition !== undefined) resources.partition = f.partition;
  if (f.walltime !== undefined) {
    const ms = parseDuration(f.walltime);
    if (ms === undefined || ms < 1000)
      throw new CliError(
        'E_VALIDATION',
        `--walltime: expected a duration such as 90s, 30m or 2h, got "${f.walltime}"`,
      );
    resources.walltimeSeconds = Math.ceil(ms / 1000);
  }
  const name = f.name ?? (command.length > 0 ? nameFromCommand(command) : 'script');
  const spec: JobSpec = {
    name,
    ...(command.length > 0 ? { argv: [...command] } : { script: f.script as string }),
    ...(Object.keys(env).length > 0 ? { env } : {}),
    ...(Object.keys(resources).length > 0 ? { resources: resources as Resources } : {}),
  };
  const { validateJobSpec, isCrystalMathError } = await import('@crystalmath/core');
  try {
    validateJobSpec(spec, 'job');
  } catch (err) {
    if (isCrystalMathError(err))
      throw new CliError(err.code, `submit: ${err.message}`, { cause: err });
    throw err;
  }
  return {
    spec,
    options: {
      target,
      ...(f.priority !== undefined ? { priority: f.priority } : {}),
      ...(f.maxAttempts !== undefined ? { maxAttempts: f.maxAttempts } : {}),
      ...(f.tag ? { tags: f.tag } : {}),
      ...(f.after ? { dependsOn: f.after } : {}),
    },
  };
}

/**
 * Warns (one line on stderr) when the target's runner enforces walltimes in coarser steps
 * than asked: `--walltime 3s` on SLURM gets a minute, and the user is told so at submit.
 */
export function warnWalltime(
  ctx: CommandContext,
  spec: JobSpec,
  config: ResolvedConfig,
  wired: WiredTargets,
  target: string,
  what: string,
): void {
  const step = wired.targets[target]?.runner.capabilities.walltimeStepSeconds ?? 1;
  const asked =
    spec.resources?.walltimeSeconds ?? config.targets[target]?.defaults?.walltimeSeconds;
  if (step <= 1 || asked === undefined || asked % step === 0) return;
  const gets = Math.ceil(asked / step) * step;
  const kind = wired.targets[target]?.runner.kind ?? 'its';
  const text = `${what}: walltime ${formatDuration(asked * 1000)} on target "${target}" becomes ${formatDuration(gets * 1000)}: the ${kind} runner counts walltimes in steps of ${step} s`;
  if (ctx.json)
    ctx.err(
      JSON.stringify({
        warning: {
          code: 'walltime-rounded',
          target,
          requestedSeconds: asked,
          seconds: gets,
          message: text,
        },
      }),
    );
  else ctx.err(`crystalmath: warning: ${text}`);
}

/** The machine a target's jobs run on, as the configuration names it. */
function targetHost(config: ResolvedConfig, target: string): string {
  const t = config.targets[target];
  if (!t) return `unknown (target "${target}" is no longer configured)`;
  const ssh = t.type === 'local' ? undefined : t.ssh;
  if (!ssh) return t.type === 'slurm' ? 'this machine (sbatch here)' : 'this machine';
  const where = `${ssh.user ? `${ssh.user}@` : ''}${ssh.host}${ssh.port ? `:${ssh.port}` : ''}`;
  return t.type === 'slurm' ? `${where} (SLURM login)` : where;
}

/** `succeeded`, `timed out`, `is running`: a state as the end of "job 5 ...". */
export function stateSentence(state: JobState, withVerb = true): string {
  if (state === 'timeout') return 'timed out';
  if (TERMINAL_JOB_STATES.has(state)) return state;
  return withVerb ? `is ${state}` : state;
}

function parseStates(text: string | undefined): JobState[] | undefined {
  if (text === undefined) return undefined;
  const states = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of states) {
    if (!(JOB_STATES as readonly string[]).includes(s)) {
      throw new CliError(
        'E_VALIDATION',
        `--state: unknown state "${s}" (one of ${JOB_STATES.join(', ')})`,
      );
    }
  }
  return states as JobState[];
}

/** Registers submit, list, show, logs, cancel and retry on `program`. */
export function registerJobCommands(program: Command, ctx: CommandContext): void {
  program
    .command('submit')
    .description('enqueue one job: a command (after --), a --script, or a --file job.yaml')
    .argument('[command...]', 'the command and its arguments (put -- before it)')
    .option('-t, --target <name>', "target to run on (default: the config's defaultTarget)")
    .option('-n, --name <name>', "job name (default: the command's base name)")
    .option('-f, --file <job.yaml>', 'a job file (YAML or JSON)')
    .option('--script <text>', 'a POSIX sh script instead of a command')
    .option('-p, --priority <n>', 'higher runs first (default 0)', intOption('--priority'))
    .option(
      '--max-attempts <n>',
      'attempts including the first (default 1)',
      intOption('--max-attempts', 1),
    )
    .option('--tag <tag>', 'a tag (repeatable)', collect)
    .option('-e, --env <NAME=value>', 'an environment variable (repeatable)', collect)
    .option('--after <id>', 'run after this job succeeds (repeatable)', collect)
    .option('--cpus <n>', 'CPUs per task', intOption('--cpus', 1))
    .option('--memory <MiB>', 'memory in MiB', intOption('--memory', 1))
    .option('--walltime <duration>', 'wall-clock limit, e.g. 30m or 2h')
    .option('--partition <name>', 'SLURM partition')
    .option('-w, --wait', 'wait until the job ends; exit 9 unless it succeeded')
    .action(async (command: string[], flags: SubmitFlags) => {
      const { spec, options } = await buildSubmission(ctx, command, flags);
      await ctx.withQueue(async ({ queue, wired }, config) => {
        warnWalltime(ctx, spec, config, wired, options.target as string, `job ${spec.name}`);
        const job = await queue.enqueue(spec, options);
        // On stderr, so the output a script reads stays the same.
        if (!ctx.json && !TERMINAL_JOB_STATES.has(job.state))
          for (const t of await unservedTargets(queue, [job.target]))
            ctx.err(`note: ${noSchedulerHint(t)}`);
        if (!flags.wait) {
          ctx.emit(job, () =>
            ctx.out(`submitted ${job.id} (${job.name}) to ${job.target}: ${job.state}`),
          );
          return;
        }
        if (!ctx.json) ctx.err(`submitted ${job.id} (${job.name}) to ${job.target}; waiting`);
        const done = await waitForJobs(ctx, queue, [job.id], job.name);
        if (!done) {
          ctx.exitCode = ExitCode.INTERRUPTED;
          ctx.err(
            `stopped waiting: job ${job.id} keeps running in the queue (\`crystalmath cancel ${job.id}\` stops it, \`crystalmath show ${job.id}\` follows it)`,
          );
          return;
        }
        const final = done[0] as Job;
        ctx.emit(final, () =>
          ctx.out(
            `${final.id} (${final.name}): ${final.state}${final.exitCode !== null ? `, exit ${final.exitCode}` : ''}`,
          ),
        );
        if (final.state !== 'succeeded') ctx.exitCode = ExitCode.JOB_FAILED;
      });
    });

  program
    .command('list')
    .alias('ls')
    .description('list jobs, newest first')
    .option('-s, --state <states>', `comma-separated states (${JOB_STATES.join(', ')})`)
    .option('-t, --target <name>', 'only this target')
    .option('-w, --workflow <id>', 'only this workflow (w3 or 3)')
    .option('--tag <tag>', 'only jobs with this tag')
    .option(
      '-l, --limit <n>',
      'at most this many (default 50, at most 1000)',
      intOption('--limit', 1),
    )
    .option('--active', 'only jobs not yet finished')
    .action(
      async (flags: {
        state?: string;
        target?: string;
        workflow?: string;
        tag?: string;
        limit?: number;
        active?: boolean;
      }) => {
        const config = await ctx.config();
        const states = flags.active
          ? JOB_STATES.filter((s) => !TERMINAL_JOB_STATES.has(s))
          : parseStates(flags.state);
        if (flags.target !== undefined) assertKnownTarget(config, flags.target, '--target');
        const filter: ListFilter = {
          order: 'newest',
          limit: Math.min(flags.limit ?? 50, 1000),
          ...(states ? { state: states } : {}),
          ...(flags.target !== undefined ? { target: flags.target } : {}),
          ...(flags.workflow !== undefined ? { workflow: workflowId(flags.workflow) } : {}),
          ...(flags.tag !== undefined ? { tag: flags.tag } : {}),
        };
        await ctx.withQueue(async ({ queue }) => {
          const page = await queue.list(filter);
          ctx.emit(page, () => {
            if (page.jobs.length === 0) ctx.out('no jobs');
            else ctx.out(jobsTable(page.jobs, ctx.c));
            if (page.nextCursor) ctx.out(ctx.c.dim('(older jobs not shown: raise --limit)'));
          });
          if (ctx.json) return;
          const open = page.jobs.filter((j) => !TERMINAL_JOB_STATES.has(j.state));
          for (const t of await unservedTargets(
            queue,
            open.map((j) => j.target),
          ))
            ctx.err(ctx.c.yellow(`note: ${noSchedulerHint(t)}`));
        });
      },
    );

  program
    .command('show')
    .description('show one job (or a workflow: w3)')
    .argument('<id>', 'job id, or workflow id as w3')
    .action(async (id: string) => {
      await ctx.withQueue(async ({ queue }, config) => {
        const job = isWorkflowRef(id) ? null : await findJob(queue, id);
        const wf = await findWorkflow(queue, id);
        if (job) {
          const place = { host: targetHost(config, job.target) };
          ctx.emit(job, () => ctx.out(jobDetails(job, ctx.c, place)));
          // Job and workflow ids share numbers: say so when both exist.
          if (wf && !ctx.json)
            ctx.err(
              `note: this is job ${id}; workflow ${workflowLabel(wf.id)} (${wf.name}) also exists: \`crystalmath show ${workflowLabel(wf.id)}\``,
            );
          return;
        }
        if (wf) {
          const { workflowDetails } = await import('../render/job-view.js');
          ctx.emit(wf, () => ctx.out(workflowDetails(wf, ctx.c)));
          return;
        }
        throw new CliError('E_QUEUE_JOB_NOT_FOUND', `show: no job or workflow with id "${id}"`);
      });
    });

  program
    .command('logs')
    .description("print a job's output (through its runner)")
    .argument('<id>', 'job id')
    .option('--stderr', 'standard error instead of standard output')
    .option('-f, --follow', 'keep printing new output until the job ends')
    .option(
      '--interval <ms>',
      'polling interval with --follow (default 1000)',
      intOption('--interval', 100),
    )
    .action(
      async (id: string, flags: { stderr?: boolean; follow?: boolean; interval?: number }) => {
        const stream = flags.stderr ? 'stderr' : 'stdout';
        await ctx.withQueue(async ({ queue, wired }) => {
          const first = await findJob(queue, id);
          if (!first) throw new CliError('E_QUEUE_JOB_NOT_FOUND', `logs: no job with id "${id}"`);
          const runner = wired.targets[first.target]?.runner;
          // Read through the target's runner directly: runners are stateless, the handle is enough.
          const tail = async (
            job: Job,
            from: number,
          ): Promise<{ data: string; offset: number }> => {
            if (!job.handle) return { data: '', offset: from };
            if (!runner?.tail) {
              throw new CliError(
                'E_UNSUPPORTED',
                `logs: the runner of target "${job.target}" cannot read output`,
              );
            }
            return runner.tail(job.handle, {
              stream,
              offset: from,
              ...(ctx.io.signal ? { signal: ctx.io.signal } : {}),
            });
          };
          let offset = 0;
          const chunks: string[] = [];
          const write = (data: string): void => {
            if (!data) return;
            if (ctx.json) chunks.push(data);
            else ctx.io.stdout.write(data);
          };
          if (!flags.follow) {
            if (!first.handle)
              throw new CliError(
                'E_QUEUE_INVALID_STATE',
                TERMINAL_JOB_STATES.has(first.state)
                  ? `logs: job ${id} never ran (${first.state}${first.reason ? `: ${oneLineText(first.reason)}` : ''}), so it has no output`
                  : `logs: job ${id} has not started yet (${first.state})`,
              );
            const r = await tail(first, offset);
            write(r.data);
            if (ctx.json)
              ctx.out(JSON.stringify({ id, stream, data: chunks.join(''), offset: r.offset }));
            return;
          }
          for (;;) {
            const job = await findJob(queue, id);
            if (!job) throw new CliError('E_QUEUE_JOB_NOT_FOUND', `logs: job "${id}" disappeared`);
            const r = await tail(job, offset);
            write(r.data);
            offset = r.offset;
            if (TERMINAL_JOB_STATES.has(job.state)) break;
            if (ctx.io.signal?.aborted) {
              ctx.exitCode = ExitCode.INTERRUPTED;
              break;
            }
            await sleep(flags.interval ?? 1000, ctx.io.signal);
          }
          if (ctx.json) ctx.out(JSON.stringify({ id, stream, data: chunks.join(''), offset }));
        });
      },
    );

  for (const [name, verb, describe] of [
    ['cancel', 'cancel', 'cancel jobs (asking their runner to stop them if submitted)'],
    ['retry', 'retry', 'put failed, cancelled, timed-out or skipped jobs back in the queue'],
  ] as const) {
    program
      .command(name)
      .description(describe)
      .argument('<ids...>', 'job ids')
      .action(async (ids: string[]) => {
        await ctx.withQueue(async ({ queue }) => {
          // Check every id first so a typo in the third id does not leave the first two changed.
          for (const id of ids) {
            const job = await findJob(queue, id);
            if (!job)
              throw new CliError('E_QUEUE_JOB_NOT_FOUND', `${name}: no job with id "${id}"`);
            const finished = TERMINAL_JOB_STATES.has(job.state);
            if (verb === 'cancel' && finished && job.state !== 'cancelled') {
              throw new CliError(
                'E_QUEUE_INVALID_STATE',
                `cancel: job ${id} already ${stateSentence(job.state, false)}: nothing to cancel`,
              );
            }
            if (verb === 'retry' && (!finished || job.state === 'succeeded')) {
              throw new CliError(
                'E_QUEUE_INVALID_STATE',
                `retry: job ${id} ${stateSentence(job.state)}: only failed, cancelled, timed-out or skipped jobs can be retried`,
              );
            }
          }
          const results: Job[] = [];
          for (const id of ids) results.push(await queue[verb](id));
          ctx.emit(ids.length === 1 ? results[0] : results, () => {
            for (const j of results) ctx.out(`${j.id} (${j.name}): ${j.state}`);
          });
        });
      });
  }
}
