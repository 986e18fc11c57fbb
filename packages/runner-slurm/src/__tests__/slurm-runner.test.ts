// Behaviour of SlurmRunner on the testbed's real one-node SLURM: exit codes, pending reasons,
// arrays, vanished ids, one squeue call for 200 jobs, accounting fallbacks, crash recovery.
// Every job submitted here is scancelled in afterAll.

import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCrystalMathError, type RunnerHandle } from '@crystalmath/core';
import { testJobKey, waitForState, waitForTerminal } from '@crystalmath/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SlurmRunner } from '../slurm-runner.js';
import {
  countingTransport,
  JobRegistry,
  localSlurmTransport,
  makeRunner,
  slurm,
  squeueWrapper,
  uniqueRoot,
} from './slurm-fixture.js';

const JOB_TIMEOUT = 150_000;
const MANY = Number(process.env.CM_SLURM_MANY_JOBS ?? 200);

describe
  .skipIf(!slurm)
  .concurrent('SlurmRunner on a real SLURM', { timeout: JOB_TIMEOUT + 30_000 }, () => {
    const transport = localSlurmTransport();
    const jobs = new JobRegistry();
    let root: string;
    let runner: SlurmRunner;
    let local: string;

    beforeAll(async () => {
      root = uniqueRoot();
      local = await mkdtemp(join(tmpdir(), 'cm-slurm-local-'));
      runner = jobs.wrap(makeRunner(transport, root));
    });
    afterAll(async () => {
      await jobs.cancelAll(transport);
      await rm(root, { recursive: true, force: true });
      await rm(local, { recursive: true, force: true });
    }, 120_000);

    const finish = (r: SlurmRunner, h: RunnerHandle) => waitForTerminal(r, h, JOB_TIMEOUT, 300);

    it('reports exit code 3 as failed with exitCode 3 and the native state', async () => {
      const h = await runner.submit({
        key: testJobKey('exit3'),
        spec: { name: 'exit3', argv: ['sh', '-c', 'exit 3'] },
      });
      const s = await finish(runner, h);
      expect(s).toMatchObject({
        state: 'failed',
        exitCode: 3,
        nativeState: 'FAILED',
        reason: 'NonZeroExitCode',
      });
    });

    it('reports a success with exit code 0 and the job log through tail', async () => {
      const h = await runner.submit({
        key: testJobKey('ok'),
        spec: { name: 'ok', argv: ['sh', '-c', 'echo "on $SLURM_JOB_PARTITION"; echo err >&2'] },
      });
      expect(await finish(runner, h)).toMatchObject({
        state: 'succeeded',
        exitCode: 0,
        nativeState: 'COMPLETED',
      });
      expect((await runner.tail(h)).data).toBe(`on ${slurm?.partition ?? 'debug'}\n`);
      expect((await runner.tail(h, { stream: 'stderr' })).data).toBe('err\n');
    });

    it('shows a job held by a dependency as queued with the reason, then cancels both', async () => {
      const parent = await runner.submit({
        key: testJobKey('parent'),
        spec: { name: 'parent', argv: ['true'], resources: { extraDirectives: ['--hold'] } },
      });
      const child = await runner.submit({
        key: testJobKey('child'),
        spec: {
          name: 'child',
          argv: ['true'],
          resources: {
            dependency: [{ type: 'afterok', jobIds: [String(parent.data.jobId)] }],
          } as never,
        },
      });
      const [p, c] = await runner.poll([parent, child]);
      expect(p).toMatchObject({ state: 'queued', nativeState: 'PENDING', reason: 'JobHeldUser' });
      expect(c).toMatchObject({ state: 'queued', nativeState: 'PENDING', reason: 'Dependency' });
      await runner.cancel(child);
      await runner.cancel(parent);
      expect((await finish(runner, child)).state).toBe('cancelled');
      expect((await finish(runner, parent)).state).toBe('cancelled');
    });

    it('runs an array job: one failing task fails the job with its exit code, outputs of all tasks', async () => {
      const h = await runner.submit({
        key: testJobKey('array'),
        spec: {
          name: 'array',
          script:
            'echo "task $SLURM_ARRAY_TASK_ID" > "out-$SLURM_ARRAY_TASK_ID.txt"\n[ "$SLURM_ARRAY_TASK_ID" != 1 ] || exit 4\n',
          outputs: ['out-*.txt'],
          resources: { array: '0-2' },
        },
      });
      expect(h.data.arrayTasks).toBe(3);
      const s = await finish(runner, h);
      expect(s).toMatchObject({
        state: 'failed',
        exitCode: 4,
        reason: '1 of 3 array tasks did not succeed',
      });
      const dest = await mkdtemp(join(local, 'array-'));
      const got = await runner.collect(h, dest);
      expect([...got.files].sort()).toEqual(['out-0.txt', 'out-1.txt', 'out-2.txt']);
      expect(await readFile(join(dest, 'out-2.txt'), 'utf8')).toBe('task 2\n');
    });

    it('gives a vanished job id a grace period, then reports it lost, without failing the batch', async () => {
      // Generous, so the two polls below (squeue and sacct of a loaded cluster) fit in it.
      const LOST_GRACE_MS = 10_000;
      const r = makeRunner(transport, root, { lostGraceMs: LOST_GRACE_MS });
      const real = await runner.submit({
        key: testJobKey('real'),
        spec: { name: 'real', argv: ['true'] },
      });
      const ghost: RunnerHandle = {
        kind: 'slurm',
        jobKey: 'ghost-1',
        data: {
          jobId: '987654321',
          jobDir: r.jobDir('ghost-1'),
          name: 'ghost',
          submittedAt: Date.now(),
        },
      };
      // Alone: squeue is given the id twice so a purged id is absent rather than an error.
      const [alone] = await r.poll([ghost]);
      const absentBy = Date.now(); // the runner counts the grace from this poll at the latest
      expect(alone?.state).toBe('queued');
      expect(alone?.reason).toMatch(/^absent from squeue and accounting/);
      const [, g] = await r.poll([real, ghost]);
      expect(g?.state).toBe('queued');
      // Until the grace is over: that moment is the behaviour under test, not a guess.
      await new Promise((res) => setTimeout(res, absentBy + LOST_GRACE_MS + 50 - Date.now()));
      const [rs, lost] = await r.poll([real, ghost]);
      expect(lost).toMatchObject({ state: 'lost' });
      expect(lost?.reason).toMatch(/absent from squeue and accounting/);
      expect(rs?.state).not.toBe('lost');
    });

    it('polls 200 tracked jobs with one transport call and one squeue call', async () => {
      const { path, log } = await squeueWrapper(local);
      const counted = countingTransport(transport);
      const r = makeRunner(counted.transport, root, { commands: { squeue: path } });
      const handles: RunnerHandle[] = [];
      const queue = Array.from({ length: MANY }, (_, i) => i);
      // Held jobs never run: 200 of them cost the shared cluster nothing.
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
            const h = await r.submit({
              key: testJobKey(`many${i}`),
              spec: { name: 'many', argv: ['true'], resources: { extraDirectives: ['--hold'] } },
            });
            handles.push(jobs.track(h));
          }
        }),
      );
      await writeFile(log, '');
      counted.reset();
      const statuses = await r.poll(handles);
      expect(counted.execs()).toBe(1);
      expect((await readFile(log, 'utf8')).trim().split('\n')).toHaveLength(1);
      expect(statuses).toHaveLength(MANY);
      expect(statuses.every((s) => s.state === 'queued' && s.reason === 'JobHeldUser')).toBe(true);
      // Cancelled in one scancel call, then seen as cancelled, still in one poll call.
      await transport.exec(['scancel', ...handles.map((h) => String(h.data.jobId))]);
      counted.reset();
      const after = await r.poll(handles);
      expect(counted.execs()).toBe(1);
      expect(after.every((s) => s.state === 'cancelled')).toBe(true);
    });

    it('polls 3000 handles in one call: the script travels on stdin, not as one huge argument', async () => {
      const counted = countingTransport(transport);
      const r = makeRunner(counted.transport, root);
      const handles: RunnerHandle[] = Array.from({ length: 3000 }, (_, i) => ({
        kind: 'slurm',
        jobKey: `bulk-${i}-${'x'.repeat(40)}`,
        data: {
          jobId: String(900_000_000 + i),
          jobDir: r.jobDir(`bulk-${i}-${'x'.repeat(40)}`),
          name: 'b',
          submittedAt: 0,
        },
      }));
      const statuses = await r.poll(handles);
      expect(counted.execs()).toBe(1);
      expect(statuses).toHaveLength(3000);
      expect(statuses.every((s) => s.state === 'queued' && /^absent/.test(s.reason ?? ''))).toBe(
        true,
      );
    });

    it('reports exit code 3 from jobcomp or the exit file once squeue has forgotten the job', async () => {
      const h = await runner.submit({
        key: testJobKey('forgot'),
        spec: { name: 'forgot', argv: ['sh', '-c', 'exit 3'] },
      });
      expect((await finish(runner, h)).exitCode).toBe(3);
      const jobId = String(h.data.jobId);
      const { path, log } = await squeueWrapper(local, [jobId]);
      // auto: sacct answers "accounting storage is disabled", sacct -c reads the jobcomp file.
      const auto = makeRunner(transport, root, { commands: { squeue: path } });
      expect((await auto.poll([h]))[0]).toMatchObject({
        state: 'failed',
        exitCode: 3,
        nativeState: 'FAILED',
      });
      // none: only the exit file the job script wrote.
      const none = makeRunner(transport, root, { commands: { squeue: path }, accounting: 'none' });
      const [s] = await none.poll([h]);
      expect(s).toMatchObject({ state: 'failed', exitCode: 3 });
      expect(s?.reason).toMatch(/exit file/);
      expect(await readFile(log, 'utf8')).toContain(jobId);
    });

    it('stops asking accounting for a while when neither sacct nor jobcomp answers', async () => {
      const counted = countingTransport(transport);
      const r = makeRunner(counted.transport, root, { commands: { sacct: 'false' } });
      const ghost: RunnerHandle = {
        kind: 'slurm',
        jobKey: 'ghost-2',
        data: { jobId: '987654322', jobDir: r.jobDir('ghost-2'), name: 'ghost', submittedAt: 0 },
      };
      await r.poll([ghost]);
      await r.poll([ghost]);
      const [first, second] = counted.commands.map(String);
      expect(first).toContain('--completion');
      expect(second).toContain('--jobs=987654322,987654322 ');
      expect(second).not.toContain('--completion');
      expect(second).not.toContain('--allocations');
    });

    it('finds a job after a restart, even when the job id file was never written', async () => {
      const key = testJobKey('crash');
      const h = await runner.submit({
        key,
        spec: { name: 'crash', argv: ['true'], resources: { extraDirectives: ['--hold'] } },
      });
      const restarted = makeRunner(localSlurmTransport(), root);
      expect((await restarted.find(key))?.data.jobId).toBe(h.data.jobId);
      // A crash between sbatch and the id file: squeue --name still knows the job by its key.
      await unlink(join(root, key, '.cm', 'jobid'));
      const found = await restarted.find(key);
      expect(found).toMatchObject({ kind: 'slurm', jobKey: key, data: { jobId: h.data.jobId } });
      // And the key stays taken.
      await expect(
        runner.submit({ key, spec: { name: 'again', argv: ['true'] } }),
      ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_RUNNER_SUBMIT'));
      await runner.cancel(h);
    });

    it('keeps the key taken when the sbatch call fails after the job was queued, and find recovers it', async () => {
      // Fault injection: sbatch queues the job, then the call hangs past the command timeout,
      // as when a connection drops after the scheduler accepted the job.
      const dir = await mkdtemp(join(local, 'cm-sbatch-'));
      const sbatch = join(dir, 'sbatch');
      await writeFile(sbatch, '#!/bin/sh\nsbatch "$@"\nsleep 30\n', { mode: 0o755 });
      const r = makeRunner(transport, root, { commands: { sbatch }, commandTimeoutMs: 3_000 });
      const key = testJobKey('lostreply');
      const spec = {
        name: 'lostreply',
        argv: ['true'],
        resources: { extraDirectives: ['--hold'] },
      };
      await expect(r.submit({ key, spec })).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_SLURM_COMMAND'),
      );
      const found = await runner.find(key);
      expect(found?.data.jobId).toMatch(/^\d+$/);
      if (found) jobs.track(found);
      expect((await runner.poll([found as RunnerHandle]))[0]).toMatchObject({
        state: 'queued',
        reason: 'JobHeldUser',
      });
      await expect(runner.submit({ key, spec })).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_RUNNER_SUBMIT'),
      );
      await runner.cancel(found as RunnerHandle);
      await rm(dir, { recursive: true, force: true });
    });

    it('fails a submission sbatch rejects with E_SLURM_COMMAND and leaves the key free', async () => {
      const key = testJobKey('reject');
      const spec = {
        name: 'reject',
        argv: ['true'],
        resources: { partition: 'no-such-partition' },
      };
      await expect(runner.submit({ key, spec })).rejects.toSatisfy(
        (e) =>
          isCrystalMathError(e, 'E_SLURM_COMMAND') && /sbatch failed/.test((e as Error).message),
      );
      expect(existsSync(join(root, key))).toBe(false);
      expect(await runner.find(key)).toBeNull();
      const h = await runner.submit({ key, spec: { name: 'reject', argv: ['true'] } });
      expect((await finish(runner, h)).state).toBe('succeeded');
    });

    it('reuses a job directory left by a submit that crashed before sbatch', async () => {
      const key = testJobKey('stale');
      const r = makeRunner(transport, root, { staleClaimSeconds: 0 });
      const busy = makeRunner(transport, root, { staleClaimSeconds: 3_600 });
      await transport.exec({
        script: `mkdir -p '${join(root, key, '.cm')}' && echo 1 > '${join(root, key, '.cm', 'claim')}'`,
      });
      expect(await r.find(key)).toBeNull();
      await transport.exec({ script: `date +%s > '${join(root, key, '.cm', 'claim')}'` });
      await expect(busy.submit({ key, spec: { name: 'stale', argv: ['true'] } })).rejects.toSatisfy(
        (e) => isCrystalMathError(e, 'E_RUNNER_SUBMIT') && /in progress/.test((e as Error).message),
      );
      const h = jobs.track(await r.submit({ key, spec: { name: 'stale', argv: ['true'] } }));
      expect((await finish(r, h)).state).toBe('succeeded');
    });

    it('serves polls within pollMinIntervalMs from cache, without a scheduler call', async () => {
      const counted = countingTransport(transport);
      const r = makeRunner(counted.transport, root, { pollMinIntervalMs: 1_500 });
      const h = await runner.submit({
        key: testJobKey('throttle'),
        spec: { name: 'throttle', argv: ['true'], resources: { extraDirectives: ['--hold'] } },
      });
      const t0 = Date.now();
      const first = await r.poll([h]);
      const second = await r.poll([h]);
      expect(counted.execs()).toBe(1);
      expect(second).toEqual(first);
      await r.cancel(h); // one scancel; it drops the cached live status of this job
      await r.poll([h]); // so this poll calls squeue, but only once the interval has passed
      expect(counted.execs()).toBe(3);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1_500);
      await waitForState(r, h, 'cancelled', 30_000, 300);
    });
  });
