import type { Job, JobState, QueueEvent, Workflow } from '@crystalmath/queue';
import { JOB_STATES } from '@crystalmath/queue';
import { describe, expect, it } from 'vitest';
import { bar, colors, formatDuration, parseDuration, table, visibleLength } from '../format.js';
import { renderWatch } from '../render/render-watch.js';

const zero = (): Record<JobState, number> =>
  Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;

function job(id: string, key: string, state: JobState): Job {
  return {
    id,
    name: key,
    state,
    target: 'local',
    priority: 0,
    spec: { name: key, argv: ['true'] },
    workflowId: 'wf1',
    workflowKey: key,
    dependsOn: [],
    attempt: 1,
    attemptsBeforeRetry: 0,
    maxAttempts: 1,
    runAt: 0,
    idempotencyKey: null,
    tags: [],
    metadata: {},
    handle: null,
    runnerStatus: null,
    exitCode: null,
    reason: null,
    createdAt: 1_000,
    updatedAt: 2_000,
    startedAt: state === 'waiting' ? null : 1_500,
    endedAt: state === 'succeeded' ? 2_000 : null,
    result: null,
  };
}

describe('renderWatch', () => {
  it('shows workflow progress, target usage and recent events', () => {
    const jobs = [
      job('j1', 'prepare', 'succeeded'),
      job('j2', 'calc-a', 'running'),
      job('j3', 'aggregate', 'waiting'),
    ];
    const counts = zero();
    counts.succeeded = 1;
    counts.running = 1;
    counts.waiting = 1;
    const wf: Workflow = {
      id: 'wf1',
      name: 'quickstart',
      onFailure: 'skip-dependents',
      createdAt: 1_000,
      jobs: Object.fromEntries(jobs.map((j) => [j.workflowKey, j])),
      counts,
      done: false,
    };
    const events: QueueEvent[] = [
      {
        seq: 1,
        at: 1_500,
        type: 'job:state',
        jobId: 'j2',
        workflowId: 'wf1',
        target: 'local',
        from: 'queued',
        to: 'running',
        reason: null,
      },
    ];
    const lines = renderWatch(
      {
        at: 5_000,
        store: 'sqlite:/tmp/x.db',
        counts: { total: 3, byState: counts, byTarget: { local: counts } },
        targets: [{ name: 'local', maxConcurrent: 4, paused: false, active: 1 }],
        workflows: [wf],
        events,
        jobNames: new Map([['j2', 'calc-a']]),
      },
      { width: 100, c: colors(false), ascii: true },
    );
    const text = lines.join('\n');
    expect(text).toContain('sqlite:/tmp/x.db');
    expect(text).toMatch(/quickstart #wf1\s+\[#+-+\]\s+1\/3 .*running: calc-a/);
    expect(text).toMatch(/local\s+\[#+-+\]\s+1\/4 active\s+1 waiting\s+1 ok/);
    expect(text).toMatch(/calc-a {2}queued → running {2}\[local\]/);
    expect(lines.every((l) => l.length <= 100)).toBe(true);
    // A narrow terminal: every line is cut to the width, colours included, never wrapped.
    const narrow = renderWatch(
      {
        at: 5_000,
        store: 'sqlite:/a/very/long/path/to/the/queue.db',
        counts: { total: 3, byState: counts, byTarget: { local: counts } },
        targets: [{ name: 'local', maxConcurrent: 4, paused: true, active: 1 }],
        workflows: [wf],
        events,
        jobNames: new Map(),
      },
      { width: 44, c: colors(true) },
    );
    expect(narrow.every((l) => visibleLength(l) <= 44)).toBe(true);
    expect(narrow.join('\n')).toContain('\x1b[');
  });
});

describe('watch event names', () => {
  it('names job 1 and workflow 1 apart (their ids overlap)', () => {
    const counts = {
      waiting: 0,
      ready: 0,
      submitting: 0,
      queued: 0,
      running: 0,
      collecting: 0,
      succeeded: 1,
      failed: 0,
      cancelled: 0,
      timeout: 0,
      skipped: 0,
    };
    const lines = renderWatch(
      {
        at: 5_000,
        store: 'sqlite:/tmp/x.db',
        counts: { total: 1, byState: counts, byTarget: { local: counts } },
        targets: [],
        workflows: [],
        events: [
          {
            seq: 1,
            at: 1_000,
            type: 'job:state',
            jobId: '1',
            workflowId: null,
            target: 'local',
            from: 'queued',
            to: 'succeeded',
            reason: null,
          },
          { seq: 2, at: 2_000, type: 'workflow:created', workflowId: '1' },
        ],
        jobNames: new Map([
          ['1', 'echo'],
          ['w:1', 'relax'],
        ]),
      },
      { width: 100, c: colors(false), ascii: true },
    );
    const text = lines.join('\n');
    expect(text).toMatch(/echo {2}queued → succeeded/);
    expect(text).toContain('workflow relax created');
    expect(text).not.toMatch(/relax {2}queued/);
  });
});

describe('format helpers', () => {
  it('parses durations with units and rejects garbage', () => {
    expect(parseDuration('7d')).toBe(7 * 86_400_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('250')).toBe(250);
    expect(parseDuration('soon')).toBeUndefined();
  });
  it('formats durations and bars', () => {
    expect(formatDuration(1_234)).toBe('1.2s');
    expect(formatDuration(125_000)).toBe('2m05s');
    expect(bar(1, 4, 8, true)).toBe('[##------]');
    expect(bar(5, 0, 4, true)).toBe('[----]');
  });
  it('aligns table columns ignoring colour escapes', () => {
    const c = colors(true);
    expect(
      table([
        [c.bold('A'), 'B'],
        ['long', 'x'],
      ]),
    ).toBe(`${c.bold('A')}     B\nlong  x`);
  });
});

describe('renderWatch target rows', () => {
  const frame = (servedBy: readonly string[] | undefined, ready: number) => {
    const byState = zero();
    byState.ready = ready;
    return renderWatch(
      {
        at: 10_000,
        store: 'sqlite:/tmp/q.db',
        counts: { total: ready, byState, byTarget: { local: byState } },
        targets: [
          {
            name: 'local',
            maxConcurrent: null,
            paused: false,
            active: 0,
            unreachable: null,
            ...(servedBy ? { servedBy } : {}),
          },
        ],
        workflows: [],
        events: [],
        jobNames: new Map(),
      },
      { width: 200, c: colors(false) },
    ).join('\n');
  };

  it('says when no scheduler serves a target with unfinished jobs, and only then', () => {
    expect(frame([], 2)).toMatch(/local .*NO SCHEDULER: start one with `crystalmath run`/);
    expect(frame(['host:1:abc'], 2)).not.toMatch(/NO SCHEDULER/);
    expect(frame([], 0)).not.toMatch(/NO SCHEDULER/);
    expect(frame(undefined, 2)).not.toMatch(/NO SCHEDULER/); // not read from the store
  });
});
