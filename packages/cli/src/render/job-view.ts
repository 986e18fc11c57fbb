// How jobs and workflows look in human output: one table row per job for `list`, a block of
// fields for `show`, a per-state summary for workflows. JSON output uses the queue's objects
// unchanged.

import type { Job, JobState, Workflow } from '@crystalmath/queue';
import { JOB_STATES } from '@crystalmath/queue';
import { workflowLabel } from '../find-by-id.js';
import { type Colors, clockTime, formatDuration, stateColor, table } from '../format.js';

/** How long a job ran (or has been running), or has waited. */
export function jobElapsed(job: Job, now = Date.now()): string {
  if (job.startedAt !== null) return formatDuration((job.endedAt ?? now) - job.startedAt);
  if (job.endedAt !== null) return '-';
  return `(${formatDuration(now - job.createdAt)})`;
}

/** Text on one line: a multi-line reason (an `sbatch` error) would break a table's rows. */
export function oneLineText(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, ' | ').trim();
}

/**
 * `1 of 2`; after a retry (a fresh budget) `2 (1 of 1 since retry)`, never `2 of 1`. Jobs from
 * a queue that does not report `attemptsBeforeRetry` count from 0.
 */
export function attemptText(job: Job, of: string): string {
  const before = job.attemptsBeforeRetry ?? 0;
  if (before === 0) return `${job.attempt}${of}${job.maxAttempts}`;
  const since = Math.max(0, job.attempt - before);
  return of === '/'
    ? `${job.attempt} (${since}/${job.maxAttempts})`
    : `${job.attempt} (${since} of ${job.maxAttempts} since retry)`;
}

/** The `list` table. */
export function jobsTable(jobs: readonly Job[], c: Colors, now = Date.now()): string {
  const rows = [
    ['ID', 'NAME', 'STATE', 'TARGET', 'WORKFLOW', 'ATTEMPT', 'TIME', 'REASON'].map(c.bold),
    ...jobs.map((j) => [
      j.id,
      j.workflowKey ?? j.name,
      stateColor(c, j.state)(j.state),
      j.target,
      j.workflowId === null ? '-' : workflowLabel(j.workflowId),
      attemptText(j, '/'),
      jobElapsed(j, now),
      oneLineText(j.reason ?? ''),
    ]),
  ];
  return table(rows);
}

/** Where a job runs, for `show`: the target's machine as the configuration names it. */
export interface JobPlace {
  /** `this machine`, `alice@lab-server:2222`, ... */
  readonly host: string;
}

/** The scheduler's own id of a submitted job: the SLURM job id, or the process id. */
export function nativeId(job: Job): string | undefined {
  const d = job.handle?.data as Record<string, unknown> | undefined;
  if (!d) return undefined;
  if (typeof d.jobId === 'string' && d.jobId !== '') return `SLURM job ${d.jobId}`;
  if (typeof d.pid === 'number') return `pid ${d.pid}`;
  if (typeof d.wrapperPid === 'number') return `pid ${d.wrapperPid} (wrapper)`;
  return undefined;
}

/** The `show` block for one job. */
export function jobDetails(job: Job, c: Colors, place?: JobPlace): string {
  const spec = job.spec;
  const command = spec.argv ? JSON.stringify(spec.argv) : `script: ${JSON.stringify(spec.script)}`;
  const lines: [string, string][] = [
    ['id', job.id],
    ['name', job.name],
    ['state', stateColor(c, job.state)(job.state)],
    ['target', job.target],
    ['command', command],
    ['priority', String(job.priority)],
    ['attempt', attemptText(job, ' of ')],
  ];
  if (job.workflowId)
    lines.push(['workflow', `${workflowLabel(job.workflowId)} (key ${job.workflowKey ?? ''})`]);
  if (job.dependsOn.length > 0)
    lines.push(['depends on', job.dependsOn.map((d) => `${d.job} (${d.condition})`).join(', ')]);
  if (job.tags.length > 0) lines.push(['tags', job.tags.join(', ')]);
  if (spec.resources && Object.keys(spec.resources).length > 0)
    lines.push(['resources', JSON.stringify(spec.resources)]);
  if (job.exitCode !== null) lines.push(['exit code', String(job.exitCode)]);
  if (job.reason) lines.push(['reason', job.reason]);
  if (job.result !== null && job.result !== undefined)
    lines.push(['result', JSON.stringify(job.result)]);
  if (job.runnerStatus?.nativeState) lines.push(['native state', job.runnerStatus.nativeState]);
  if (job.handle) {
    const native = nativeId(job);
    if (native) lines.push(['native id', native]);
    const dir = (job.handle.data as Record<string, unknown>).jobDir;
    if (place) lines.push(['host', place.host]);
    if (typeof dir === 'string') lines.push(['folder', dir]);
    lines.push(['handle', `${job.handle.kind} ${job.handle.jobKey}`]);
  }
  lines.push(['created', new Date(job.createdAt).toISOString()]);
  if (job.startedAt !== null) lines.push(['started', new Date(job.startedAt).toISOString()]);
  if (job.endedAt !== null) lines.push(['ended', new Date(job.endedAt).toISOString()]);
  if (job.startedAt !== null) lines.push(['elapsed', jobElapsed(job)]);
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${c.dim(k.padEnd(width))}  ${v}`).join('\n');
}

/** `3 succeeded, 1 running, 2 waiting` in lifecycle order, zero counts left out. */
export function countsSummary(counts: Readonly<Record<JobState, number>>, c: Colors): string {
  const parts = JOB_STATES.filter((s) => (counts[s] ?? 0) > 0).map((s) =>
    stateColor(c, s)(`${counts[s]} ${s}`),
  );
  return parts.length > 0 ? parts.join(', ') : 'no jobs';
}

/** The `workflow show` block: header, counts, and one row per job in key order. */
export function workflowDetails(w: Workflow, c: Colors, now = Date.now()): string {
  const header = `${c.bold(w.name)}  workflow ${workflowLabel(w.id)}  ${w.done ? c.green('done') : c.yellow('in progress')}  created ${clockTime(w.createdAt)}`;
  const jobs = Object.values(w.jobs).sort(
    (a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id),
  );
  const rows = [
    ['KEY', 'STATE', 'TARGET', 'ID', 'TIME', 'DEPENDS ON'].map(c.bold),
    ...jobs.map((j) => [
      j.workflowKey ?? j.name,
      stateColor(c, j.state)(j.state),
      j.target,
      j.id,
      jobElapsed(j, now),
      j.dependsOn.map((d) => keyOf(w, d.job)).join(', '),
    ]),
  ];
  return `${header}\n${countsSummary(w.counts, c)}\n\n${table(rows)}`;
}

function keyOf(w: Workflow, jobId: string): string {
  for (const j of Object.values(w.jobs)) if (j.id === jobId) return j.workflowKey ?? j.name;
  return jobId;
}
