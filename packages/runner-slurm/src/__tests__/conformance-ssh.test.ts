// The Runner conformance suite against the testbed's real SLURM through SshTransport to the
// loopback sshd, as the unprivileged user `cmtest` (sshd sets SLURM_CONF with SetEnv).
// @crystalmath/ssh-pool is loaded at run time so this package's other tests do not depend on
// its build; under CI a missing build fails the file instead of skipping it.

import type { Transport } from '@crystalmath/core';
import { runnerConformance } from '@crystalmath/core/testing';
import { testbedSshTransport } from '@crystalmath/testkit';
import { describe } from 'vitest';
import { JobRegistry, makeRunner, slurm } from './slurm-fixture.js';

const connect = await testbedSshTransport<Transport>(
  'runner-slurm',
  (s) => import(/* @vite-ignore */ s),
);

describe.skipIf(!slurm || !connect)('SlurmRunner over SshTransport', () => {
  runnerConformance(
    'slurm (ssh)',
    async () => {
      const { transport, close } = connect!();
      // Relative to cmtest's home: a directory cmtest owns and slurmd can see.
      const root = `cm-slurm-conf-${Date.now().toString(36)}`;
      const jobs = new JobRegistry();
      const runner = jobs.wrap(makeRunner(transport, root, { pollMinIntervalMs: 500 }));
      return {
        runner,
        cleanup: async () => {
          await jobs.cancelAll(transport);
          await transport.remove(root).catch(() => undefined);
          await close();
        },
      };
    },
    { jobTimeoutMs: 180_000, minWalltimeSeconds: 60, pollIntervalMs: 250 },
  );
});
