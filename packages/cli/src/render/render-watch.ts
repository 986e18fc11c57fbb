// The `crystalmath watch` screen as a pure function of a snapshot of the store: workflow
// progress bars, per-target usage, job counts and the most recent events. Pure so it is
// tested without a terminal, and so other front-ends can reuse it.

import type { JobState, QueueCounts, QueueEvent, TargetInfo, Workflow } from '@crystalmath/queue';
import { TERMINAL_JOB_STATES } from '@crystalmath/queue';
import { bar, type Colors, clockTime, formatDuration, stateColor, truncate } from '../format.js';
import { countsSummary } from './job-view.js';

/** Everything one frame of `watch` shows. */
export interface WatchSnapshot {
  readonly at: number;
  /** Secret-free store description, e.g. `sqlite:/home/me/jobs.db`. */
  readonly store: string;
  readonly counts: QueueCounts;
  readonly targets: readonly TargetInfo[];
  readonly workflows: readonly Workflow[];
  /** Most recent last. */
  readonly events: readonly QueueEvent[];
  /** Job names for event lines, by job id. */
  readonly jobNames: ReadonlyMap<string, string>;
  /** Whether the whole queue is paused, when known. */
  readonly queuePaused?: boolean;
}

export interface RenderWatchOptions {
  readonly width: number;
  /** Rows available; the event list is cut to fit. Default: unlimited. */
  readonly height?: number;
  readonly c: Colors;
  /** Use `#`/`-` instead of block characters for bars. */
  readonly ascii?: boolean;
}

function workflowElapsed(w: Workflow, now: number): number {
  const jobs = Object.values(w.jobs);
  if (w.done) {
    const end = Math.max(...jobs.map((j) => j.endedAt ?? j.updatedAt), w.createdAt);
    return end - w.createdAt;
  }
  return now - w.createdAt;
}

/** One line describing an event, e.g. `12:00:01  calc-a  running -> succeeded`. */
export function describeEvent(
  e: QueueEvent,
  names: ReadonlyMap<string, string>,
  c: Colors,
): string {
  const time = c.dim(clockTime(e.at));
  switch (e.type) {
    case 'job:state': {
      const name = names.get(e.jobId) ?? e.jobId;
      const reason = e.reason ? c.dim(`  ${e.reason}`) : '';
      return `${time}  ${name}  ${e.from ?? 'new'} → ${stateColor(c, e.to)(e.to)}  ${c.dim(`[${e.target}]`)}${reason}`;
    }
    case 'queue:paused':
    case 'queue:resumed':
      return `${time}  ${e.target ? `target ${e.target}` : 'queue'} ${e.type === 'queue:paused' ? 'paused' : 'resumed'}`;
    case 'target:limit':
      return `${time}  target ${e.target} limit ${e.maxConcurrent ?? 'unlimited'}`;
    case 'workflow:created':
      return `${time}  workflow ${names.get(e.workflowId) ?? e.workflowId} created`;
    case 'workflow:done':
      return `${time}  workflow ${names.get(e.workflowId) ?? e.workflowId} ${c.green('done')}`;
    default:
      return `${time}  ${(e as { type: string }).type}`;
  }
}

/** Renders a frame as lines of at most `width` visible characters (plus colour escapes). */
export function renderWatch(s: WatchSnapshot, o: RenderWatchOptions): string[] {
  const { c } = o;
  const width = Math.max(40, o.width);
  const barWidth = Math.max(10, Math.min(30, Math.floor(width / 4)));
  const lines: string[] = [];
  lines.push(
    `${c.bold('crystalmath watch')}  ${c.dim(truncate(s.store, width - 40))}  ${clockTime(s.at)}${s.queuePaused ? `  ${c.yellow('QUEUE PAUSED')}` : ''}`,
  );
  lines.push(`jobs: ${s.counts.total} total · ${countsSummary(s.counts.byState, c)}`);
  lines.push('');

  lines.push(c.bold('WORKFLOWS'));
  if (s.workflows.length === 0)
    lines.push(c.dim('  none yet: submit one with `crystalmath workflow submit <file>`'));
  for (const w of s.workflows) {
    const jobs = Object.values(w.jobs);
    const total = jobs.length;
    const finished = jobs.filter((j) => TERMINAL_JOB_STATES.has(j.state)).length;
    const bad = jobs.filter(
      (j) => j.state !== 'succeeded' && TERMINAL_JOB_STATES.has(j.state),
    ).length;
    const running = jobs.filter((j) => j.state === 'running').map((j) => j.workflowKey ?? j.name);
    const status = w.done
      ? bad > 0
        ? c.red(`done, ${bad} not succeeded`)
        : c.green('done')
      : running.length > 0
        ? c.yellow(`running: ${running.join(', ')}`)
        : c.dim(countsSummary(w.counts, c));
    const head = `  ${truncate(w.name, 20).padEnd(20)} ${bar(finished, total, barWidth, o.ascii)} ${`${finished}/${total}`.padStart(7)}  ${formatDuration(workflowElapsed(w, s.at)).padStart(6)}  `;
    lines.push(head + truncate(status, Math.max(10, width - head.length)));
  }
  lines.push('');

  lines.push(c.bold('TARGETS'));
  for (const t of s.targets) {
    const by: Partial<Record<JobState, number>> = s.counts.byTarget[t.name] ?? {};
    const waiting = (by.ready ?? 0) + (by.waiting ?? 0);
    const limit = t.maxConcurrent;
    const usage = limit === null ? `${t.active} active` : `${t.active}/${limit} active`;
    const gauge =
      limit === null ? ''.padEnd(barWidth + 2) : bar(t.active, limit, barWidth, o.ascii);
    lines.push(
      `  ${truncate(t.name, 20).padEnd(20)} ${gauge} ${usage.padStart(12)}  ${waiting} waiting  ${by.succeeded ?? 0} ok  ${(by.failed ?? 0) + (by.timeout ?? 0)} failed${t.paused ? `  ${c.yellow('PAUSED')}` : ''}`,
    );
  }
  lines.push('');

  lines.push(c.bold('RECENT EVENTS'));
  const room = o.height === undefined ? 12 : Math.max(3, o.height - lines.length - 1);
  const events = s.events.slice(-room);
  if (events.length === 0) lines.push(c.dim('  no events yet'));
  for (const e of events) lines.push(`  ${describeEvent(e, s.jobNames, c)}`);
  return lines;
}
