// The Runner conformance suite against the testbed's real Grid Engine through SshTransport to
// the loopback sshd, as the unprivileged user `cmtest`. Debian's client wrapper finds the cell
// by itself, so the SSH session needs no environment. @crystalmath/ssh-pool is loaded at run
// time so this package's other tests do not depend on its build; under CI a missing build
// fails the file instead of skipping it.

import type { Transport } from '@crystalmath/core';
import { runnerConformance } from '@crystalmath/core/testing';
import { testbedSshTransport } from '@crystalmath/testkit';
import { describe } from 'vitest';
import { JobRegistry, makeRunner, sge } from './sge-fixture.js';

const connect = await testbedSshTransport<Transport>(
  'runner-sge',
  (s) => import(/* @vite-ignore */ s),
);

describe.skipIf(!sge || !connect)('SgeRunner over SshTransport', () => {
  runnerConformance(
    'sge (ssh)',
    async () => {
      const { transport, close } = connect!();
      // Relative to cmtest's home: a directory cmtest owns and the execd can see.
      const root = `cm-sge-conf-${Date.now().toString(36)}`;
      const jobs = new JobRegistry();
      const runner = jobs.wrap(makeRunner(transport, root, { pollMinIntervalMs: 500 }));
      return {
        runner,
        cleanup: async () => {
          await jobs.deleteAll(transport);
          await transport.remove(root).catch(() => undefined);
          await close();
        },
      };
    },
    { jobTimeoutMs: 90_000, minWalltimeSeconds: 2, pollIntervalMs: 250 },
  );
});
