// The Runner conformance suite against the testbed's real SLURM through LocalTransport.

import { rm } from 'node:fs/promises';
import { runnerConformance } from '@crystalmath/core/testing';
import { describe } from 'vitest';
import {
  JobRegistry,
  localSlurmTransport,
  makeRunner,
  slurm,
  uniqueRoot,
} from './slurm-fixture.js';

describe.skipIf(!slurm)('SlurmRunner over LocalTransport', () => {
  runnerConformance(
    'slurm (local)',
    async () => {
      const transport = localSlurmTransport();
      const root = uniqueRoot();
      const jobs = new JobRegistry();
      // 500 ms between scheduler calls while the suite polls every 200 ms: throttling must not
      // change any outcome.
      const runner = jobs.wrap(makeRunner(transport, root, { pollMinIntervalMs: 500 }));
      return {
        runner,
        cleanup: async () => {
          await jobs.cancelAll(transport);
          await rm(root, { recursive: true, force: true });
        },
      };
    },
    // SLURM's smallest time limit is one minute; a timed-out job ends about 80 s after start.
    // Two CPUs are shared by every engineer's tests, so a job may wait in the queue.
    { jobTimeoutMs: 180_000, minWalltimeSeconds: 60, pollIntervalMs: 250 },
  );
});
