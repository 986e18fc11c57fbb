// The Runner conformance suite against the testbed's real SLURM through SshTransport to the
// loopback sshd, as the unprivileged user `cmtest` (sshd sets SLURM_CONF with SetEnv).
// @crystalmath/ssh-pool is loaded at run time so this package's other tests do not depend on
// its build; under CI a missing build fails the file instead of skipping it.

import type { Transport } from '@crystalmath/core';
import { runnerConformance } from '@crystalmath/core/testing';
import { requireService } from '@crystalmath/testkit';
import { describe } from 'vitest';
import { JobRegistry, makeRunner, slurm } from './slurm-fixture.js';

/** The part of @crystalmath/ssh-pool this suite uses. */
interface SshPoolModule {
  readonly SshPool: new (options?: object) => { close(): Promise<void> };
  readonly SshTransport: new (options: {
    readonly pool: unknown;
    readonly host: {
      readonly host: string;
      readonly port: number;
      readonly username: string;
      readonly privateKeyPath: string;
      readonly knownHostsPath: string;
    };
  }) => Transport;
}

const ssh = requireService('ssh');
const specifier = '@crystalmath/ssh-pool';
const loaded = (await import(/* @vite-ignore */ specifier).catch((err: unknown) => {
  if (process.env.CI) throw err;
  console.warn(
    `[runner-slurm] SSH conformance skipped: ${specifier} is not built (${String(err)})`,
  );
  return undefined;
})) as Partial<SshPoolModule> | undefined;
const sshPool =
  typeof loaded?.SshPool === 'function' && typeof loaded.SshTransport === 'function'
    ? (loaded as SshPoolModule)
    : undefined;
if (loaded !== undefined && sshPool === undefined) {
  const msg = `[runner-slurm] SSH conformance skipped: ${specifier} exports no SshPool/SshTransport yet`;
  if (process.env.CI) throw new Error(msg);
  console.warn(msg);
}

describe.skipIf(!slurm || !ssh || !sshPool)('SlurmRunner over SshTransport', () => {
  runnerConformance(
    'slurm (ssh)',
    async () => {
      if (!ssh || !sshPool) throw new Error('unreachable: ssh service or ssh-pool missing');
      const pool = new sshPool.SshPool({});
      const transport = new sshPool.SshTransport({
        pool,
        host: {
          host: ssh.host,
          port: ssh.port,
          username: ssh.user,
          privateKeyPath: ssh.privateKeyPath,
          knownHostsPath: ssh.knownHostsPath,
        },
      });
      // Relative to cmtest's home: a directory cmtest owns and slurmd can see.
      const root = `cm-slurm-conf-${Date.now().toString(36)}`;
      const jobs = new JobRegistry();
      const runner = jobs.wrap(makeRunner(transport, root, { pollMinIntervalMs: 500 }));
      return {
        runner,
        cleanup: async () => {
          await jobs.cancelAll(transport);
          await transport.remove(root).catch(() => undefined);
          await pool.close();
        },
      };
    },
    { jobTimeoutMs: 180_000, minWalltimeSeconds: 60, pollIntervalMs: 250 },
  );
});
