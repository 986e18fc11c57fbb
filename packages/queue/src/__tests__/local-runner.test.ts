// End to end with a real runner: LocalRunner (@crystalmath/runner-process) runs a workflow's
// processes on this machine; a running process is cancelled for real; the poll interval a
// runner demands is respected.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LocalRunner } from '@crystalmath/runner-process';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { Queue } from '../types.js';
import { describeStores, open, type TestStore, tempDir, waitUntil } from './helpers.js';

/** How long a real process may take to reach a state before the test fails (CI is loaded). */
const EVENT_TIMEOUT_MS = 30_000;
/**
 * A cancel must not wait for its job: the job sleeps SLOW_JOB_S, far longer than this generous
 * bound, which a loaded machine's cancel (a few process spawns) stays well under.
 */
const CANCEL_BOUND_MS = 60_000;
const SLOW_JOB_S = 600;

describeStores((makeStore) => {
  let store: TestStore;
  let dir: ReturnType<typeof tempDir>;
  let runner: LocalRunner;
  let queue: Queue;

  beforeEach(async () => {
    store = await makeStore();
    dir = tempDir('cm-local-');
    runner = new LocalRunner({ root: join(dir.dir, 'runs') });
    queue = await open(store, {
      targets: { here: { runner, maxConcurrent: 2 } },
      scheduler: { pollIntervalMs: 50 },
    });
  });

  afterEach(async () => {
    await queue.close();
    await store.cleanup();
    dir.cleanup();
  });

  it('runs a workflow of real processes to the end, with exit codes and skipped dependents', async () => {
    const wf = await queue.submitWorkflow({
      name: 'real',
      target: 'here',
      jobs: {
        make: { spec: { name: 'make', script: 'echo 42 > value.txt' } },
        use: {
          spec: {
            name: 'use',
            script: 'test "$(cat value.txt 2>/dev/null || echo none)" = none && exit 0',
          },
          dependsOn: ['make'],
        },
        fail: { spec: { name: 'fail', argv: ['sh', '-c', 'exit 3'] } },
        never: { spec: { name: 'never', argv: ['true'] }, dependsOn: ['fail'] },
        cleanup: {
          spec: { name: 'cleanup', argv: ['true'] },
          dependsOn: [{ job: 'fail', condition: 'afternotok' }],
        },
      },
    });
    await queue.start();
    await queue.drain({ timeoutMs: 60_000 });
    const done = (await queue.workflow(wf.id))!;
    expect(Object.fromEntries(Object.entries(done.jobs).map(([k, j]) => [k, j.state]))).toEqual({
      make: 'succeeded',
      use: 'succeeded', // its own directory: it does not see make's file
      fail: 'failed',
      never: 'skipped',
      cleanup: 'succeeded',
    });
    expect(done.jobs.fail!.exitCode).toBe(3);
    expect(done.jobs.make!.handle!.kind).toBe(runner.kind);
    expect(done.done).toBe(true);
  });

  it('cancels a running process through the runner', async () => {
    const marker = join(dir.dir, 'finished');
    const job = await queue.enqueue(
      { name: 'slow', script: `sleep ${SLOW_JOB_S}; touch ${marker}` },
      { target: 'here' },
    );
    await queue.start();
    await waitUntil(
      async () => (await queue.get(job.id))!.state === 'running',
      EVENT_TIMEOUT_MS,
      'the job to run',
    );
    const t0 = Date.now();
    expect((await queue.cancel(job.id)).state).toBe('cancelled');
    expect(Date.now() - t0).toBeLessThan(CANCEL_BOUND_MS);
    // The runner reports the process gone once its signal took effect.
    const handle = (await queue.get(job.id))!.handle!;
    await waitUntil(
      async () => (await runner.poll([handle]))[0]!.state === 'cancelled',
      EVENT_TIMEOUT_MS,
      'the runner to report the process cancelled',
    );
    expect(existsSync(marker)).toBe(false);
  });

  it('reads a job output through tail()', async () => {
    const job = await queue.enqueue(
      { name: 'talk', argv: ['echo', 'hello from the job'] },
      { target: 'here' },
    );
    await queue.start();
    await queue.drain({ ids: [job.id], timeoutMs: 30_000 });
    const out = await queue.tail(job.id);
    expect(out.data).toContain('hello from the job');
  });

  it('tails through the target runner; a process without that runner gets a typed error', async () => {
    const job = await queue.enqueue(
      { name: 'talk', script: 'echo hello from the job' },
      { target: 'here' },
    );
    await queue.start();
    await queue.drain({ ids: [job.id], timeoutMs: 60_000 });
    expect((await queue.tail(job.id)).data).toBe('hello from the job\n');
    // Another process on the same store with the target's configuration reads the same output.
    const configured = await open(store, {
      targets: { here: { runner: new LocalRunner({ root: join(dir.dir, 'runs') }) } },
    });
    const bare = await open(store, { targets: {} });
    try {
      expect((await configured.tail(job.id)).data).toBe('hello from the job\n');
      // One without a runner for the target says why instead of answering with no output.
      await expect(bare.tail(job.id)).rejects.toMatchObject({
        code: 'E_QUEUE_UNKNOWN_TARGET',
        details: { job: job.id, target: 'here' },
        message: expect.stringMatching(/no runner for its target "here"/),
      });
    } finally {
      await configured.close();
      await bare.close();
    }
  });
});
