// SIGKILL at random moments: a child process runs the scheduler (and keeps enqueueing jobs and
// workflows) on a real database file with a runner that journals every submission (append +
// fsync) and implements find(). After each kill a new child takes over. At the end every job
// must be terminal, and the journal must show each job submitted exactly once.
//
// CM_QUEUE_CRASH_TRIALS (default 200) kills in total, over CM_QUEUE_CRASH_LANES (default 4)
// independent databases run side by side, each lane pre-loading its next child while the
// current one runs; CM_QUEUE_CRASH_MS bounds the whole test (default 300 s; it fails rather
// than run fewer trials).

import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openQueue } from '../open-queue.js';
import {
  assertBuilt,
  duplicates,
  envInt,
  type JournalEntry,
  jobIdOfKey,
  maxConcurrency,
  spawnScheduler,
} from './child.js';
// @ts-expect-error: plain JS fixture shared with the child processes
import { readJournal } from './fixtures/journal-runner.mjs';
import { describeStores, NoopRunner, type TestStore, tempDir } from './helpers.js';

const TRIALS = envInt('CM_QUEUE_CRASH_TRIALS', 200);
// The 200-kill acceptance on both stores; CM_QUEUE_CRASH_TRIALS_PG sets PostgreSQL's apart.
const TRIALS_PG = envInt('CM_QUEUE_CRASH_TRIALS_PG', TRIALS);
const LANES = envInt('CM_QUEUE_CRASH_LANES', 4);
const BUDGET_MS = envInt('CM_QUEUE_CRASH_MS', 300_000);
const TARGETS = { x: 2, y: 4 };
const DURATION_MS = 15;

beforeAll(() => assertBuilt());

describeStores((makeStore, kind) => {
  const trialsWanted = kind.name === 'postgres' ? TRIALS_PG : TRIALS;
  const stores: TestStore[] = [];
  afterAll(async () => {
    for (const s of stores) await s.cleanup();
  });

  it(
    'after SIGKILLs at random moments every job ends and the journal shows no job submitted twice',
    async () => {
      const deadline = Date.now() + BUDGET_MS;
      const lanes = await Promise.all(
        Array.from({ length: LANES }, async (_, lane) => {
          const store = await makeStore();
          stores.push(store);
          const dir = tempDir('cm-crash-');
          const journal = join(dir.dir, 'journal.log');
          // A backlog, so kills also land in claims, submits and polls of existing jobs.
          const seed = await openQueue({
            store: store.factory(),
            targets: { x: { runner: new NoopRunner() }, y: { runner: new NoopRunner() } },
          });
          await seed.enqueueMany(
            Array.from({ length: 60 }, (_, i) => ({
              spec: { name: `${i % 2 ? 'x' : 'y'}.seed.${i}`, argv: ['true'] },
              target: i % 2 ? 'x' : 'y',
            })),
          );
          await seed.close();
          const base = {
            store: store.spec,
            journal,
            targets: TARGETS,
            ownerId: `crash-lane-${lane}`,
            leaseMs: 60_000, // recovery at start (same owner), never by expiry
            durationMs: DURATION_MS,
          };
          let trials = 0;
          const perLane = Math.ceil(trialsWanted / LANES);
          // The next child loads the package while the current one runs: start-up, not the
          // scheduler, is what a trial mostly costs.
          const next = () =>
            spawnScheduler({
              ...base,
              mode: 'run',
              produce: true,
              produceEveryMs: 3,
              waitForGo: true,
            });
          let child = next();
          while (trials < perLane && Date.now() < deadline) {
            await child.waitFor('loaded').catch(() => undefined);
            child.go();
            const following = next();
            if (Math.random() < 0.2) {
              // during start-up: opening, migrations, recovery
              await new Promise((r) => setTimeout(r, Math.random() * 150));
            } else {
              await child.waitFor('ready').catch(() => undefined);
              await new Promise((r) => setTimeout(r, Math.random() * 250));
            }
            child.proc.kill('SIGKILL');
            await child.exit;
            trials++;
            child = following;
          }
          child.proc.kill('SIGKILL');
          await child.exit;
          const last = spawnScheduler({ ...base, mode: 'drain', drainTimeoutMs: 120_000 });
          const timer = setTimeout(() => last.proc.kill('SIGKILL'), 150_000);
          const end = await last.exit;
          clearTimeout(timer);
          expect(end, last.stderr()).toEqual({ code: 0, signal: null });
          const entries = readJournal(journal) as JournalEntry[];
          dir.cleanup();
          return { store, trials, entries };
        }),
      );
      const trials = lanes.reduce((n, l) => n + l.trials, 0);
      expect(trials).toBeGreaterThanOrEqual(trialsWanted); // the time bound must not cut the trials short
      let total = 0;
      for (const { store, entries } of lanes) {
        expect(duplicates(entries.map((e) => e.key))).toEqual([]);
        expect(duplicates(entries.map((e) => jobIdOfKey(e.key)))).toEqual([]);
        const limits = maxConcurrency(entries, DURATION_MS);
        expect(limits.x ?? 0).toBeLessThanOrEqual(TARGETS.x);
        expect(limits.y ?? 0).toBeLessThanOrEqual(TARGETS.y);
        const queue = await openQueue({ store: store.factory(), targets: {} });
        const counts = await queue.counts();
        await queue.close();
        total += counts.total;
        // every job ended, successfully (the journal runner never fails), each submitted once
        expect(counts.byState.succeeded).toBe(counts.total);
        expect(entries.length).toBe(counts.total);
      }
      expect(total).toBeGreaterThan(60 * LANES); // the children did enqueue before dying
    },
    BUDGET_MS + 180_000,
  );
});
