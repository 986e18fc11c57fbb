// The SQLite store under faults of its file: another process's exclusive lock (the event loop
// keeps turning, callers wait on timers), and files that are not a healthy queue (typed errors
// naming the path, nothing written).

import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { isCrystalMathError } from '@crystalmath/core';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { openQueue } from '../open-queue.js';
import { sqliteStore } from '../store/sqlite/sqlite-store.js';
import type { Queue } from '../types.js';
import { NoopRunner, spec, tempDir } from './helpers.js';

const LOCK_MS = 15_000;
const DRAIN_TIMEOUT_MS = 60_000;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function scratch(): string {
  const t = tempDir('cm-sqlite-faults-');
  cleanups.push(t.cleanup);
  return t.dir;
}

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

async function expectRefused(path: string, pattern: RegExp): Promise<void> {
  const error = await openQueue({ store: sqliteStore({ path }), targets: {} }).then(
    (q: Queue) => {
      cleanups.push(() => q.close());
      return null;
    },
    (e: unknown) => e,
  );
  expect(isCrystalMathError(error, 'E_STORE'), String(error)).toBe(true);
  expect((error as Error).message).toContain(path);
  expect((error as Error).message).toMatch(pattern);
}

describe('SQLite store faults', () => {
  it(
    "another process's exclusive lock for 15 s never blocks the event loop; every job ends afterwards",
    async () => {
      const dir = scratch();
      const path = join(dir, 'q.db');
      const runner = new NoopRunner();
      const queue = await openQueue({
        store: sqliteStore({ path }),
        targets: { t: { runner, maxConcurrent: 4 } },
        scheduler: { tickMs: 20, pollIntervalMs: 10 },
      });
      cleanups.push(() => queue.close());
      for (let i = 0; i < 40; i++) await queue.enqueue(spec(`before-${i}`), { target: 't' });
      await queue.start();

      const locker = fork(join(import.meta.dirname, 'fixtures', 'sqlite-locker.mjs'), [
        path,
        String(LOCK_MS),
      ]);
      cleanups.push(() => locker.kill());
      const message = (want: string) =>
        new Promise<void>((resolve, reject) => {
          locker.on('message', (m) => m === want && resolve());
          locker.on('exit', (code) => code !== 0 && reject(new Error(`locker exited ${code}`)));
        });
      const released = message('released');
      await message('locked');

      // The loop's delay: gaps between 10 ms ticks while the lock is held.
      const gaps: number[] = [];
      let last = performance.now();
      const ticker = setInterval(() => {
        const now = performance.now();
        gaps.push(now - last);
        last = now;
      }, 10);
      let releasedAt = 0;
      void released.then(() => {
        releasedAt = performance.now();
      });
      // Producers during the lock: their promises settle once it is free.
      const during = Array.from({ length: 5 }, (_, i) =>
        queue.enqueue(spec(`during-${i}`), { target: 't' }).then((job) => ({
          job,
          at: performance.now(),
        })),
      );
      await released;
      clearInterval(ticker);
      const settled = await Promise.all(during);
      await queue.drain({ timeoutMs: DRAIN_TIMEOUT_MS });

      const sorted = [...gaps].sort((a, b) => a - b);
      const p99 = sorted[Math.floor(sorted.length * 0.99)] ?? 0;
      const max = sorted.at(-1) ?? 0;
      console.log(
        `[sqlite lock] ${gaps.length} ticks under a ${LOCK_MS} ms foreign lock: p99 gap ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms`,
      );
      expect(gaps.length).toBeGreaterThan(LOCK_MS / 50);
      expect(p99).toBeLessThan(50);
      expect(max).toBeLessThan(500);
      for (const s of settled) expect(s.at).toBeGreaterThanOrEqual(releasedAt - 1);
      const counts = await queue.counts();
      expect(counts.total).toBe(45);
      expect(counts.byState.succeeded).toBe(45);
      expect(new Set(runner.calls).size).toBe(runner.calls.length);
    },
    LOCK_MS + DRAIN_TIMEOUT_MS + 30_000,
  );

  it('a 0-byte file is refused naming the path, and stays empty', async () => {
    const path = join(scratch(), 'empty.db');
    writeFileSync(path, '');
    await expectRefused(path, /empty \(0 bytes\)/);
    expect(readFileSync(path).length).toBe(0);
  });

  it('a file that is not SQLite is refused naming the path, unchanged', async () => {
    const path = join(scratch(), 'notes.txt');
    writeFileSync(path, 'shopping list\n'.repeat(200));
    const before = sha(path);
    await expectRefused(path, /not a SQLite database/);
    expect(sha(path)).toBe(before);
  });

  it('a SQLite database of something else is refused naming the path, unchanged', async () => {
    const path = join(scratch(), 'other.db');
    const db = new Database(path);
    db.exec('create table notes (x text); insert into notes values (1)');
    db.close();
    const before = sha(path);
    await expectRefused(path, /not a CrystalMath queue \(it holds other tables: notes\)/);
    expect(sha(path)).toBe(before);
  });

  it('a queue file another process is still making (only the migration history) opens as a queue', async () => {
    // Two schedulers started together on a new path: the first one's migrator commits its
    // history table before the queue's first migration, and the second one opens the file then.
    const dir = scratch();
    const made = await openQueue({
      store: sqliteStore({ path: join(dir, 'made.db') }),
      targets: { t: { runner: new NoopRunner() } },
    });
    await made.close();
    const source = new Database(join(dir, 'made.db'), { readonly: true });
    const ddl = source
      .prepare(
        "select sql from sqlite_master where type = 'table' and name = 'crystalmath_migrations'",
      )
      .pluck()
      .get() as string;
    source.close();
    const path = join(dir, 'half.db');
    const half = new Database(path);
    half.exec(ddl);
    half.close();
    const queue = await openQueue({
      store: sqliteStore({ path }),
      targets: { t: { runner: new NoopRunner() } },
    });
    cleanups.push(() => queue.close());
    const job = await queue.enqueue(spec('after', ['true']), { target: 't' });
    expect((await queue.get(job.id))?.state).toBe('ready');
  });

  it('a damaged queue file is refused at open naming the path, unchanged', async () => {
    const path = join(scratch(), 'damaged.db');
    const queue = await openQueue({
      store: sqliteStore({ path }),
      targets: { t: { runner: new NoopRunner() } },
    });
    await queue.enqueueMany(
      Array.from({ length: 2_000 }, (_, i) => ({
        spec: spec(`j${i}`, ['echo', 'x'.repeat(200)]),
        target: 't',
      })),
    );
    await queue.close();
    const bytes = readFileSync(path);
    // Scribble over pages in the middle of the file (b-tree pages of the jobs table).
    const page = 4096;
    for (let p = 3; p < bytes.length / page - 1; p += 7)
      bytes.fill(0xa5, p * page + 8, p * page + 400);
    writeFileSync(path, bytes);
    const before = sha(path);
    await expectRefused(path, /damaged/);
    expect(sha(path)).toBe(before);
  });
});

describe('SQLite file damaged while the queue has it open', () => {
  it('reads and writes give E_STORE naming the path, writes are refused from then on, the scheduler backs off', async () => {
    const path = join(scratch(), 'live.db');
    const make = await openQueue({
      store: sqliteStore({ path }),
      targets: { t: { runner: new NoopRunner() } },
    });
    // About 24 MiB: more than SQLite's page cache (16 MiB here), so the queue reads the jobs'
    // pages from the file, as it does for any queue larger than its cache. (Pages a connection
    // holds in its cache are checked when it next reads them from the file, or at the next open.)
    for (let batch = 0; batch < 4; batch++)
      await make.enqueueMany(
        Array.from({ length: 1_000 }, (_, i) => ({
          spec: spec(`j${batch}-${i}`, ['echo', 'x'.repeat(6_000)]),
          target: 't',
        })),
      );
    await make.close(); // checkpointed: the jobs are in the main file
    const runner = new NoopRunner({ hold: true });
    const queue = await openQueue({
      store: sqliteStore({ path }),
      targets: { t: { runner, maxConcurrent: 0 } },
      scheduler: { tickMs: 20 },
    });
    cleanups.push(() => queue.close());
    const down = new Promise<unknown>((r) => queue.on('store:down', r));
    await queue.start();

    // Another process scribbles over pages through its own file descriptor.
    const fd = openSync(path, 'r+');
    const pages = statSync(path).size / 4096;
    for (let p = 10; p < pages - 1; p += 5)
      writeSync(fd, Buffer.alloc(392, 0xa5), 0, 392, p * 4096);
    closeSync(fd);

    const typed = async (p: Promise<unknown>, pattern: RegExp): Promise<void> => {
      const error = await p.then(
        () => null,
        (e: unknown) => e,
      );
      expect(isCrystalMathError(error, 'E_STORE'), String(error)).toBe(true);
      expect((error as Error).message).toContain(path);
      expect((error as Error).message).toMatch(pattern);
    };
    await typed(queue.counts(), /damaged.*SQLITE_CORRUPT/);
    // From now on every write is refused, before it touches the file.
    const wal = `${path}-wal`;
    const files = (): string => sha(path) + (existsSync(wal) ? sha(wal) : '');
    const before = files();
    await typed(
      queue.enqueue(spec('after'), { target: 't' }),
      /writes refused, the file is damaged/,
    );
    await typed(queue.pause(), /writes refused/);
    expect(files()).toBe(before);
    // The scheduler's rounds get the same E_STORE: it backs off (store:down), the process lives.
    await down;
    expect(queue.health().store.state).toBe('down');
    expect(queue.health().store.error).toContain(path);
    expect(runner.calls).toEqual([]);
  }, 120_000);
});
