// SIGKILL at random moments: a child process runs the scheduler (and keeps enqueueing jobs and
// workflows) on a real database file with a runner that journals every submission (append +
// fsync) and implements find(). After each kill a new child takes over. At the end every job
// must be terminal, and the journal must show each job submitted exactly once.
//
// CM_QUEUE_CRASH_TRIALS (default 200) kills in total, over CM_QUEUE_CRASH_LANES (default 4)
// independent databases run side by side, each lane pre-loading its next child while the
// current one runs. Every trial runs, however busy the machine: the time limits are hang
// guards only, never a budget that decides how many trials fit. CM_QUEUE_CRASH_MS (default
// 30 min) bounds the whole test, CM_QUEUE_CRASH_STEP_MS (default 120 s) each wait on one child
// (loaded, ready, enqueued, exit after SIGKILL); a test that trips either fails, naming it.
// At 2 loaded cores (load 15-30) a trial costs up to ~10 s per lane, 200 trials ~10 min.

import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
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
import { describeStores, NoopRunner, type TestStore, tempDir } from './helpers.js';

const TRIALS = envInt('CM_QUEUE_CRASH_TRIALS', 200);
// The 200-kill acceptance on both stores; CM_QUEUE_CRASH_TRIALS_PG sets PostgreSQL's apart.
const TRIALS_PG = envInt('CM_QUEUE_CRASH_TRIALS_PG', TRIALS);
const LANES = envInt('CM_QUEUE_CRASH_LANES', 4);
// Hang guards, not budgets: generous enough that a loaded machine never trips them.
const HANG_GUARD_MS = envInt('CM_QUEUE_CRASH_MS', 1_800_000);
const STEP_GUARD_MS = envInt('CM_QUEUE_CRASH_STEP_MS', 120_000);
const DRAIN_GUARD_MS = 300_000;
const TARGETS = { x: 2, y: 4 };
const DURATION_MS = 15;

beforeAll(() => assertBuilt());

/** Rejects, naming `what`, when `p` does not settle within STEP_GUARD_MS: a hung child. */
async function guarded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`hang guard: ${what} not within ${STEP_GUARD_MS} ms`)),
      STEP_GUARD_MS,
    );
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for `line` from `child`; a child that exits first is tolerated (it is killed anyway). */
const reached = (child: Child, line: string, what: string): Promise<void> =>
  guarded(
    child.waitFor(line).catch(() => undefined),
    what,
  );

describeStores((makeStore, kind) => {
  const trialsWanted = kind.name === 'postgres' ? TRIALS_PG : TRIALS;
  const stores: TestStore[] = [];
  afterAll(async () => {
    for (const s of stores) await s.cleanup();
  });

  it(
    'after SIGKILLs at random moments every job ends and the journal shows no job submitted twice',
    async () => {
      const deadline = Date.now() + HANG_GUARD_MS;
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
          let following: Child | undefined;
          try {
            while (trials < perLane && Date.now() < deadline) {
              await reached(child, 'loaded', `lane ${lane} trial ${trials}: "loaded"`);
              child.go();
              following = next();
              if (trials === 0) {
                // The lane's first child lives until its first write is committed, so the
                // "children enqueued" check below does not depend on how busy the machine is.
                await reached(child, 'enqueued', `lane ${lane} trial 0: "enqueued"`);
                await new Promise((r) => setTimeout(r, Math.random() * 250));
              } else if (Math.random() < 0.2) {
                // during start-up: opening, migrations, recovery
                await new Promise((r) => setTimeout(r, Math.random() * 150));
              } else {
                await reached(child, 'ready', `lane ${lane} trial ${trials}: "ready"`);
                await new Promise((r) => setTimeout(r, Math.random() * 250));
              }
              child.proc.kill('SIGKILL');
              await guarded(child.exit, `lane ${lane} trial ${trials}: exit after SIGKILL`);
              trials++;
              child = following;
              following = undefined;
            }
          } finally {
            // also on a tripped guard: no child outlives the test
            following?.proc.kill('SIGKILL');
            child.proc.kill('SIGKILL');
          }
          await child.exit;
          const last = spawnScheduler({
            ...base,
            mode: 'drain',
            drainTimeoutMs: DRAIN_GUARD_MS - 30_000,
          });
          const timer = setTimeout(() => last.proc.kill('SIGKILL'), DRAIN_GUARD_MS);
          const end = await last.exit;
          clearTimeout(timer);
          expect(end, last.stderr()).toEqual({ code: 0, signal: null });
          const entries = readJournal(journal) as JournalEntry[];
          dir.cleanup();
          return { store, trials, entries };
        }),
      );
      const trials = lanes.reduce((n, l) => n + l.trials, 0);
      // all trials ran: only a hang (HANG_GUARD_MS, never mere load) may cut them short
      expect(trials).toBeGreaterThanOrEqual(trialsWanted);
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
    HANG_GUARD_MS + STEP_GUARD_MS + DRAIN_GUARD_MS,
  );
});
