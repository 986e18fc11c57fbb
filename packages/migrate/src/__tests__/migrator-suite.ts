// One suite for every dialect: atomicity under injected faults, checksums, unknown and
// out-of-order migrations, baseline, abort, the lock timeout, and concurrent migrators.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isCrystalMathError } from '@crystalmath/core';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { type AnyKysely, codeMigrations, Migrator, openDatabase } from '../index.js';

export interface TestDatabase {
  /** A path or URL a child process can open. */
  readonly target: string;
  readonly dump: (db: AnyKysely) => Promise<string>;
  readonly cleanup: () => Promise<void>;
  /** Holds the database's migration lock from another connection until the returned function is called. */
  readonly holdLock: () => Promise<() => Promise<void>>;
}

const CHILD = fileURLToPath(new URL('./fixtures/migrate-child.mjs', import.meta.url));

export function runChild(
  target: string,
  mode: 'race' | 'crash',
): { done: Promise<string>; kill: () => void } {
  const child = spawn(process.execPath, [CHILD, target, mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const done = new Promise<string>((resolve) => child.on('close', () => resolve(out.trim())));
  return { done, kill: () => child.kill('SIGKILL') };
}

const five = (failAt: number): string =>
  [1, 2, 3, 4, 5]
    .map((k) =>
      k === failAt
        ? 'insert into no_such_table values (1)'
        : `create table t${k} (id integer primary key, v text)`,
    )
    .join(';\n');

export function migratorSuite(name: string, makeDb: () => Promise<TestDatabase>): void {
  describe(`Migrator on ${name}`, () => {
    const open: { db: AnyKysely; tdb: TestDatabase }[] = [];
    async function fresh(): Promise<{ db: AnyKysely; tdb: TestDatabase }> {
      const tdb = await makeDb();
      const db = await openDatabase(tdb.target);
      open.push({ db, tdb });
      return { db, tdb };
    }
    afterEach(async () => {
      for (const { db, tdb } of open.splice(0)) {
        await db.destroy();
        await tdb.cleanup();
      }
    });
    const history = async (db: AnyKysely): Promise<unknown[]> =>
      (await sql`select name, checksum from crystalmath_migrations order by name`.execute(db)).rows;

    it('applies migrations in order once, recording name, checksum and duration', async () => {
      const { db } = await fresh();
      const source = codeMigrations({
        '0001_jobs': {
          sql: "create table jobs (id integer primary key, name text not null); insert into jobs (id, name) values (1, 'a;b')",
        },
        '0002_idx': {
          up: async (trx) =>
            void (await trx.schema.createIndex('jobs_name').on('jobs').column('name').execute()),
        },
      });
      const m = new Migrator({ db, source });
      expect(await m.plan()).toEqual(['0001_jobs', '0002_idx']);
      const { results } = await m.migrate();
      expect(results.map((r) => [r.migrationName, r.status])).toEqual([
        ['0001_jobs', 'Success'],
        ['0002_idx', 'Success'],
      ]);
      expect((await sql<{ name: string }>`select name from jobs`.execute(db)).rows).toEqual([
        { name: 'a;b' },
      ]);
      const rows = (
        await sql<{
          checksum: string;
          duration_ms: number;
        }>`select * from crystalmath_migrations`.execute(db)
      ).rows;
      expect(
        rows.every((r) => /^[0-9a-f]{64}$/.test(r.checksum) && Number(r.duration_ms) >= 0),
      ).toBe(true);
      expect((await m.migrate()).results).toEqual([]);
      expect((await m.status()).map((s) => s.state)).toEqual(['applied', 'applied']);
    });

    it('leaves schema and history byte-identical when statement k of 5 fails, for every k', async () => {
      const { db, tdb } = await fresh();
      const base = { '0001_base': { sql: 'create table base (id integer primary key)' } };
      await new Migrator({ db, source: codeMigrations(base) }).migrate();
      for (let k = 1; k <= 5; k++) {
        const schemaBefore = await tdb.dump(db);
        const historyBefore = await history(db);
        const m = new Migrator({
          db,
          source: codeMigrations({ ...base, '0002_five': { sql: five(k) } }),
        });
        const err = await m.migrate().catch((e: unknown) => e);
        expect(isCrystalMathError(err, 'E_MIGRATION_FAILED')).toBe(true);
        expect((err as { results: { status: string }[] }).results.map((r) => r.status)).toEqual([
          'Error',
        ]);
        expect(await tdb.dump(db)).toBe(schemaBefore);
        expect(await history(db)).toEqual(historyBefore);
      }
      await new Migrator({
        db,
        source: codeMigrations({ ...base, '0002_five': { sql: five(0) } }),
      }).migrate();
      expect(await history(db)).toHaveLength(2);
    });

    it('refuses a changed migration (E_MIGRATION_CHECKSUM) and applies nothing', async () => {
      const { db } = await fresh();
      await new Migrator({
        db,
        source: codeMigrations({ '0001_a': { sql: 'create table a (id integer)' } }),
      }).migrate();
      const edited = codeMigrations({
        '0001_a': { sql: 'create table a (id integer, extra text)' },
        '0002_b': { sql: 'create table b (id integer)' },
      });
      await expect(new Migrator({ db, source: edited }).migrate()).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_MIGRATION_CHECKSUM'),
      );
      expect(await history(db)).toHaveLength(1);
      expect((await new Migrator({ db, source: edited }).status()).map((s) => s.state)).toEqual([
        'changed',
        'pending',
      ]);
    });

    it('refuses a database holding a migration the program does not know (E_MIGRATION_UNKNOWN)', async () => {
      const { db } = await fresh();
      await new Migrator({
        db,
        source: codeMigrations({
          '0001_a': { sql: 'create table a (id integer)' },
          '0002_new': { sql: 'create table n (id integer)' },
        }),
      }).migrate();
      const older = codeMigrations({ '0001_a': { sql: 'create table a (id integer)' } });
      await expect(new Migrator({ db, source: older }).migrate()).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_MIGRATION_UNKNOWN'),
      );
    });

    it('refuses a pending migration that sorts before an applied one (E_MIGRATION_ORDER)', async () => {
      const { db } = await fresh();
      await new Migrator({
        db,
        source: codeMigrations({ '0002_b': { sql: 'create table b (id integer)' } }),
      }).migrate();
      const src = codeMigrations({
        '0001_a': { sql: 'create table a (id integer)' },
        '0002_b': { sql: 'create table b (id integer)' },
      });
      await expect(new Migrator({ db, source: src }).migrate()).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_MIGRATION_ORDER'),
      );
    });

    it('baselines an existing database only when asked, then applies the rest', async () => {
      const { db } = await fresh();
      await sql`create table legacy (id integer)`.execute(db);
      const src = codeMigrations({
        '0001_legacy': { sql: 'create table legacy (id integer)' },
        '0002_more': { sql: 'create table more (id integer)' },
      });
      const m = new Migrator({ db, source: src });
      expect(await m.baseline('0001_legacy')).toEqual(['0001_legacy']);
      expect((await m.migrate()).results.map((r) => r.migrationName)).toEqual(['0002_more']);
      expect((await m.status()).map((s) => [s.name, s.baseline])).toEqual([
        ['0001_legacy', true],
        ['0002_more', false],
      ]);
      await expect(m.baseline('0002_more')).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_MIGRATION_ORDER'),
      );
    });

    it('stops between migrations when the AbortSignal fires', async () => {
      const { db } = await fresh();
      const ac = new AbortController();
      const src = codeMigrations({
        '0001_a': {
          up: async (trx) => {
            await sql`create table a (id integer)`.execute(trx);
            ac.abort();
          },
        },
        '0002_b': { sql: 'create table b (id integer)' },
      });
      const err = await new Migrator({ db, source: src })
        .migrate({ signal: ac.signal })
        .catch((e: unknown) => e);
      expect(isCrystalMathError(err, 'E_MIGRATION_FAILED')).toBe(true);
      expect((err as { results: { status: string }[] }).results.map((r) => r.status)).toEqual([
        'Success',
        'NotExecuted',
      ]);
      expect(await history(db)).toHaveLength(1);
    });

    it('gives E_MIGRATION_LOCK_TIMEOUT while another migrator holds the lock', async () => {
      const { db, tdb } = await fresh();
      const release = await tdb.holdLock();
      try {
        const m = new Migrator({
          db,
          source: codeMigrations({ '0001_a': { sql: 'create table a (id integer)' } }),
          lockTimeoutMs: 300,
        });
        const started = Date.now();
        await expect(m.migrate()).rejects.toSatisfy((e) =>
          isCrystalMathError(e, 'E_MIGRATION_LOCK_TIMEOUT'),
        );
        expect(Date.now() - started).toBeLessThan(5_000);
      } finally {
        await release();
      }
    });

    it('4 processes migrating at once, 20 rounds: every migration recorded exactly once, all succeed', async () => {
      const rounds = Number(process.env.CM_MIGRATE_RACE_ROUNDS ?? 20);
      for (let round = 0; round < rounds; round++) {
        const tdb = await makeDb();
        try {
          const outs = await Promise.all(
            Array.from({ length: 4 }, () => runChild(tdb.target, 'race').done),
          );
          expect(outs.every((o) => o.startsWith('ok'))).toBe(true);
          // Between them they applied each of the 3 migrations exactly once.
          expect(outs.reduce((n, o) => n + Number(o.split(' ')[1]), 0)).toBe(3);
          const db = await openDatabase(tdb.target);
          try {
            expect((await history(db)).map((r) => (r as { name: string }).name)).toEqual([
              '0001_a',
              '0002_b',
              '0003_c',
            ]);
            expect((await sql`select v, w from a`.execute(db)).rows).toEqual([
              { v: 'one', w: 'one' },
            ]);
          } finally {
            await db.destroy();
          }
        } finally {
          await tdb.cleanup();
        }
      }
    }, 120_000);
  });
}
