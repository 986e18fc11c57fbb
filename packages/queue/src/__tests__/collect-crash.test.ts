// SIGKILLs of a scheduler process while it collects: a child runs real processes (LocalRunner)
// that write several files each, and the parent kills it when a job is `collecting`, again and
// again (CM_QUEUE_COLLECT_KILLS: 20 on SQLite; CM_QUEUE_COLLECT_KILLS_PG: 6). A last child drains. Then every job has
// succeeded with each of its outputs recorded once, the stored bytes match the recorded
// sha256 and the files the job wrote, and no partial file is visible in the artifact store.

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { LocalRunner } from '@crystalmath/runner-process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openQueue } from '../open-queue.js';
import { assertBuilt, envInt, spawnFixture } from './child.js';
import { describeStores, type TestStore, tempDir } from './helpers.js';

const KILLS = envInt('CM_QUEUE_COLLECT_KILLS', 20);
/** PostgreSQL's apart (its children start slower): 20 + 6 kills over the test by default. */
const KILLS_PG = envInt('CM_QUEUE_COLLECT_KILLS_PG', 6);
/** The whole test's bound; it fails rather than kill fewer times. */
const BUDGET_MS = envInt('CM_QUEUE_COLLECT_CRASH_MS', 120_000);
const FILES = ['a.bin', 'b.bin', 'sub/c.bin'];
const BATCH = 6;

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

beforeAll(() => assertBuilt());

describeStores((makeStore, kind) => {
  const killsWanted = kind.name === 'postgres' ? KILLS_PG : KILLS;
  let store: TestStore;
  let dir: ReturnType<typeof tempDir>;
  beforeAll(async () => {
    store = await makeStore();
    dir = tempDir('cm-collect-crash-');
  });
  afterAll(async () => {
    await store.cleanup();
    dir.cleanup();
  });

  it(
    'every output is recorded once with a matching checksum and no partial file is visible',
    async () => {
      const deadline = Date.now() + BUDGET_MS;
      const artifactsDir = join(dir.dir, 'artifacts');
      const base = {
        store: store.spec,
        root: join(dir.dir, 'runs'),
        artifactsDir,
        maxConcurrent: 3,
        ownerId: 'collect-crash',
      };
      // Declares the target (never started): it enqueues and reads.
      const producer = await openQueue({
        store: store.factory(),
        targets: { here: { runner: new LocalRunner({ root: base.root }) } },
        artifacts: { dir: artifactsDir },
      });
      const spec = (i: number) => ({
        name: `writer-${i}`,
        // 3 files of 2 MB each: collections long enough to be killed in.
        script:
          'mkdir -p sub; for f in a.bin b.bin sub/c.bin; do head -c 2097152 /dev/urandom > "$f"; done',
        outputs: FILES.map((glob) => ({ glob, required: true })),
      });
      let n = 0;
      const more = async (): Promise<void> => {
        await producer.enqueueMany(
          Array.from({ length: BATCH }, () => ({ spec: spec(n++), target: 'here' })),
        );
      };
      await more();
      let kills = 0;
      const next = () => spawnFixture('collect-child.mjs', { ...base, waitForGo: true });
      let child = next();
      while (kills < killsWanted && Date.now() < deadline) {
        await child.waitFor('loaded');
        child.go();
        const following = next();
        await child.waitFor('ready');
        // Kill while a job is collecting and none is submitting (looked up just before the
        // kill): this test is about collection, and a kill mid-submit is the crash test's.
        let collecting = false;
        const until = Date.now() + 10_000;
        while (!collecting && Date.now() < until) {
          const by = (await producer.counts()).byState;
          collecting = by.collecting > 0 && by.submitting === 0;
          if (!collecting) await new Promise((r) => setTimeout(r, 2));
        }
        child.proc.kill('SIGKILL');
        await child.exit;
        if (collecting) kills++;
        child = following;
        const counts = await producer.counts();
        if (counts.byState.succeeded + counts.byState.failed > counts.total - 4) await more();
      }
      child.proc.kill('SIGKILL');
      await child.exit;
      expect(kills).toBe(killsWanted); // the time bound must not cut the kills short
      const last = spawnFixture('collect-child.mjs', {
        ...base,
        mode: 'drain',
        drainTimeoutMs: 120_000,
      });
      const end = await last.exit;
      expect(end, last.stderr()).toEqual({ code: 0, signal: null });

      const jobs = (await producer.list({ limit: 1000 })).jobs;
      expect(jobs.length).toBe(n);
      for (const job of jobs) {
        expect(job.state, `${job.id}: ${job.reason}`).toBe('succeeded');
        const arts = await producer.artifacts(job.id);
        expect(arts.map((a) => a.path)).toEqual(FILES); // each once, none missing
        const jobDir = String(job.handle!.data.jobDir);
        for (const a of arts) {
          const stored = readFileSync(join(artifactsDir, job.id, a.path));
          const made = readFileSync(join(jobDir, a.path));
          expect(a.size).toBe(made.length);
          expect(sha(stored)).toBe(a.sha256);
          expect(sha(made)).toBe(a.sha256);
        }
      }
      // Nothing but complete, recorded files in the store (staging is private and apart).
      const visible = walk(artifactsDir)
        .map((p) => relative(artifactsDir, p))
        .filter((p) => !p.startsWith('.staging/'));
      expect(visible.filter((p) => p.includes('.cm-part-'))).toEqual([]);
      expect(visible.length).toBe(jobs.length * FILES.length);
      await producer.close();
    },
    BUDGET_MS + 150_000,
  );
});
