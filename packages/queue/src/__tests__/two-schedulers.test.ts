// Two scheduler processes on the same database for CM_QUEUE_TWO_PROCESS_MS (default 60 s, the
// acceptance figure), both enqueueing jobs and workflows: the journal shows no job
// submitted twice and no target above its limit.

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openQueue } from '../open-queue.js';
import {
  assertBuilt,
  type Child,
  duplicates,
  envInt,
  type JournalEntry,
  jobIdOfKey,
  maxConcurrency,
  spawnScheduler,
} from './child.js';
// @ts-expect-error: plain JS fixture shared with the child processes
import { readJournal } from './fixtures/journal-runner.mjs';
import { describeStores, tempDir } from './helpers.js';

const RUN_MS = envInt('CM_QUEUE_TWO_PROCESS_MS', 60_000);
const TARGETS = { x: 3, y: 5 };
const DURATION_MS = 25;

beforeAll(() => assertBuilt());

// Both stores at once: each run is a minute of wall time spent mostly waiting on its children.
describe.concurrent('two scheduler processes', () => {
  describeStores((makeStore) => {
    const dir = tempDir('cm-two-');
    afterAll(() => dir.cleanup());

    it(
      'two schedulers on one database never submit a job twice nor exceed a target limit',
      async () => {
        const store = await makeStore();
        const spawned: Child[] = [];
        try {
          const journal = join(dir.dir, `journal-${Date.now()}.log`);
          const base = {
            store: store.spec,
            journal,
            targets: TARGETS,
            leaseMs: 30_000,
            durationMs: DURATION_MS,
          };
          const children = ['one', 'two'].map((name) =>
            spawnScheduler({
              ...base,
              ownerId: `two-${name}`,
              mode: 'run',
              produce: true,
              produceEveryMs: 15,
              runForMs: RUN_MS,
            }),
          );
          spawned.push(...children);
          const ends = await Promise.all(children.map((c) => c.exit));
          for (const [i, end] of ends.entries()) {
            expect(end, children[i]!.stderr()).toEqual({ code: 0, signal: null });
          }
          const last = spawnScheduler({ ...base, ownerId: 'two-last', mode: 'drain' });
          spawned.push(last);
          expect(await last.exit, last.stderr()).toEqual({ code: 0, signal: null });

          const entries = readJournal(journal) as JournalEntry[];
          // both processes really submitted
          expect(new Set(entries.map((e) => e.pid)).size).toBeGreaterThanOrEqual(2);
          expect(duplicates(entries.map((e) => jobIdOfKey(e.key)))).toEqual([]);
          const seen = maxConcurrency(entries, DURATION_MS);
          expect(seen.x).toBeLessThanOrEqual(TARGETS.x);
          expect(seen.y).toBeLessThanOrEqual(TARGETS.y);
          const queue = await openQueue({ store: store.factory(), targets: {} });
          const counts = await queue.counts();
          await queue.close();
          expect(counts.byState.succeeded).toBe(counts.total);
          expect(entries.length).toBe(counts.total);
        } finally {
          for (const c of spawned) c.proc.kill('SIGKILL');
          await store.cleanup();
        }
      },
      RUN_MS + 240_000,
    );
  });
});
