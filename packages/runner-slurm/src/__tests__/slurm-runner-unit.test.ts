// SlurmRunner behaviour that needs no scheduler: input validation that changes nothing,
// handle checks, a failing squeue (fault injection), tail and collect on job directories.

import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalTransport, type RunnerHandle } from '@crystalmath/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SlurmRunner } from '../slurm-runner.js';
import { isCrystalMathError, type JobSpec } from './helpers.js';
import { countingTransport } from './observers.js';

function thrown(fn: () => unknown): { field?: string; code?: string } {
  try {
    fn();
  } catch (e) {
    return e as { field?: string; code?: string };
  }
  throw new Error('expected a throw');
}

describe('SlurmRunner without a scheduler', () => {
  let root: string;
  let local: string;
  const transport = new LocalTransport();
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cm-slurm-unit-'));
    local = await mkdtemp(join(tmpdir(), 'cm-slurm-unit-local-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
    await rm(local, { recursive: true, force: true });
  });

  const handle = (
    key: string,
    jobId: string,
    extra: Record<string, string | number> = {},
  ): RunnerHandle => ({
    kind: 'slurm',
    jobKey: key,
    data: { jobId, jobDir: join(root, key), name: key, submittedAt: 0, ...extra },
  });

  it('validate(spec) refuses a bad SLURM field without I/O, naming the field under the caller prefix', async () => {
    const counted = countingTransport(transport);
    const runner = new SlurmRunner({ transport: counted.transport, root });
    expect(runner.capabilities.validate).toBe(true);
    const good: JobSpec = { name: 'ok', argv: ['true'], resources: { tasks: 2 } };
    expect(() => runner.validate(good)).not.toThrow();
    const bad = (resources: Record<string, unknown>): JobSpec =>
      ({ name: 'bad', argv: ['true'], resources }) as JobSpec;
    expect(thrown(() => runner.validate(bad({ gres: 'gpu;rm -rf /' }))).field).toBe(
      'spec.resources.gres',
    );
    const dep = bad({ dependency: [{ type: 'afterok', jobIds: ['x1'] }] });
    expect(thrown(() => runner.validate(dep, 'items[3].spec')).field).toMatch(
      /^items\[3\]\.spec\.resources\.dependency/,
    );
    const extra = bad({ extraDirectives: ['--wrap=rm -rf /'] });
    expect(thrown(() => runner.validate(extra, 'options.spec')).code).toBe('E_VALIDATION');
    expect(counted.execs()).toBe(0);
  });

  it('validates its options and names the field', () => {
    expect(thrown(() => new SlurmRunner({ transport, root: '' })).field).toBe('root');
    expect(
      thrown(() => new SlurmRunner({ transport, root, defaults: { partition: 'a\nb' } })).field,
    ).toBe('defaults.partition');
    expect(
      thrown(() => new SlurmRunner({ transport, root, skipDirectives: ['--error'] })).field,
    ).toBe('skipDirectives[0]');
    expect(
      thrown(() => new SlurmRunner({ transport, root, commands: { squeue: 'a\nb' } })).field,
    ).toBe('commands.squeue');
    expect(thrown(() => new SlurmRunner({ transport, root, pollMinIntervalMs: -1 })).field).toBe(
      'pollMinIntervalMs',
    );
  });

  it('rejects bad specs before touching the target', async () => {
    const counted = countingTransport(transport);
    const runner = new SlurmRunner({ transport: counted.transport, root: join(root, 'never') });
    const bad: [JobSpec, string][] = [
      [
        { name: 'x', argv: ['true'], resources: { partition: 'debug\n#SBATCH --qos=x' } },
        'spec.resources.partition',
      ],
      [
        { name: 'x', argv: ['true'], resources: { extraDirectives: ['--output=/etc/x'] } },
        'spec.resources.extraDirectives[0]',
      ],
      [
        { name: 'x', argv: ['true'], inputs: [{ content: 'x', to: '.cm/jobid' }] },
        'spec.inputs[0].to',
      ],
      [{ name: 'x y', argv: ['true'] }, 'spec.name'],
    ];
    for (const [spec, field] of bad) {
      await expect(runner.submit({ key: 'k1', spec })).rejects.toSatisfy(
        (e) =>
          isCrystalMathError(e, 'E_VALIDATION') &&
          (e as unknown as { field: string }).field === field,
      );
    }
    await expect(
      runner.submit({ key: '../k', spec: { name: 'x', argv: ['true'] } }),
    ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_VALIDATION'));
    expect(counted.execs()).toBe(0);
    expect(await transport.stat(join(root, 'never'))).toBeNull();
  });

  it('rejects foreign or forged handles with E_RUNNER_HANDLE', async () => {
    const runner = new SlurmRunner({ transport, root });
    const bad: RunnerHandle[] = [
      { kind: 'process', jobKey: 'k', data: { jobId: '1' } },
      { kind: 'slurm', jobKey: 'k', data: { jobId: '1; rm -rf /', jobDir: join(root, 'k') } },
      { kind: 'slurm', jobKey: 'k', data: { jobId: '1', jobDir: '/etc' } },
    ];
    for (const h of bad) {
      await expect(runner.poll([h])).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_RUNNER_HANDLE'),
      );
      await expect(runner.cleanup(h)).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_RUNNER_HANDLE'),
      );
    }
    expect(await runner.poll([])).toEqual([]);
  });

  it('throws E_SLURM_COMMAND when squeue fails, and never turns that into lost', async () => {
    const runner = new SlurmRunner({
      transport,
      root,
      commands: { squeue: 'false' },
      lostGraceMs: 0,
      pollMinIntervalMs: 0,
    });
    for (let i = 0; i < 2; i++) {
      await expect(runner.poll([handle('k', '12')])).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_SLURM_COMMAND'),
      );
    }
  });

  it('gives up with E_ABORTED when the signal fires, also while waiting for the poll interval', async () => {
    const runner = new SlurmRunner({
      transport,
      root,
      commands: { squeue: 'true' },
      accounting: 'none',
      pollMinIntervalMs: 60_000,
    });
    await expect(
      runner.poll([handle('k', '12')], { signal: AbortSignal.abort() }),
    ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_ABORTED'));
    // The first call goes through (`true` prints nothing: the job is absent, within its grace).
    expect((await runner.poll([handle('k', '12')]))[0]?.state).toBe('queued');
    // A new job must wait 60 s for the next scheduler call: the signal ends the wait.
    const t0 = Date.now();
    await expect(
      runner.poll([handle('k2', '13')], { signal: AbortSignal.timeout(200) }),
    ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_ABORTED'));
    expect(Date.now() - t0).toBeLessThan(5_000);
    await expect(
      runner.submit(
        { key: 'k3', spec: { name: 'x', argv: ['true'] } },
        { signal: AbortSignal.abort() },
      ),
    ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_ABORTED'));
  });

  it('tails the job log from an offset and never splits a UTF-8 character', async () => {
    const runner = new SlurmRunner({ transport, root });
    await mkdir(join(root, 'tail'), { recursive: true });
    const h = handle('tail', '55');
    expect(await runner.tail(h)).toEqual({ data: '', offset: 0 });
    const bytes = Buffer.from('ab✓', 'utf8');
    await writeFile(join(root, 'tail', 'slurm-55.out'), bytes.subarray(0, 4)); // ✓ cut after 2 of 3 bytes
    expect(await runner.tail(h)).toEqual({ data: 'ab', offset: 2 });
    await writeFile(join(root, 'tail', 'slurm-55.out'), bytes);
    expect(await runner.tail(h, { offset: 2 })).toEqual({ data: '✓', offset: 5 });
    await writeFile(join(root, 'tail', 'slurm-55_3.err'), 'task err\n');
    expect(
      (
        await runner.tail(handle('tail', '55', { arrayFirst: '3', arrayTasks: 2 }), {
          stream: 'stderr',
        })
      ).data,
    ).toBe('task err\n');
  });

  it('collects files matching globs, outside the runner folder only', async () => {
    const runner = new SlurmRunner({ transport, root });
    const dir = join(root, 'coll');
    await mkdir(join(dir, 'res', 'deep'), { recursive: true });
    await mkdir(join(dir, '.cm'), { recursive: true });
    await writeFile(join(dir, 'a.txt'), 'A');
    await writeFile(join(dir, 'b.log'), 'B');
    await writeFile(join(dir, 'res', 'deep', 'c.txt'), 'CC');
    await writeFile(join(dir, '.cm', 'x.txt'), 'internal');
    const dest = await mkdtemp(join(local, 'c-'));
    const r = await runner.collect(handle('coll', '1'), dest, {
      globs: ['*.txt', 'res/**/*.txt', '.cm/*'],
    });
    expect([...r.files].sort()).toEqual(['a.txt', 'res/deep/c.txt']);
    expect(r.bytes).toBe(3);
    expect(await readFile(join(dest, 'res', 'deep', 'c.txt'), 'utf8')).toBe('CC');
  });

  it('cleans up only the job directory', async () => {
    const runner = new SlurmRunner({ transport, root });
    await mkdir(join(root, 'gone', '.cm'), { recursive: true });
    await mkdir(join(root, 'kept'), { recursive: true });
    await runner.cleanup(handle('gone', '3'));
    expect(await transport.stat(join(root, 'gone'))).toBeNull();
    expect(await transport.stat(join(root, 'kept'))).not.toBeNull();
    expect(await runner.find('gone')).toBeNull();
  });
});

describe('SlurmRunner over an SSH connection that cannot be made', () => {
  it('says why a submit could not run: the transport error and its code', async () => {
    const { freePort } = await import('@crystalmath/testkit');
    const { SshPool, SshTransport } = await import('@crystalmath/ssh-pool');
    const { generateKeyPairSync } = await import('node:crypto');
    const privateKey = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
      publicKeyEncoding: { type: 'pkcs1', format: 'pem' },
    }).privateKey;
    const port = await freePort(); // nothing listens: the connection is refused
    const pool = new SshPool({ max: 1 });
    const transport = new SshTransport({
      pool,
      host: { host: '127.0.0.1', port, username: 'nobody', privateKey, connectTimeoutMs: 5_000 },
    });
    try {
      const runner = new SlurmRunner({ transport, root: '/tmp/cm-dead-ssh' });
      const err = await runner
        .submit({ key: 'dead-ssh-1-a1', spec: { name: 'dead', argv: ['true'] } })
        .then(
          () => undefined,
          (e: unknown) => e as { code: string; message: string; details: Record<string, unknown> },
        );
      expect(err?.code).toBe('E_SLURM_COMMAND');
      expect(err?.message).toMatch(
        /mkdir could not run on ssh:\/\/nobody@127\.0\.0\.1:\d+: .+ \[E_SSH_[A-Z_]+\]/,
      );
      expect(err?.details.causeCode).toMatch(/^E_SSH_/);
    } finally {
      await pool.close();
    }
  });
});
