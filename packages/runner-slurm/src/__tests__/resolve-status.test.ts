import { describe, expect, it } from 'vitest';
import { parseSacct } from '../parse-sacct.js';
import { parseSqueue } from '../parse-squeue.js';
import { parseExitFiles } from '../poll-script.js';
import { type PollFacts, resolveStatus } from '../resolve-status.js';

function facts(squeue = '', acct = '', exits = ''): PollFacts {
  return { squeue: parseSqueue(squeue), acct: parseSacct(acct), exits: parseExitFiles(exits) };
}

describe('resolveStatus for a single job', () => {
  it('uses squeue while it shows the job, keeping native state and reason', () => {
    expect(resolveStatus({ jobId: '6' }, facts('6|PENDING|Dependency'))).toEqual({
      state: 'queued',
      nativeState: 'PENDING',
      reason: 'Dependency',
    });
    expect(resolveStatus({ jobId: '1' }, facts('1|RUNNING|None'))).toEqual({
      state: 'running',
      nativeState: 'RUNNING',
    });
  });

  it('takes the exit code of a failed job from its exit file', () => {
    expect(resolveStatus({ jobId: '3' }, facts('3|FAILED|NonZeroExitCode', '', '3 3 '))).toEqual({
      state: 'failed',
      nativeState: 'FAILED',
      reason: 'NonZeroExitCode',
      exitCode: 3,
    });
  });

  it('falls back to accounting, then to the exit file', () => {
    expect(resolveStatus({ jobId: '4' }, facts('', '4|TIMEOUT|0:0'))).toEqual({
      state: 'timeout',
      nativeState: 'TIMEOUT',
    });
    expect(resolveStatus({ jobId: '5' }, facts('', '5|FAILED|3:0'))).toMatchObject({
      state: 'failed',
      exitCode: 3,
    });
    expect(resolveStatus({ jobId: '5' }, facts('', '5|OUT_OF_MEMORY|0:9'))).toMatchObject({
      state: 'out_of_memory',
      signal: 'SIGKILL',
    });
    expect(resolveStatus({ jobId: '7' }, facts('', '', '7 3 '))).toMatchObject({
      state: 'failed',
      exitCode: 3,
    });
    expect(resolveStatus({ jobId: '7' }, facts('', '', '7 0 '))).toMatchObject({
      state: 'succeeded',
      exitCode: 0,
    });
    expect(resolveStatus({ jobId: '7' }, facts('', '', '7 143 TERM'))).toMatchObject({
      state: 'failed',
      exitCode: 143,
      signal: 'SIGTERM',
    });
  });

  it('gives exit code 0 to a completed job and none to a cancelled one without exit file', () => {
    expect(resolveStatus({ jobId: '1' }, facts('1|COMPLETED|None'))).toMatchObject({
      state: 'succeeded',
      exitCode: 0,
    });
    expect(resolveStatus({ jobId: '2' }, facts('', '2|CANCELLED by 0|0:0'))).toEqual({
      state: 'cancelled',
      nativeState: 'CANCELLED by 0',
    });
  });

  it('returns null when no source knows the job', () => {
    expect(
      resolveStatus({ jobId: '9' }, facts('1|RUNNING|None', '2|COMPLETED|0:0', '3 0')),
    ).toBeNull();
  });
});

describe('resolveStatus for an array job', () => {
  it('is queued while the whole array pends, with the pending reason', () => {
    expect(
      resolveStatus({ jobId: '40', arrayTasks: 3 }, facts('40_[0-2]|PENDING|Dependency')),
    ).toMatchObject({
      state: 'queued',
      reason: 'Dependency',
    });
  });

  it('is running while any task runs', () => {
    const s = resolveStatus(
      { jobId: '40', arrayTasks: 3 },
      facts('40_[2]|PENDING|Resources\n40_0|COMPLETED|None\n40_1|RUNNING|None', '', '40_0 0'),
    );
    expect(s).toMatchObject({
      state: 'running',
      nativeState: 'RUNNING',
      reason: '1 of 3 array tasks finished',
    });
  });

  it('stays running between tasks: some done, the rest still pending', () => {
    const s = resolveStatus(
      { jobId: '40', arrayTasks: 3 },
      facts('40_[2]|PENDING|Resources\n40_0|COMPLETED|None\n40_1|COMPLETED|None'),
    );
    expect(s).toMatchObject({
      state: 'running',
      nativeState: 'PENDING',
      reason: '2 of 3 array tasks finished',
    });
  });

  it('succeeds when every task succeeded, and reports the worst task otherwise', () => {
    const ok = facts('40_0|COMPLETED|None\n40_1|COMPLETED|None\n40_2|COMPLETED|None');
    expect(resolveStatus({ jobId: '40', arrayTasks: 3 }, ok)).toMatchObject({
      state: 'succeeded',
      exitCode: 0,
    });
    const bad = facts(
      '40_0|COMPLETED|None\n40_1|FAILED|NonZeroExitCode',
      '40_2|TIMEOUT|0:0',
      '40_0 0\n40_1 2',
    );
    expect(resolveStatus({ jobId: '40', arrayTasks: 3 }, bad)).toMatchObject({
      state: 'timeout',
      reason: '2 of 3 array tasks did not succeed',
    });
    const failed = facts('', '', '40_0 0\n40_1 2\n40_2 0');
    expect(resolveStatus({ jobId: '40', arrayTasks: 3 }, failed)).toMatchObject({
      state: 'failed',
      exitCode: 2,
    });
  });

  it('is unknown (null) when finished tasks are fewer than submitted and none is live', () => {
    expect(resolveStatus({ jobId: '40', arrayTasks: 3 }, facts('', '', '40_0 0'))).toBeNull();
  });
});
