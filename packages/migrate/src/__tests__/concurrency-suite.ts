// The race and crash acceptance tests, for any dialect: real child processes running the built
// package, raced against each other or killed with SIGKILL at random points.

import { sql } from 'kysely';
import { expect, it } from 'vitest';
import { type AnyKysely, codeMigrations, Migrator } from '../index.js';
import { CRASH_ROWS, crash, race } from './fixtures/migrations.mjs';
import { assertBuilt, type Child, type MakeDb, spawnChild, startWorker } from './helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function tableNames(db: AnyKysely, dialect: 'sqlite' | 'postgres'): Promise<string[]> {
  const rows =
    dialect === 'sqlite'
      ? (
          await sql<{ name: string }>`select name from sqlite_schema where type = 'table'`.execute(
            db,
          )
        ).rows
      : (
          await sql<{
            name: string;
          }>`select table_name as name from information_schema.tables where table_schema = current_schema()`.execute(
            db,
          )
        ).rows;
  return rows.map((r) => r.name).sort();
}

/**
 * 4 processes (started once, each migrating a fresh database per round) are told to migrate the
 * same database at the same instant, `rounds` times.
 */
export function raceTest(label: string, makeDb: MakeDb, rounds = 20): void {
  it(`race (${label}): 4 processes migrate one database at once, ${rounds} times; every migration applied and recorded exactly once, every call succeeds`, async () => {
    assertBuilt();
    const workers = Array.from({ length: 4 }, () => startWorker());
    let split = 0;
    let waited = 0;
    let skipped = 0;
    try {
      for (let round = 0; round < rounds; round++) {
        const tdb = await makeDb();
        try {
          const startAt = Date.now() + 30;
          const outs = await Promise.all(workers.map((w) => w.run(tdb.target, 'race', startAt)));
          for (const lines of outs) expect(lines.at(-1), lines.join('\n')).toMatch(/^ok \d+$/);
          const applied = outs.map((lines) => Number(lines.at(-1)!.split(' ')[1]));
          // Between them, the four processes applied each of the 4 migrations exactly once.
          expect(applied.reduce((a, b) => a + b, 0)).toBe(4);
          if (applied.filter((n) => n > 0).length > 1) split++;
          if (outs.some((lines) => lines.includes('wait'))) waited++;
          if (outs.some((lines) => lines.some((l) => l.startsWith('skip ')))) skipped++;
          const db = tdb.open();
          const history = (
            await sql<{
              name: string;
            }>`select name from crystalmath_migrations order by name`.execute(db)
          ).rows.map((r) => r.name);
          expect(history).toEqual(['0001_a', '0002_b', '0003_c', '0004_d']);
          // 0003_c is not idempotent: applied twice, w would read 'oneone'.
          expect((await sql`select id, v, w from a`.execute(db)).rows).toEqual([
            { id: 1, v: 'one', w: 'one' },
          ]);
          expect((await sql`select id from d`.execute(db)).rows).toEqual([{ id: 4 }]);
          // Recorded with the checksums this program computes: nothing pending, nothing changed.
          expect(await new Migrator({ db, source: codeMigrations(race) }).plan()).toEqual([]);
        } finally {
          await tdb.cleanup();
        }
      }
    } finally {
      await Promise.all(workers.map((w) => w.close()));
    }
    console.log(
      `race (${label}): ${rounds} rounds; a process waited for the lock in ${waited}, work was split in ${split}, a process found a migration applied under it in ${skipped}`,
    );
    // The migrators really overlapped (otherwise this would prove nothing): one waited for the
    // lock, or found work done under it, or the work ended up split between processes.
    expect(waited + split + skipped).toBeGreaterThan(0);
  }, 120_000);
}

/**
 * A child migrating `0001_base` then the long `0002_long` is killed with SIGKILL at a random
 * point, `trials` times; the next child is loaded while the previous trial is checked.
 */
export function crashTest(label: string, makeDb: MakeDb, trials = 50): void {
  it(`crash (${label}): SIGKILL at random points of a long migration, ${trials} trials; database sound, at the old or the new version, a rerun completes`, async () => {
    assertBuilt();
    // Calibrate: from "go" to the long migration, and the long migration itself.
    const cal = await makeDb();
    let beforeLongMs: number;
    let longMs: number;
    try {
      const child = spawnChild('crash');
      await child.ready;
      const go = Date.now();
      child.go(cal.target);
      await child.waitFor('start 0002_long');
      beforeLongMs = Date.now() - go;
      const { out, code } = await child.done;
      expect(code, out).toBe(0);
      longMs = Number(/success 0002_long (\d+)/.exec(out)?.[1] ?? 200);
    } finally {
      await cal.cleanup();
    }
    const outcomes = { none: 0, base: 0, full: 0, killedInLong: 0 };
    const source = codeMigrations(crash);
    // Loading the package takes most of a child's life: keep a few loading ahead.
    const ahead: Child[] = [];
    let spawned = 0;
    const refill = (): void => {
      while (ahead.length < 3 && spawned < trials) {
        ahead.push(spawnChild('crash'));
        spawned++;
      }
    };
    refill();
    try {
      for (let i = 0; i < trials; i++) {
        const child = ahead.shift()!;
        await child.ready;
        refill();
        const tdb = await makeDb();
        try {
          let inLong = false;
          child.go(tdb.target);
          if (i % 5 === 0) {
            // Anywhere: taking the lock, creating the history table, 0001, 0002, the commits.
            await sleep(Math.random() * (beforeLongMs + longMs) * 1.3);
          } else if (i % 5 === 4) {
            // Just after the long migration committed: closing, exiting.
            await child.waitFor('success 0002_long');
            await sleep(Math.random() * 5);
          } else {
            // Inside the long migration or its commit (a third of these land after it).
            inLong = (await child.waitFor('start 0002_long')) !== '';
            await sleep(Math.random() * longMs * 1.5);
          }
          child.kill();
          const { out } = await child.done;
          // Children that finished say how long it took: keep the kill window fitted to the load.
          const took = /success 0002_long (\d+)/.exec(out);
          if (took) longMs = Math.max(5, (longMs + Number(took[1])) / 2);

          expect(await tdb.integrity()).toBe('ok');
          const db = tdb.open();
          const tables = await tableNames(db, tdb.dialect);
          const applied = tables.includes('crystalmath_migrations')
            ? (
                await sql<{
                  name: string;
                }>`select name from crystalmath_migrations order by name`.execute(db)
              ).rows.map((r) => r.name)
            : [];
          // All or nothing, migration by migration: recorded iff its effects are all there.
          const has = (t: string) => tables.includes(t);
          if (applied.includes('0002_long')) {
            expect(applied).toEqual(['0001_base', '0002_long']);
            expect(has('base') && has('big') && has('marker')).toBe(true);
            const n = (await sql<{ n: number }>`select count(*) as n from big`.execute(db))
              .rows[0]!;
            expect(Number(n.n)).toBe(CRASH_ROWS[tdb.dialect]);
            outcomes.full++;
          } else {
            expect(has('big') || has('marker')).toBe(false);
            if (applied.includes('0001_base')) {
              expect(applied).toEqual(['0001_base']);
              expect(has('base')).toBe(true);
              outcomes.base++;
            } else {
              expect(applied).toEqual([]);
              expect(has('base')).toBe(false);
              outcomes.none++;
            }
            if (inLong) outcomes.killedInLong++;
          }
          // A rerun completes.
          const rerun = new Migrator({ db, source, lockTimeoutMs: 30_000 });
          await rerun.migrate();
          expect(await rerun.plan()).toEqual([]);
          const n = (await sql<{ n: number }>`select count(*) as n from big`.execute(db)).rows[0]!;
          expect(Number(n.n)).toBe(CRASH_ROWS[tdb.dialect]);
        } finally {
          await tdb.cleanup();
        }
      }
    } finally {
      for (const c of ahead) c.kill();
    }
    console.log(
      `crash (${label}): go -> long migration ~${beforeLongMs} ms, long migration ~${Math.round(longMs)} ms; outcomes ${JSON.stringify(outcomes)}`,
    );
    expect(outcomes.none + outcomes.base + outcomes.full).toBe(trials);
    // The kills really landed inside the long migration, and some after it committed.
    expect(outcomes.killedInLong).toBeGreaterThan(0);
    expect(outcomes.full).toBeGreaterThan(0);
  }, 180_000);
}
