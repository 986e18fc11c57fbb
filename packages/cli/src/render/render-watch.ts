// The `crystalmath watch` screen as a pure function of a snapshot of the store: workflow
// progress bars, per-target usage, job counts and the most recent events. Pure so it is
// tested without a terminal, and so other front-ends can reuse it.

import type { JobState, QueueCounts, QueueEvent, TargetInfo, Workflow } from '@crystalmath/queue';
import { JOB_STATES as JOB_STATES_IN_ORDER, TERMINAL_JOB_STATES } from '@crystalmath/queue';
import {
  bar,
  type Colors,
  clockTime,
  colors,
  formatDuration,
  stateColor,
  truncate,
} from '../format.js';
import { countsSummary, oneLineText } from './job-view.js';

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
  /** Names for event lines: jobs by id, workflows by `w:<id>` (ids of the two overlap). */
  readonly jobNames: ReadonlyMap<string, string>;
  /** Whether the whole queue is paused, when known. */
  readonly queuePaused?: boolean;
}

export interface RenderWatchOptions {
  readonly width: number;
  /**
   * Rows available. The frame always fits: blank lines, then events, then workflow and target
   * rows give way, never the title and counts. Default: unlimited (12 events).
   */
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

function eventSegments(e: QueueEvent, names: ReadonlyMap<string, string>, c: Colors): Segment[] {
  const time: Segment = [`  ${clockTime(e.at)}  `, c.dim];
  switch (e.type) {
    case 'job:state':
      return [
        time,
        [`${names.get(e.jobId) ?? e.jobId}  ${e.from ?? 'new'} → `],
        [e.to, stateColor(c, e.to)],
        [`  [${e.target}]`, c.dim],
        ...(e.reason ? ([[`  ${oneLineText(e.reason)}`, c.dim]] as Segment[]) : []),
      ];
    case 'queue:paused':
    case 'queue:resumed':
      return [
        time,
        [
          `${e.target ? `target ${e.target}` : 'queue'} ${e.type === 'queue:paused' ? 'paused' : 'resumed'}`,
        ],
      ];
    case 'target:limit':
      return [time, [`target ${e.target} limit ${e.maxConcurrent ?? 'unlimited'}`]];
    case 'workflow:created':
      return [time, [`workflow ${names.get(`w:${e.workflowId}`) ?? e.workflowId} created`]];
    case 'workflow:done':
      return [
        time,
        [`workflow ${names.get(`w:${e.workflowId}`) ?? e.workflowId} `],
        ['done', c.green],
      ];
    default:
      return [time, [(e as { type: string }).type]];
  }
}

/** One line describing an event, e.g. `12:00:01  calc-a  running → succeeded  [local]`. */
export function describeEvent(
  e: QueueEvent,
  names: ReadonlyMap<string, string>,
  c: Colors,
): string {
  return fit(eventSegments(e, names, c), Number.MAX_SAFE_INTEGER).trimStart();
}

type Segment = readonly [text: string, color?: ((s: string) => string) | undefined];

/** Joins segments, cutting the plain text at `width` visible characters before colouring. */
function fit(segments: readonly Segment[], width: number): string {
  let room = width;
  let out = '';
  for (const [text, color] of segments) {
    if (room <= 0) break;
    const piece = text.length > room ? truncate(text, room) : text;
    room -= piece.length;
    out += color ? color(piece) : piece;
  }
  return out;
}

/** Renders a frame as lines of at most `width` visible characters (plus colour escapes). */
export function renderWatch(s: WatchSnapshot, o: RenderWatchOptions): string[] {
  const { c } = o;
  const width = Math.max(30, o.width);
  const nameWidth = Math.max(8, Math.min(20, Math.floor(width / 5)));
  const barWidth = Math.max(6, Math.min(30, Math.floor(width / 5)));
  const lines: string[] = [];
  const countParts = JOB_STATES_IN_ORDER.filter((st) => (s.counts.byState[st] ?? 0) > 0);
  lines.push(
    fit(
      [
        ['crystalmath watch', c.bold],
        [`  ${clockTime(s.at)}`],
        ...(s.queuePaused ? ([['  QUEUE PAUSED', c.yellow]] as Segment[]) : []),
        [`  ${s.store}`, c.dim],
      ],
      width,
    ),
  );
  lines.push(
    fit(
      [
        [`jobs: ${s.counts.total} total`],
        ...countParts.flatMap((st, i): Segment[] => [
          [i === 0 ? ' · ' : ', '],
          [`${s.counts.byState[st]} ${st}`, stateColor(c, st)],
        ]),
      ],
      width,
    ),
  );
  const workflowRows: string[] = [];
  if (s.workflows.length === 0)
    workflowRows.push(
      fit([['  none yet: submit one with `crystalmath workflow submit <file>`', c.dim]], width),
    );
  for (const w of s.workflows) {
    const jobs = Object.values(w.jobs);
    const total = jobs.length;
    const finished = jobs.filter((j) => TERMINAL_JOB_STATES.has(j.state)).length;
    const bad = jobs.filter(
      (j) => j.state !== 'succeeded' && TERMINAL_JOB_STATES.has(j.state),
    ).length;
    const running = jobs.filter((j) => j.state === 'running').map((j) => j.workflowKey ?? j.name);
    const status: Segment = w.done
      ? bad > 0
        ? [`done, ${bad} not succeeded`, c.red]
        : ['done', c.green]
      : running.length > 0
        ? [`running: ${running.join(', ')}`, c.yellow]
        : [countsSummary(w.counts, colors(false)), c.dim];
    workflowRows.push(
      fit(
        [
          [`  ${truncate(`${w.name} #${w.id}`, nameWidth).padEnd(nameWidth)} `],
          [bar(finished, total, barWidth, o.ascii)],
          [
            ` ${`${finished}/${total}`.padStart(5)} ${formatDuration(workflowElapsed(w, s.at)).padStart(6)}  `,
          ],
          status,
        ],
        width,
      ),
    );
  }

  const targetRows: string[] = [];
  for (const t of s.targets) {
    const by: Partial<Record<JobState, number>> = s.counts.byTarget[t.name] ?? {};
    const waiting = (by.ready ?? 0) + (by.waiting ?? 0);
    const limit = t.maxConcurrent;
    const usage = limit === null ? `${t.active} active` : `${t.active}/${limit} active`;
    const gauge =
      limit === null ? ' '.repeat(barWidth + 2) : bar(t.active, limit, barWidth, o.ascii);
    const failed = (by.failed ?? 0) + (by.timeout ?? 0);
    const open = waiting + (by.submitting ?? 0) + (by.queued ?? 0) + (by.running ?? 0);
    // Known only when read from the store (servedBy set): a target with open jobs and no live
    // scheduler waits for `crystalmath run`.
    const unserved = t.servedBy !== undefined && t.servedBy.length === 0 && open > 0;
    targetRows.push(
      fit(
        [
          [`  ${truncate(t.name, nameWidth).padEnd(nameWidth)} `],
          [gauge],
          [` ${usage}  ${waiting} waiting  ${by.succeeded ?? 0} ok  `],
          [`${failed} failed`, failed > 0 ? c.red : undefined],
          ...(t.paused ? ([['  PAUSED', c.yellow]] as Segment[]) : []),
          ...(unserved
            ? ([['  NO SCHEDULER: start one with `crystalmath run`', c.yellow]] as Segment[])
            : []),
          ...(t.unreachable
            ? ([
                [
                  `  UNREACHABLE since ${new Date(t.unreachable.since).toISOString()}, last error ${t.unreachable.lastError}`,
                  c.red,
                ],
              ] as Segment[])
            : []),
        ],
        width,
      ),
    );
  }

  const eventRows = (n: number): string[] => {
    const events = n <= 0 ? [] : s.events.slice(-n);
    if (events.length === 0) return [c.dim('  no events yet')];
    return events.map((e) => fit(eventSegments(e, s.jobNames, c), width));
  };

  if (o.height === undefined) {
    return [
      ...lines,
      '',
      c.bold('WORKFLOWS'),
      ...workflowRows,
      '',
      c.bold('TARGETS'),
      ...targetRows,
      '',
      c.bold('RECENT EVENTS'),
      ...eventRows(12),
    ];
  }
  // One row is left free, as the frame is drawn from the top and must not push the screen.
  const room = o.height - lines.length - 1;
  return [...lines, ...fitSections(room, workflowRows, targetRows, eventRows, c)];
}

/**
 * The three sections within `room` rows, so a small terminal never scrolls the title and counts
 * off the top: blank separators go first, then events are cut, then workflow and target rows
 * give way to a `… n more` line.
 */
function fitSections(
  room: number,
  workflows: readonly string[],
  targets: readonly string[],
  events: (n: number) => string[],
  c: Colors,
): string[] {
  const more = (rows: readonly string[], keep: number): string[] =>
    rows.length <= keep
      ? [...rows]
      : keep <= 0
        ? []
        : [...rows.slice(0, keep - 1), c.dim(`  … ${rows.length - keep + 1} more`)];
  const full = 3 + workflows.length + targets.length + 3; // headers and blank separators
  if (full + 3 <= room) {
    return [
      '',
      c.bold('WORKFLOWS'),
      ...workflows,
      '',
      c.bold('TARGETS'),
      ...targets,
      '',
      c.bold('RECENT EVENTS'),
      ...events(room - full),
    ];
  }
  // No blank lines; each section keeps its header while there is room for one row under it.
  let left = room;
  const out: string[] = [];
  const section = (title: string, rows: readonly string[], reserve: number): void => {
    if (left - reserve < 2) return;
    const keep = Math.min(rows.length, left - reserve - 1);
    const shown = more(rows, keep);
    out.push(c.bold(title), ...shown);
    left -= 1 + shown.length;
  };
  section('WORKFLOWS', workflows, targets.length > 0 ? 2 : 0);
  section('TARGETS', targets, 0);
  if (left >= 2) {
    const ev = events(left - 1);
    out.push(c.bold('RECENT EVENTS'), ...ev.slice(-(left - 1)));
  }
  return out;
}
