// The Runner conformance suite for LocalRunner: real processes on this machine.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runnerConformance } from '@crystalmath/core/testing';
import { LocalRunner } from '../index.js';

runnerConformance(
  'process (local)',
  async () => {
    const home = await mkdtemp(join(tmpdir(), 'cm-rp-conf-'));
    // A relative root, resolved against the transport's home.
    const runner = new LocalRunner({ home, root: 'jobs', killGraceMs: 1_000 });
    return { runner, cleanup: () => rm(home, { recursive: true, force: true }) };
  },
  { jobTimeoutMs: 20_000, pollIntervalMs: 50 },
);
