import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isKnownSlurmState, mapSlurmState, SLURM_STATE_MAP } from '../map-slurm-state.js';
import { parseSacct } from '../parse-sacct.js';
import { parseScontrolJobs } from '../parse-scontrol-job.js';
import { countArrayTasks, parseSbatchParsable, parseSlurmJobRef } from '../parse-slurm-job-id.js';
import { parseSqueue } from '../parse-squeue.js';
import { parseExitFiles, parsePollOutput } from '../poll-script.js';
import { isCrystalMathError } from './helpers.js';

const fixture = (name: string): string =>
  readFileSync(join(import.meta.dirname, 'fixtures', name), 'utf8');

describe('mapSlurmState', () => {
  it.each([
    ['PENDING', 'queued'],
    ['CONFIGURING', 'queued'],
    ['REQUEUED', 'queued'],
    ['RUNNING', 'running'],
    ['COMPLETING', 'running'],
    ['SUSPENDED', 'running'],
    ['PREEMPTED', 'failed'],
    ['COMPLETED', 'succeeded'],
    ['FAILED', 'failed'],
    ['CANCELLED', 'cancelled'],
    ['CANCELLED by 1000', 'cancelled'],
    ['TIMEOUT', 'timeout'],
    ['OUT_OF_MEMORY', 'out_of_memory'],
    ['NODE_FAIL', 'node_fail'],
    ['BOOT_FAIL', 'node_fail'],
    ['DEADLINE', 'timeout'],
    ['COMPLETED+', 'succeeded'],
  ])('maps %s to %s', (native, state) => {
    expect(mapSlurmState(native)).toBe(state);
    expect(isKnownSlurmState(native)).toBe(true);
  });

  it('maps an unknown state to a non-terminal state so the job keeps its slot', () => {
    expect(mapSlurmState('SOMETHING_NEW')).toBe('queued');
    expect(isKnownSlurmState('SOMETHING_NEW')).toBe(false);
  });

  it('covers every state named in SLURM documentation for squeue and sacct', () => {
    for (const s of [
      'BOOT_FAIL',
      'CANCELLED',
      'COMPLETED',
      'CONFIGURING',
      'COMPLETING',
      'DEADLINE',
      'FAILED',
      'NODE_FAIL',
      'OUT_OF_MEMORY',
      'PENDING',
      'PREEMPTED',
      'RUNNING',
      'RESV_DEL_HOLD',
      'REQUEUE_FED',
      'REQUEUE_HOLD',
      'REQUEUED',
      'RESIZING',
      'REVOKED',
      'SIGNALING',
      'SPECIAL_EXIT',
      'STAGE_OUT',
      'STOPPED',
      'SUSPENDED',
      'TIMEOUT',
    ]) {
      expect(SLURM_STATE_MAP[s], s).toBeDefined();
    }
  });
});

describe('job ids', () => {
  it('parses plain ids, array tasks, pending ranges and steps', () => {
    expect(parseSlurmJobRef('12')).toEqual({ raw: '12', baseId: '12' });
    expect(parseSlurmJobRef('12_3')).toEqual({ raw: '12_3', baseId: '12', taskId: '3' });
    expect(parseSlurmJobRef('12_[4-9%2]')).toEqual({
      raw: '12_[4-9%2]',
      baseId: '12',
      pendingTasks: 6,
    });
    expect(parseSlurmJobRef('12.batch')).toEqual({ raw: '12.batch', baseId: '12', step: 'batch' });
    expect(parseSlurmJobRef('12_3.0')?.step).toBe('0');
    expect(parseSlurmJobRef('x12')).toBeNull();
  });

  it('counts array tasks', () => {
    expect(countArrayTasks('0-9')).toBe(10);
    expect(countArrayTasks('1,3,5-7%2')).toBe(5);
    expect(countArrayTasks('0-15:4')).toBe(4);
    expect(countArrayTasks('9-1')).toBeNull();
    expect(countArrayTasks('a')).toBeNull();
  });

  it('reads sbatch --parsable output with and without a cluster name', () => {
    expect(parseSbatchParsable('1234\n')).toBe('1234');
    expect(parseSbatchParsable('1234;cmtest\n')).toBe('1234');
    expect(parseSbatchParsable('sbatch: warning: x\n99\n')).toBe('99');
    expect(parseSbatchParsable('Submitted batch job 5\n')).toBeNull();
    expect(parseSbatchParsable('')).toBeNull();
  });
});

describe('parseSqueue', () => {
  it('parses the documented %i|%T|%r lines, None reasons dropped', () => {
    expect(
      parseSqueue(
        '8|PENDING|Resources\n6|PENDING|Dependency\n1|RUNNING|None\n3|FAILED|NonZeroExitCode\n',
      ),
    ).toEqual([
      { raw: '8', baseId: '8', state: 'PENDING', reason: 'Resources' },
      { raw: '6', baseId: '6', state: 'PENDING', reason: 'Dependency' },
      { raw: '1', baseId: '1', state: 'RUNNING' },
      { raw: '3', baseId: '3', state: 'FAILED', reason: 'NonZeroExitCode' },
    ]);
  });

  it('parses pending array ranges and tasks', () => {
    const [range, task] = parseSqueue('40_[2-4]|PENDING|JobArrayTaskLimit\n40_1|RUNNING|None\n');
    expect(range).toMatchObject({ baseId: '40', pendingTasks: 3, state: 'PENDING' });
    expect(task).toMatchObject({ baseId: '40', taskId: '1', state: 'RUNNING' });
  });

  it('throws a typed parse error on an unexpected line rather than dropping a job', () => {
    expect(() => parseSqueue('JOBID|STATE|REASON\n')).toThrow(/unexpected squeue line/);
    try {
      parseSqueue('garbage');
    } catch (e) {
      expect(isCrystalMathError(e, 'E_SLURM_PARSE')).toBe(true);
    }
  });
});

describe('parseSacct', () => {
  it('parses the documented sacct -P format, dropping steps', () => {
    const rows = parseSacct(fixture('sacct-P-documented.txt'));
    const byId = new Map(rows.map((r) => [r.raw, r]));
    expect(rows.some((r) => r.step !== undefined)).toBe(false);
    expect(byId.get('1234')).toMatchObject({ state: 'COMPLETED', exitCode: 0 });
    expect(byId.get('1235')).toMatchObject({ state: 'FAILED', exitCode: 3 });
    expect(byId.get('1236')).toMatchObject({ state: 'CANCELLED by 1000' });
    expect(byId.get('1238')).toMatchObject({ state: 'OUT_OF_MEMORY', exitCode: 0, signal: 125 });
    expect(byId.get('1239_1')).toMatchObject({
      baseId: '1239',
      taskId: '1',
      state: 'FAILED',
      exitCode: 1,
    });
    expect(byId.get('1239_[2-4]')).toMatchObject({ pendingTasks: 3 });
    expect(mapSlurmState(byId.get('1245')?.state ?? '')).toBe('succeeded');
  });

  it('rejects a line that is not sacct output', () => {
    expect(() => parseSacct('Slurm accounting storage is disabled')).toThrow(
      /unexpected sacct line/,
    );
  });
});

describe('poll output', () => {
  it('splits sections and reads exit files', () => {
    const out = parsePollOutput(
      '@@cm:squeue 0\n5|RUNNING|None\n@@cm:missing 6,7\n@@cm:acct jobcomp\n6|FAILED|3:0\n@@cm:exit\n6 3 \n7_2 143 TERM\nbad line\n@@cm:end\n',
    );
    expect(out).toMatchObject({
      squeueExit: 0,
      squeue: '5|RUNNING|None',
      missing: ['6', '7'],
      accounting: 'jobcomp',
      complete: true,
    });
    expect(out.acct).toBe('6|FAILED|3:0');
    const exits = parseExitFiles(out.exitFiles);
    expect(exits.get('6')).toEqual({ exitCode: 3 });
    expect(exits.get('7_2')).toEqual({ exitCode: 143, signal: 'SIGTERM' });
    expect(exits.size).toBe(2);
  });

  it('marks output without its end as incomplete, and refuses output without squeue', () => {
    expect(parsePollOutput('@@cm:squeue 1\n').complete).toBe(false);
    expect(() => parsePollOutput('nothing')).toThrow(/squeue section/);
  });
});

// Recorded on the testbed (slurm-wlm 22.05, accounting storage disabled, jobcomp/filetxt,
// MinJobAge=300): one squeue line per state/reason seen, plus snapshots of a few jobs.
describe('recorded testbed output', () => {
  const has = <T extends object>(rows: T[], want: Partial<T>): boolean =>
    rows.some((r) =>
      Object.entries(want).every(([k, v]) => (r as Record<string, unknown>)[k] === v),
    );

  it('parses every squeue line, including pending array ranges and end reasons', () => {
    const text = fixture('squeue-testbed.txt');
    const rows = parseSqueue(text);
    expect(rows.length).toBe(text.trim().split('\n').length);
    expect(has(rows, { baseId: '234', state: 'PENDING', reason: 'Dependency' })).toBe(true);
    expect(
      has(rows, { baseId: '234', state: 'CANCELLED', reason: 'DependencyNeverSatisfied' }),
    ).toBe(true);
    expect(has(rows, { baseId: '233', state: 'PENDING', reason: 'JobHeldUser' })).toBe(true);
    expect(has(rows, { baseId: '231', state: 'FAILED', reason: 'NonZeroExitCode' })).toBe(true);
    expect(has(rows, { state: 'TIMEOUT', reason: 'TimeLimit' })).toBe(true);
    expect(has(rows, { baseId: '235', taskId: '3', state: 'RUNNING' })).toBe(true);
    expect(rows.find((r) => r.pendingTasks !== undefined)).toMatchObject({
      baseId: '235',
      pendingTasks: 3,
      reason: 'JobArrayTaskLimit',
    });
    for (const r of rows) expect(isKnownSlurmState(r.state)).toBe(true);
  });

  it('parses sacct -c (jobcomp) output: FAILED 3:0, TIMEOUT and CANCELLED 0:0', () => {
    const rows = parseSacct(fixture('sacct-c-testbed.txt'));
    expect(has(rows, { raw: '4', state: 'FAILED', exitCode: 3 })).toBe(true);
    expect(has(rows, { raw: '229', state: 'FAILED', exitCode: 4 })).toBe(true);
    expect(has(rows, { raw: '16', state: 'TIMEOUT', exitCode: 0 })).toBe(true);
    expect(has(rows, { raw: '10', state: 'CANCELLED', exitCode: 0 })).toBe(true);
    for (const r of rows) expect(isKnownSlurmState(r.state)).toBe(true);
  });

  it('parses scontrol show job -o records, array tasks included', () => {
    const jobs = parseScontrolJobs(fixture('scontrol-show-job-testbed.txt'));
    expect(jobs).toHaveLength(8);
    const failed = jobs.find((j) => j.JobId === '231');
    expect(failed).toMatchObject({
      JobState: 'FAILED',
      ExitCode: '3:0',
      Reason: 'NonZeroExitCode',
      JobName: 'wrap',
    });
    expect(failed?.['AllocNode:Sid']).toMatch(/:/);
    expect(failed?.TRES).toMatch(/^cpu=1,/);
    expect(jobs.find((j) => j.JobId === '234')?.Dependency).toBe('afterok:233(failed)');
    expect(
      jobs
        .filter((j) => j.ArrayJobId === '235')
        .map((j) => j.ArrayTaskId)
        .sort(),
    ).toEqual(['0', '1', '2', '3']);
    for (const j of jobs) expect(isKnownSlurmState(j.JobState ?? '')).toBe(true);
  });
});

describe('buildPollScript', () => {
  it('is valid sh for every accounting mode, one id and many', async () => {
    const { execFileSync } = await import('node:child_process');
    const { buildPollScript } = await import('../poll-script.js');
    const commands = { sbatch: 'sbatch', squeue: 'squeue', sacct: 'sacct', scancel: 'scancel' };
    for (const accounting of ['auto', 'sacct', 'jobcomp', 'none'] as const) {
      for (const jobs of [
        [{ jobId: '1', jobDir: "/tmp/it's here" }],
        [
          { jobId: '1', jobDir: '/a' },
          { jobId: '2', jobDir: '/b' },
        ],
      ]) {
        const script = buildPollScript({ jobs, commands, accounting });
        expect(() => execFileSync('sh', ['-n', '-c', script])).not.toThrow();
        expect(script.match(/squeue'? --noheader/g)).toHaveLength(1);
        expect(script).toContain(jobs.length === 1 ? '--jobs=1,1 ' : '--jobs=1,2 ');
      }
    }
  });
});
