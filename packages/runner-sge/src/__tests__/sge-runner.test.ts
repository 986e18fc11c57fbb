// The Grid Engine runner against the testbed's real Grid Engine, beyond the conformance suite:
// held, error-state (Eqw) and array jobs, memory kills, slots through the parallel
// environment with a project, qdel of a pending job, find after a lost qsub answer, one
// transport call per poll, and a vanished job becoming lost after the grace period.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunnerHandle, Transport } from '@crystalmath/core';
import { testJobKey, waitForState, waitForTerminal } from '@crystalmath/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SgeResources } from '../sge-resources.js';
import type { SgeRunner } from '../sge-runner.js';
import { JobRegistry, localSgeTransport, makeRunner, sge, uniqueRoot } from './sge-fixture.js';

const JOB_TIMEOUT_MS = 60_000;
const POLL_MS = 250;

describe.skipIf(!sge)('SgeRunner on the real Grid Engine', () => {
  let transport: Transport;
  let runner: SgeRunner;
  let root: string;
  let local: string;
  const jobs = new JobRegistry();
  const finish = (h: RunnerHandle) => waitForTerminal(runner, h, JOB_TIMEOUT_MS, POLL_MS);
  const submit = async (
    spec: Parameters<SgeRunner['submit']>[0]['spec'],
    key = testJobKey('sge'),
  ) => jobs.track(await runner.submit({ key, spec }));
  const sh = async (...argv: string[]) => transport.exec(argv, { timeoutMs: 30_000 });

  beforeAll(async () => {
    transport = localSgeTransport();
    root = uniqueRoot();
    runner = makeRunner(transport, root);
    local = await mkdtemp(join(tmpdir(), 'cm-sge-collect-'));
  });
  afterAll(async () => {
    await jobs.deleteAll(transport);
    await rm(root, { recursive: true, force: true });
    await rm(local, { recursive: true, force: true });
  });

  it('reports a held job as queued (hqw), and a qdel before it ran as cancelled', async () => {
    const h = await submit({
      name: 'held',
      argv: ['true'],
      resources: { extraDirectives: ['--h'] },
    });
    const s = await waitForState(runner, h, 'queued', JOB_TIMEOUT_MS, POLL_MS);
    expect(s).toMatchObject({ state: 'queued', nativeState: 'hqw', reason: 'held' });
    await runner.cancel(h);
    // Grid Engine keeps no accounting record of a job that never ran: the marker tells.
    expect(await finish(h)).toMatchObject({ state: 'cancelled' });
  });

  it('reports a job Grid Engine put in error state (Eqw) as failed with its reason, and deletes it', async () => {
    const h = await submit({
      name: 'eqw',
      argv: ['true'],
      resources: { extraDirectives: ['--h'] },
    });
    await waitForState(runner, h, 'queued', JOB_TIMEOUT_MS, POLL_MS);
    // Its working directory vanishes before it starts: the shepherd cannot chdir.
    await rm(runner.jobDir(h.jobKey), { recursive: true, force: true });
    const id = h.data.jobId as string;
    expect((await sh('qrls', id)).exitCode).toBe(0);
    const s = await finish(h);
    expect(s.state).toBe('failed');
    expect(s.nativeState).toBe('Eqw');
    expect(s.reason).toMatch(/chdir/);
    // deleteErrorJobs: the same poll qdel'd it, so it does not wait for an administrator.
    expect((await sh('qstat', '-j', id)).exitCode).not.toBe(0);
  });

  it('reports a suspended job as running, with the reason, and cancels it', async () => {
    const h = await submit({ name: 'susp', argv: ['sleep', '60'] });
    await waitForState(runner, h, 'running', JOB_TIMEOUT_MS, POLL_MS);
    expect((await sh('qmod', '-sj', h.data.jobId as string)).exitCode).toBe(0);
    const deadline = Date.now() + JOB_TIMEOUT_MS;
    let s = (await runner.poll([h]))[0];
    while (s?.nativeState !== 's' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      s = (await runner.poll([h]))[0];
    }
    expect(s).toMatchObject({
      state: 'running',
      nativeState: 's',
      reason: 'suspended (by user or administrator)',
    });
    await runner.cancel(h);
    expect(await finish(h)).toMatchObject({ state: 'cancelled' });
  });

  it('runs an array job and reports the worst task', async () => {
    const h = await submit({
      name: 'array',
      argv: ['sh', '-c', 'echo "task $SGE_TASK_ID"; [ "$SGE_TASK_ID" != 2 ] || exit 4'],
      resources: { array: '1-3' },
    });
    expect(h.data).toMatchObject({ arrayTasks: 3, arrayFirst: 1 });
    const s = await finish(h);
    expect(s).toMatchObject({ state: 'failed', exitCode: 4 });
    expect(s.reason).toBe('1 of 3 array tasks did not succeed');
    expect((await runner.tail(h)).data).toBe('task 1\n');
  });

  it('reports a job killed for exceeding h_vmem as out_of_memory', async () => {
    // Each process stays under the limit (it is also their RLIMIT_AS); together they exceed it,
    // so execd kills the job: qacct `failed 37` with maxvmem over h_vmem.
    const grow = 'perl -e \'$x = "a" x (70 * 1024 * 1024); sleep 30\'';
    const h = await submit({
      name: 'oom',
      argv: ['bash', '-c', `for i in 1 2 3; do ${grow} & done; wait`],
      resources: { memoryMb: 150 },
    });
    const s = await finish(h);
    expect(s).toMatchObject({
      state: 'out_of_memory',
      nativeState: 'failed 37',
      signal: 'SIGKILL',
    });
  });

  it('grants slots through the parallel environment, with a project', async () => {
    const h = await submit({
      name: 'pe',
      argv: ['sh', '-c', 'echo "$NSLOTS $PE" > slots.txt'],
      outputs: ['slots.txt'],
      resources: { tasks: 2, project: sge!.project } as SgeResources,
    });
    expect(await finish(h)).toMatchObject({ state: 'succeeded', exitCode: 0 });
    await runner.collect(h, local);
    expect(await readFile(join(local, 'slots.txt'), 'utf8')).toBe(`2 ${sge!.pe}\n`);
  });

  it('finds a job through its name when the qsub answer was lost', async () => {
    const key = testJobKey('lostid');
    const h = await submit(
      { name: 'lostid', argv: ['sleep', '30'], resources: { extraDirectives: ['--h'] } },
      key,
    );
    await rm(join(runner.jobDir(key), '.cm', 'jobid'));
    const found = await runner.find(key);
    expect(found?.data.jobId).toBe(h.data.jobId);
    await runner.cancel(found!);
  });

  it('polls many jobs with one transport call', async () => {
    const handles: RunnerHandle[] = [];
    for (let i = 0; i < 5; i++) {
      handles.push(
        await submit({ name: 'many', argv: ['true'], resources: { extraDirectives: ['--h'] } }),
      );
    }
    let calls = 0;
    const counting = new Proxy(transport, {
      get: (target, prop) => {
        const value = Reflect.get(target, prop, target);
        if (prop === 'exec') {
          return (...args: Parameters<Transport['exec']>) => {
            calls++;
            return (value as Transport['exec']).apply(target, args);
          };
        }
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const fresh = makeRunner(counting, root);
    const statuses = await fresh.poll(handles);
    expect(calls).toBe(1);
    expect(statuses.map((s) => s.nativeState)).toEqual(handles.map(() => 'hqw'));
    for (const h of handles) await runner.cancel(h);
  });

  it('reports a job that vanished from every source as lost after the grace period', async () => {
    const h = await submit({ name: 'vanish', argv: ['true'] });
    await finish(h);
    // A handle whose id Grid Engine never had (its directory exists, with no exit file for it).
    const ghost: RunnerHandle = { ...h, data: { ...h.data, jobId: '987654321' } };
    const quick = makeRunner(transport, root, { lostGraceMs: 1_000 });
    const [first] = await quick.poll([ghost]);
    expect(first?.state).toBe('queued');
    expect(first?.reason).toMatch(/absent from qstat and qacct/);
    const s = await waitForTerminal(quick, ghost, JOB_TIMEOUT_MS, POLL_MS);
    expect(s.state).toBe('lost');
  });
});
