import { describe, expect, it } from 'vitest';
import { BatchStatusCache, parseBatchHandle, type RunnerStatus } from '../index.js';

describe('BatchStatusCache', () => {
  it('calls the scheduler once per interval, each live id once, and serves ended jobs from the cache', async () => {
    const cache = new BatchStatusCache({
      minIntervalMs: 60_000,
      lostGraceMs: 60_000,
      label: 'runner-x',
      sources: 'xstat',
    });
    const calls: string[][] = [];
    const status: Record<string, RunnerStatus> = {
      '1': { state: 'running' },
      '2': { state: 'succeeded', exitCode: 0 },
    };
    const refresh = async (live: { jobId: string }[]) => {
      calls.push(live.map((j) => j.jobId));
      return (j: { jobId: string }) => status[j.jobId] ?? null;
    };
    const jobs = [{ jobId: '1' }, { jobId: '2' }, { jobId: '1' }];
    expect((await cache.poll(jobs, refresh)).map((s) => s.state)).toEqual([
      'running',
      'succeeded',
      'running',
    ]);
    expect(calls).toEqual([['1', '2']]);
    // Within the interval: from the cache, no call.
    expect((await cache.poll(jobs, refresh)).map((s) => s.state)).toEqual([
      'running',
      'succeeded',
      'running',
    ]);
    expect(calls).toHaveLength(1);
    expect(cache.get('2')?.state).toBe('succeeded');
  });

  it('keeps an absent job its last status for the grace period, then reports it lost', async () => {
    const known = new BatchStatusCache({
      minIntervalMs: 0,
      lostGraceMs: 3_600_000,
      label: 'runner-x',
      sources: 'xstat',
    });
    let answer: RunnerStatus | null = { state: 'running' };
    const refresh = async () => () => answer;
    await known.poll([{ jobId: '7' }], refresh);
    answer = null;
    const [kept] = await known.poll([{ jobId: '7' }], refresh);
    expect(kept).toMatchObject({
      state: 'running',
      reason: expect.stringMatching(/absent from xstat since/),
    });
    const now = new BatchStatusCache({
      minIntervalMs: 0,
      lostGraceMs: 0,
      label: 'runner-x',
      sources: 'xstat',
    });
    const [lost] = await now.poll([{ jobId: '8' }], async () => () => null);
    expect(lost).toMatchObject({
      state: 'lost',
      reason: expect.stringMatching(/job 8 is absent from xstat/),
    });
  });

  it('gives up a throttled wait when the signal fires', async () => {
    const cache = new BatchStatusCache({
      minIntervalMs: 60_000,
      lostGraceMs: 0,
      label: 'runner-x',
      sources: 'xstat',
    });
    await cache.poll([{ jobId: '1' }], async () => () => ({ state: 'running' }));
    const ac = new AbortController();
    const p = cache.poll([{ jobId: '2' }], async () => () => ({ state: 'running' }), ac.signal);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'E_ABORTED' });
  });
});

describe('parseBatchHandle', () => {
  const options = {
    kind: 'x',
    label: 'runner-x',
    jobDir: (k: string) => `/r/${k}`,
    root: '/r',
    field: 'handles[1]',
  };
  it('returns the job reference of a handle of this runner and refuses any other, naming the field', () => {
    expect(
      parseBatchHandle(
        { kind: 'x', jobKey: 'k1', data: { jobId: '12', jobDir: '/r/k1', arrayTasks: 3 } },
        options,
      ),
    ).toMatchObject({ jobId: '12', jobDir: '/r/k1', arrayTasks: 3 });
    for (const [handle, why] of [
      [
        { kind: 'y', jobKey: 'k1', data: { jobId: '12', jobDir: '/r/k1' } },
        /handles\[1\]: is not a x handle/,
      ],
      [{ kind: 'x', jobKey: '../k', data: { jobId: '12', jobDir: '/r/k1' } }, /invalid jobKey/],
      [{ kind: 'x', jobKey: 'k1', data: { jobId: '12;x', jobDir: '/r/k1' } }, /data\.jobId/],
      [{ kind: 'x', jobKey: 'k1', data: { jobId: '12', jobDir: '/etc' } }, /another root than \/r/],
    ] as const) {
      expect(() => parseBatchHandle(handle, options)).toThrow(why);
    }
  });
});
