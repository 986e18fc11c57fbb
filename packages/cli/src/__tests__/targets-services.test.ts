// `targets check` and job runs against the testbed's real services: the sshd on 127.0.0.1:2222
// (key login, verified host key), the one-node SLURM (locally and over SSH), and Grid Engine
// (over SSH as the testbed's user: Grid Engine refuses root's jobs, and these tests run as root).

import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { requireService, slurmEnv } from '@crystalmath/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../exit-codes.js';
import { crystalmath, project } from './cli-helpers.js';

const ssh = requireService('ssh');
const slurm = requireService('slurm');
const sge = requireService('sge');
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
async function newProject(config: string): Promise<string> {
  const d = await project(config);
  dirs.push(d);
  return d;
}
const sshBlock = (extra = ''): string =>
  `{ host: ${ssh?.host}, port: ${ssh?.port}, user: ${ssh?.user}, privateKeyPath: ${ssh?.privateKeyPath}, knownHostsPath: ${ssh?.knownHostsPath}${extra} }`;

/**
 * Runs `crystalmath run` in-process while `submit --wait` runs `argv` on the project's default
 * target; expects it to succeed with a handle of `kind`, then stops the scheduler (exit 0).
 */
async function runOneJob(
  dir: string,
  argv: readonly string[],
  kind: string,
): Promise<{ id: string; state: string; handle: { kind: string } }> {
  const stop = new AbortController();
  const run = crystalmath(dir, ['run'], { signal: stop.signal });
  try {
    const r = await crystalmath(dir, ['submit', '--wait', '--json', '--', ...argv]);
    expect(r.code, r.stderr).toBe(0);
    const job = JSON.parse(r.stdout) as { id: string; state: string; handle: { kind: string } };
    expect(job.state).toBe('succeeded');
    expect(job.handle.kind).toBe(kind);
    return job;
  } finally {
    stop.abort();
    expect((await run).code).toBe(0);
  }
}

describe.skipIf(!ssh)('targets check over SSH (testbed sshd)', () => {
  it('connects with a key, verifies the host key and runs `true`', async () => {
    const dir = await newProject(
      `targets:\n  lab: { type: ssh, ssh: ${sshBlock()}, root: cm-cli-runs }\n`,
    );
    const r = await crystalmath(dir, ['targets', 'check', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: true,
      targets: [{ name: 'lab', ok: true, steps: ['connect', 'true'] }],
    });
  });

  it('a host key that does not match: exit 6, and the code says so', async () => {
    const dir = await newProject('');
    const known = join(dir, 'known_hosts');
    // A syntactically valid ed25519 key that is not the server's.
    await writeFile(
      known,
      `[${ssh?.host}]:${ssh?.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk1Yd3pZ0mYw8c9m2hD7wN0C6N4v0vQ2j3Xo2QdZ5xY\n`,
    );
    await writeFile(
      join(dir, 'crystalmath.config.yaml'),
      `targets:\n  lab: { type: ssh, ssh: { host: ${ssh?.host}, port: ${ssh?.port}, user: ${ssh?.user}, privateKeyPath: ${ssh?.privateKeyPath}, knownHostsPath: ${known} } }\n`,
    );
    const r = await crystalmath(dir, ['targets', 'check']);
    expect(r.code).toBe(ExitCode.UNREACHABLE);
    expect(r.stderr).toMatch(/lab: .*E_SSH_HOSTKEY_MISMATCH/);
  });

  it('a key the server does not accept: exit 6 with E_SSH_AUTH', async () => {
    const dir = await newProject(
      `targets:\n  lab: { type: ssh, ssh: ${sshBlock().replace(`user: ${ssh?.user}`, 'user: nosuchuser')} }\n`,
    );
    const r = await crystalmath(dir, ['targets', 'check']);
    expect(r.code).toBe(ExitCode.UNREACHABLE);
    expect(r.stderr).toMatch(/lab: .*E_SSH_AUTH/);
  });
});

describe.skipIf(!slurm)('SLURM targets (testbed cluster)', () => {
  const env = slurmEnv();
  if (env.SLURM_CONF) process.env.SLURM_CONF = env.SLURM_CONF; // LocalTransport passes process.env on

  it('targets check runs sinfo on a local SLURM and lists the partition', async () => {
    const dir = await newProject(
      `targets:\n  cluster: { type: slurm, root: slurm-runs, pollIntervalMs: 1000 }\n`,
    );
    const r = await crystalmath(dir, ['targets', 'check', '--json']);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { targets: { steps: string[]; detail: string }[] };
    expect(out.targets[0]?.steps).toEqual(['exec', 'true', 'sinfo']);
    expect(out.targets[0]?.detail).toContain(slurm?.partition);
  });

  it.skipIf(!ssh)('targets check runs sinfo on the cluster over SSH', async () => {
    const dir = await newProject(
      `targets:\n  cluster: { type: slurm, ssh: ${sshBlock()}, root: /tmp/cm-cli-slurm-ssh }\n`,
    );
    const r = await crystalmath(dir, ['targets', 'check', '--json']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: true,
      targets: [{ steps: ['connect', 'true', 'sinfo'] }],
    });
  });

  it('runs a job on SLURM with `run` and `submit --wait`', async () => {
    const dir = await newProject(`scheduler: { tickMs: 100, pollIntervalMs: 500 }
targets:
  cluster: { type: slurm, root: slurm-runs, pollIntervalMs: 1000, maxConcurrent: 2, defaults: { partition: ${slurm?.partition}, walltimeSeconds: 120 } }
`);
    const job = await runOneJob(dir, ['sh', '-c', 'echo on $(hostname)'], 'slurm');
    // show gives what squeue and the cluster's file system know the job by.
    const show = await crystalmath(dir, ['show', job.id]);
    expect(show.stdout).toMatch(/native id\s+SLURM job \d+/);
    expect(show.stdout).toMatch(/host\s+this machine \(sbatch here\)/);
    expect(show.stdout).toMatch(new RegExp(`folder\\s+${dir}/slurm-runs/\\S+`));
  }, 120_000);

  it('warns at submit when the runner rounds the walltime up (SLURM: whole minutes)', async () => {
    const dir = await newProject(`targets:
  cluster: { type: slurm, root: slurm-runs, defaults: { partition: ${slurm?.partition} } }
  local: { type: local, root: runs }
`);
    const r = await crystalmath(dir, ['submit', '-t', 'cluster', '--walltime', '3s', '--', 'true']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /warning: job true: walltime 3\.0s on target "cluster" becomes 1m00s: the slurm runner counts walltimes in steps of 60 s/,
    );
    const exact = await crystalmath(dir, [
      'submit',
      '-t',
      'cluster',
      '--walltime',
      '2m',
      '--',
      'true',
    ]);
    // No walltime warning; only the note that no scheduler serves the target yet.
    expect(exact.stderr).toBe(
      'note: no scheduler is running for target cluster: start one with `crystalmath run`\n',
    );
    const local = await crystalmath(dir, [
      'submit',
      '-t',
      'local',
      '--walltime',
      '3s',
      '--',
      'true',
    ]);
    expect(local.stderr).toBe(
      'note: no scheduler is running for target local: start one with `crystalmath run`\n',
    );
    const json = await crystalmath(dir, [
      'submit',
      '--json',
      '-t',
      'cluster',
      '--walltime',
      '90s',
      '--',
      'true',
    ]);
    expect(JSON.parse(json.stderr)).toMatchObject({
      warning: { code: 'walltime-rounded', requestedSeconds: 90, seconds: 120 },
    });
  });
});

describe.skipIf(!sge || !ssh)('Grid Engine targets (testbed, over SSH)', () => {
  it('targets check lists the queues with qconf', async () => {
    const dir = await newProject(
      `targets:\n  ge: { type: sge, ssh: ${sshBlock()}, root: cm-cli-sge-runs }\n`,
    );
    const r = await crystalmath(dir, ['targets', 'check', '--json']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const out = JSON.parse(r.stdout) as { targets: { steps: string[]; detail: string }[] };
    expect(out.targets[0]?.steps).toEqual(['connect', 'true', 'qconf']);
    expect(out.targets[0]?.detail).toContain(sge?.queue);
  });

  it('runs a job on Grid Engine with `run` and `submit --wait`', async () => {
    const dir = await newProject(`scheduler: { tickMs: 100, pollIntervalMs: 500 }
targets:
  ge: { type: sge, ssh: ${sshBlock()}, root: cm-cli-sge-runs, pollIntervalMs: 500, maxConcurrent: 2, defaults: { partition: ${sge?.queue}, walltimeSeconds: 120 } }
`);
    await runOneJob(dir, ['sh', '-c', 'echo "$JOB_ID"'], 'sge');
  }, 120_000);
});
