// `crystalmath run` as a real process: SIGTERM and SIGINT stop it cleanly (exit 0) while the
// job it started keeps running on its target, and a new `run` re-attaches to that job.

import { rm } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { crystalmath, LOCAL_CONFIG, project, until } from './cli-helpers.js';
import { startScheduler } from './process-helpers.js';

let dir: string;
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface JobJson {
  id: string;
  state: string;
  handle: unknown;
}

async function show(id: string): Promise<JobJson> {
  return JSON.parse((await crystalmath(dir, ['show', id, '--json'])).stdout) as JobJson;
}

describe('crystalmath run (a real process)', () => {
  it('stops on SIGTERM, leaves the running job running, and a new run re-attaches', async () => {
    dir = await project(LOCAL_CONFIG);
    const first = await startScheduler(dir);
    const sub = JSON.parse(
      (await crystalmath(dir, ['submit', '--json', '--', 'sleep', '60'])).stdout,
    ) as JobJson;
    await until(
      async () => ((await show(sub.id)).state === 'running' ? true : undefined),
      20_000,
      'running',
    );

    const t0 = Date.now();
    first.child.kill('SIGTERM');
    const exit = await first.exited;
    expect(exit.code, first.output()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(first.output()).toContain('scheduler stopped');

    // The job was not touched by the shutdown: still running, with its handle.
    const after = await show(sub.id);
    expect(after.state).toBe('running');
    expect(after.handle).not.toBeNull();

    // A second scheduler re-attaches: a cancel reaches the very same job.
    const second = await startScheduler(dir);
    expect((await crystalmath(dir, ['cancel', sub.id])).code).toBe(0);
    await until(
      async () => ((await show(sub.id)).state === 'cancelled' ? true : undefined),
      20_000,
      'cancelled',
    );
    second.child.kill('SIGINT');
    expect((await second.exited).code, second.output()).toBe(0);
  });
});
