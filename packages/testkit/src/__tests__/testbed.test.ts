// Smoke tests of the testbed itself: each service answers a real client.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { requireService, slurmEnv } from '../index.js';

const ssh = requireService('ssh');
const slurm = requireService('slurm');
const pg = requireService('postgres');

describe.skipIf(!ssh)('sshd on loopback', () => {
  it.each(['user', 'rootUser'] as const)('accepts key login as the %s with host key checking', (who) => {
    const cfg = ssh!;
    const out = execFileSync(
      'ssh',
      ['-n', '-i', cfg.privateKeyPath, '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${cfg.knownHostsPath}`,
        '-o', 'StrictHostKeyChecking=yes', '-p', String(cfg.port), `${cfg[who]}@${cfg.host}`, 'whoami'],
      { encoding: 'utf8' },
    );
    expect(out.trim()).toBe(cfg[who]);
  });
});

describe.skipIf(!slurm)('one-node SLURM', () => {
  it('runs an sbatch --wrap job to COMPLETED', async () => {
    const env = { ...process.env, ...slurmEnv() };
    const id = execFileSync('sbatch', ['--parsable', '--chdir=/tmp', '--wrap', 'echo hi'], { encoding: 'utf8', env }).trim();
    expect(id).toMatch(/^\d+$/);
    let state = '';
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      state = execFileSync('squeue', ['-h', '-t', 'all', '-j', id, '-o', '%T'], { encoding: 'utf8', env }).trim();
      if (['COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT'].includes(state)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(state).toBe('COMPLETED');
  });
});

describe.skipIf(!pg)('PostgreSQL on loopback', () => {
  it('answers a query with password authentication', () => {
    const out = execFileSync('psql', [pg!.connectionString, '-tAc', 'select 40 + 2'], { encoding: 'utf8' });
    expect(out.trim()).toBe('42');
  });
});
