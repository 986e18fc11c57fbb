// The Runner conformance suite against the testbed's real SLURM through SshTransport to the
// loopback sshd, as the unprivileged user `cmtest` (sshd sets SLURM_CONF with SetEnv).

import { runnerConformance } from '@crystalmath/core/testing';
import { SshPool, SshTransport } from '@crystalmath/ssh-pool';
import { requireService } from '@crystalmath/testkit';
import { describe } from 'vitest';
import { JobRegistry, makeRunner, slurm } from './slurm-fixture.js';

const ssh = requireService('ssh');

describe.skipIf(!slurm || !ssh)('SlurmRunner over SshTransport', () => {
  runnerConformance(
    'slurm (ssh)',
    async () => {
      if (!ssh) throw new Error('unreachable: ssh service missing');
      const pool = new SshPool();
      const transport = new SshTransport({
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
