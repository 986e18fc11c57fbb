// The Runner conformance suite against the testbed's real Grid Engine through LocalTransport,
// submitting as the testbed's unprivileged user (see sge-fixture.ts).

import { rm } from 'node:fs/promises';
import { runnerConformance } from '@crystalmath/core/testing';
import { describe } from 'vitest';
import { JobRegistry, localSgeTransport, makeRunner, sge, uniqueRoot } from './sge-fixture.js';

describe.skipIf(!sge)('SgeRunner over LocalTransport', () => {
  runnerConformance(
    'sge (local)',
    async () => {
      const transport = localSgeTransport();
      const root = uniqueRoot();
      const jobs = new JobRegistry();
      // 500 ms between scheduler calls while the suite polls every 250 ms: throttling must not
      // change any outcome.
      const runner = jobs.wrap(makeRunner(transport, root, { pollMinIntervalMs: 500 }));
      return {
        runner,
        cleanup: async () => {
          await jobs.deleteAll(transport);
          await rm(root, { recursive: true, force: true });
        },
      };
    },
    // h_rt is enforced by qmaster within a few seconds; the 2 slots are shared, so a job may wait.
    { jobTimeoutMs: 90_000, minWalltimeSeconds: 2, pollIntervalMs: 250 },
  );
});
