// CI smoke tests of the testbed: each service answers a real client (ssh, sbatch, psql), and
// the sshd fault helpers stop and start a real sshd. A service that is not up skips its tests
// here and fails them under CI.

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { privateSshd, requireService, type SshService, slurmEnv } from '../index.js';

const run = promisify(execFile);
const ssh = requireService('ssh');
const slurm = requireService('slurm');
const pg = requireService('postgres');
const sge = requireService('sge');
const isRoot = process.getuid?.() === 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Client options shared by ssh and sftp: our key only, strict host key checking. */
function clientOptions(cfg: SshService, knownHosts = cfg.knownHostsPath): string[] {
  return [
    '-F',
    '/dev/null',
    '-i',
    cfg.privateKeyPath,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    `UserKnownHostsFile=${knownHosts}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'ConnectTimeout=5',
  ];
}

function sshArgs(cfg: SshService, user: string, knownHosts?: string): string[] {
  return [...clientOptions(cfg, knownHosts), '-n', '-p', String(cfg.port), `${user}@${cfg.host}`];
}

/** Exit code of a command (0 on success) without throwing. */
async function exitCode(cmd: string, args: string[]): Promise<number> {
  try {
    await run(cmd, args, { timeout: 30_000 });
    return 0;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'number' ? code : -1;
  }
}

const slurmRun = (cmd: string, args: string[], cwd?: string) =>
  run(cmd, args, {
    env: { ...process.env, ...slurmEnv() },
    timeout: 30_000,
    ...(cwd ? { cwd } : {}),
  });

/** Polls `scontrol show job` until the job leaves PENDING/RUNNING/COMPLETING; its final state. */
async function waitForJob(id: string, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let state = '';
  while (Date.now() < deadline) {
    const { stdout } = await slurmRun('scontrol', ['show', 'job', '-o', id]);
    state = /JobState=(\S+)/.exec(stdout)?.[1] ?? '';
    if (state && !/^(PENDING|CONFIGURING|RUNNING|COMPLETING)$/.test(state)) return state;
    await sleep(300);
  }
  return `still ${state || 'unknown'} after ${timeoutMs} ms`;
}

const submitted: string[] = [];
afterAll(async () => {
  if (slurm && submitted.length > 0) await slurmRun('scancel', submitted).catch(() => undefined);
});

describe.skipIf(!ssh)('sshd on loopback', () => {
  const cfg = ssh!;

  it.each([
    ['normal user', cfg?.user],
    ['root', cfg?.rootUser],
  ])('accepts key login as the %s with strict host key checking', async (_, user) => {
    expect(await exitCode('ssh', [...sshArgs(cfg, user!), 'true'])).toBe(0);
    const { stdout } = await run('ssh', [...sshArgs(cfg, user!), 'id -un'], { timeout: 30_000 });
    expect(stdout.trim()).toBe(user);
  });

  it('refuses a host whose key is not the one in known_hosts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-testkit-'));
    try {
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'other')]);
      const other = readFileSync(join(dir, 'other.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
      const knownHosts = join(dir, 'known_hosts');
      writeFileSync(knownHosts, `[${cfg.host}]:${cfg.port} ${other}\n`);
      expect(await exitCode('ssh', [...sshArgs(cfg, cfg.user, knownHosts), 'true'])).toBe(255);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves SFTP', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-testkit-'));
    try {
      const batch = join(dir, 'batch');
      writeFileSync(join(dir, 'up.txt'), 'via sftp\n');
      writeFileSync(
        batch,
        `put ${join(dir, 'up.txt')} cm-testkit-sftp.txt\nget cm-testkit-sftp.txt ${join(dir, 'down.txt')}\nrm cm-testkit-sftp.txt\n`,
      );
      await run(
        'sftp',
        [...clientOptions(cfg), '-b', batch, '-P', String(cfg.port), `${cfg.user}@${cfg.host}`],
        { timeout: 30_000 },
      );
      expect(readFileSync(join(dir, 'down.txt'), 'utf8')).toBe('via sftp\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!ssh || !isRoot)('sshd fault helpers (a private sshd)', () => {
  it('stops and starts an sshd through its pid file, dropping its sessions', async () => {
    const sshd = await privateSshd();
    try {
      expect(await exitCode('ssh', [...sshArgs(sshd, sshd.user), 'true'])).toBe(0);
      const pid = sshd.controller.pid();
      expect(pid).toBeGreaterThan(0);

      await sshd.stop();
      expect(sshd.controller.pid()).toBeUndefined();
      expect(await exitCode('ssh', [...sshArgs(sshd, sshd.user), 'true'])).toBe(255);

      await sshd.start();
      expect(sshd.controller.pid()).not.toBe(pid);
      expect(await exitCode('ssh', [...sshArgs(sshd, sshd.rootUser), 'true'])).toBe(0);

      // A session open across a restart ends with it.
      const session = run('ssh', [...sshArgs(sshd, sshd.user), 'sleep 30'], { timeout: 40_000 });
      session.catch(() => undefined);
      await sleep(1_000);
      const started = Date.now();
      await sshd.restart();
      await expect(session).rejects.toBeTruthy();
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(await exitCode('ssh', [...sshArgs(sshd, sshd.user), 'true'])).toBe(0);
    } finally {
      await sshd.close();
    }
  });
});

describe.skipIf(!slurm)('one-node SLURM', () => {
  const cfg = slurm!;

  it('runs an sbatch --wrap job to COMPLETED and records it in the jobcomp file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-testkit-slurm-'));
    try {
      const { stdout } = await slurmRun(
        'sbatch',
        ['--parsable', '--cpus-per-task=1', '--mem=64', '--wrap', 'echo hi'],
        dir,
      );
      const id = stdout.trim().split(';')[0]!;
      expect(id).toMatch(/^\d+$/);
      submitted.push(id);
      expect(await waitForJob(id)).toBe('COMPLETED');
      expect(readFileSync(join(dir, `slurm-${id}.out`), 'utf8')).toBe('hi\n');
      const { stdout: squeue } = await slurmRun('squeue', [
        '-h',
        '-t',
        'all',
        '-j',
        id,
        '-o',
        '%T',
      ]);
      expect(squeue.trim()).toBe('COMPLETED');
      expect(readFileSync(cfg.jobcompLoc, 'utf8')).toMatch(
        new RegExp(`JobId=${id} .*JobState=COMPLETED`),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!slurm || !ssh)('SLURM through the sshd as the normal user', () => {
  it('has SLURM_CONF in the session and submits a job that completes', async () => {
    const cfg = ssh!;
    const { stdout: conf } = await run('ssh', [...sshArgs(cfg, cfg.user), 'echo "$SLURM_CONF"'], {
      timeout: 30_000,
    });
    expect(conf.trim()).toBe(slurm!.conf);
    const { stdout } = await run(
      'ssh',
      [
        ...sshArgs(cfg, cfg.user),
        'sbatch --parsable --cpus-per-task=1 --mem=64 -o /dev/null --wrap true',
      ],
      { timeout: 30_000 },
    );
    const id = stdout.trim().split(';')[0]!;
    expect(id).toMatch(/^\d+$/);
    submitted.push(id);
    expect(await waitForJob(id)).toBe('COMPLETED');
  });
});

describe.skipIf(!pg)('PostgreSQL on loopback', () => {
  const cfg = pg!;

  it('answers a query with password authentication', async () => {
    const { stdout } = await run('psql', [cfg.connectionString, '-X', '-tA', '-c', 'select 1'], {
      timeout: 30_000,
    });
    expect(stdout.trim()).toBe('1');
  });

  it('lets the test user create and drop a scratch database', async () => {
    const name = `cm_smoke_${process.pid}_${Date.now()}`;
    const psql = (sql: string) =>
      run('psql', [cfg.connectionString, '-X', '-tA', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
        timeout: 30_000,
      });
    await psql(`create database ${name}`);
    try {
      const url = cfg.connectionString.replace(/\/[^/]*$/, `/${name}`);
      const { stdout } = await run('psql', [url, '-X', '-tA', '-c', 'select current_user'], {
        timeout: 30_000,
      });
      expect(stdout.trim()).toBe(cfg.user);
    } finally {
      await psql(`drop database ${name}`);
    }
  });

  it('refuses a wrong password', async () => {
    const wrong = cfg.connectionString.replace(`:${cfg.password}@`, ':not-the-password@');
    expect(await exitCode('psql', [wrong, '-X', '-tA', '-c', 'select 1'])).not.toBe(0);
  });
});

describe.skipIf(!sge || !isRoot)('Grid Engine (qmaster + execd)', () => {
  it('runs a qsub job as the normal user and records it in qacct', async () => {
    const cfg = sge!;
    const dir = mkdtempSync(join(tmpdir(), 'cm-testkit-sge-'));
    const asUser = (argv: string[]) =>
      run('runuser', ['-u', cfg.user, '--', ...argv], { cwd: dir, timeout: 30_000 });
    try {
      await run('chmod', ['0777', dir]);
      writeFileSync(join(dir, 'job.sh'), '#!/bin/sh\necho hi\n');
      const { stdout } = await asUser([
        'qsub',
        '-terse',
        '-cwd',
        '-o',
        'out.txt',
        '-j',
        'y',
        'job.sh',
      ]);
      const id = stdout.trim();
      expect(id).toMatch(/^\d+$/);
      // qacct has the record a second or so after the job ends (flush_time 1 s): poll it.
      const deadline = Date.now() + 60_000;
      let acct = '';
      while (Date.now() < deadline) {
        acct = await asUser(['qacct', '-j', id]).then(
          (r) => r.stdout,
          () => '',
        );
        if (/^exit_status\s+0\b/m.test(acct)) break;
        await sleep(500);
      }
      expect(acct).toMatch(/^failed\s+0\b/m);
      expect(acct).toMatch(/^exit_status\s+0\b/m);
      expect(readFileSync(join(dir, 'out.txt'), 'utf8')).toBe('hi\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
