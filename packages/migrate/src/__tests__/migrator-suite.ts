// One suite for every dialect: atomicity under injected faults, refusals (checksum, unknown,
// order), statements that would escape the transaction, baseline, abort, events, the lock
// timeout, and concurrent migrators in one process. Every database is a kysely instance built
// the way the queue builds it (better-sqlite3 / pg Pool).

import { isCrystalMathError } from '@crystalmath/core';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AnyKysely,
  codeMigrations,
  type MigrationEvent,
  type MigrationSource,
  Migrator,
  type NamedMigration,
} from '../index.js';
import type { MakeDb, TestDatabase } from './helpers.js';

const statuses = (e: unknown): string[] =>
  ((e as { results?: { status: string }[] }).results ?? []).map((r) => r.status);

/** Five statements; statement `failAt` (1..5) fails, 0 = none fails. */
const fiveSql = (failAt: number): string =>
  [1, 2, 3, 4, 5]
    .map((k) =>
      k === failAt
        ? 'insert into no_such_table values (1)'
        : k % 2
          ? `create table t${k} (id integer primary key, v text)`
          : `create index base_i${k} on base (id)`,
    )
    .join(';\n');

export function migratorSuite(name: string, makeDb: MakeDb): void {
  describe(`Migrator on ${name}`, () => {
    const cleanups: TestDatabase[] = [];
    async function fresh(): Promise<{ db: AnyKysely; tdb: TestDatabase }> {
      const tdb = await makeDb();
      cleanups.push(tdb);
      return { db: tdb.open(), tdb };
    }
    afterEach(async () => {
      for (const tdb of cleanups.splice(0)) await tdb.cleanup();
    });
    const history = async (db: AnyKysely): Promise<unknown[]> =>
      (await sql`select * from crystalmath_migrations order by name`.execute(db)).rows;
    const tables = async (db: AnyKysely, tdb: TestDatabase): Promise<string[]> =>
      tdb.dialect === 'sqlite'
        ? (
            await sql<{
              name: string;
            }>`select name from sqlite_schema where type = 'table' order by name`.execute(db)
          ).rows.map((r) => r.name)
        : (
            await sql<{
              name: string;
            }>`select table_name as name from information_schema.tables where table_schema = current_schema() order by table_name`.execute(
              db,
            )
          ).rows.map((r) => r.name);

    it('applies migrations in order once, recording name, checksum, applied_at and duration', async () => {
      const { db, tdb } = await fresh();
      const source = codeMigrations({
        '0001_jobs': {
          sql: "create table jobs (id integer primary key, name text not null); insert into jobs (id, name) values (1, 'a;b')",
        },
        '0002_idx': {
          up: async (trx) => {
            await trx.schema.createIndex('jobs_name').on('jobs').column('name').execute();
          },
        },
      });
      const m = new Migrator({ db, source });
      expect(m.dialect).toBe(tdb.dialect);
      expect(await m.plan()).toEqual(['0001_jobs', '0002_idx']);
      expect((await m.status()).map((s) => s.state)).toEqual(['pending', 'pending']);
      const { results } = await m.migrate();
      expect(results.map((r) => [r.migrationName, r.status])).toEqual([
        ['0001_jobs', 'Success'],
        ['0002_idx', 'Success'],
      ]);
      expect((await sql<{ name: string }>`select name from jobs`.execute(db)).rows).toEqual([
        { name: 'a;b' },
      ]);
      const rows = (await history(db)) as {
        name: string;
        checksum: string;
        applied_at: string;
        duration_ms: number;
        baseline: number;
      }[];
      const expected = await source.getMigrations();
      expect(rows.map((r) => [r.name, r.checksum])).toEqual(
        expected.map((m) => [m.name, m.checksum]),
      );
      for (const r of rows) {
        expect(r.checksum).toMatch(/^[0-9a-f]{64}$/);
        expect(Number.isNaN(Date.parse(r.applied_at))).toBe(false);
        expect(Number(r.duration_ms)).toBeGreaterThanOrEqual(0);
        expect(Number(r.baseline)).toBe(0);
      }
      expect((await m.migrate()).results).toEqual([]);
      expect(await m.plan()).toEqual([]);
      const status = await m.status();
      expect(status.map((s) => s.state)).toEqual(['applied', 'applied']);
      expect(status.every((s) => s.appliedAt !== null && s.durationMs !== null)).toBe(true);
    });

    it('fault injection: statement k of 5 fails, k = 1..5; schema and history byte-identical after each', async () => {
      const { db, tdb } = await fresh();
      const base = { '0001_base': { sql: 'create table base (id integer primary key)' } };
      await new Migrator({ db, source: codeMigrations(base) }).migrate();
      const dumpBefore = await tdb.dump(db);
      const historyBefore = JSON.stringify(await history(db));
      for (let k = 1; k <= 5; k++) {
        // The same five statements as SQL text (split, run one by one) and as code.
        const asCode = {
          up: async (trx: AnyKysely) => {
            for (const stmt of fiveSql(k).split(';\n')) await sql.raw(stmt).execute(trx);
          },
        };
        for (const five of [{ sql: fiveSql(k) }, asCode]) {
          const m = new Migrator({ db, source: codeMigrations({ ...base, '0002_five': five }) });
          const err = await m.migrate().catch((e: unknown) => e);
          expect(isCrystalMathError(err, 'E_MIGRATION_FAILED')).toBe(true);
          expect(statuses(err)).toEqual(['Error']);
          expect((err as Error).message).toContain('0002_five');
          expect(await tdb.dump(db)).toBe(dumpBefore);
          expect(JSON.stringify(await history(db))).toBe(historyBefore);
          expect(await m.plan()).toEqual(['0002_five']);
        }
      }
      const done = await new Migrator({
        db,
        source: codeMigrations({ ...base, '0002_five': { sql: fiveSql(0) } }),
      }).migrate();
      expect(done.results.map((r) => r.status)).toEqual(['Success']);
      expect(await history(db)).toHaveLength(2);
      expect(await tdb.dump(db)).not.toBe(dumpBefore);
    });

    it('a failure in the middle of a run keeps the earlier migrations and reports the rest NotExecuted', async () => {
      const { db } = await fresh();
      const err = await new Migrator({
        db,
        source: codeMigrations({
          '0001_a': { sql: 'create table a (id integer)' },
          '0002_bad': { sql: 'create table b (id integer); select * from nope' },
          '0003_c': { sql: 'create table c (id integer)' },
        }),
      })
        .migrate()
        .catch((e: unknown) => e);
      expect(isCrystalMathError(err, 'E_MIGRATION_FAILED')).toBe(true);
      expect(statuses(err)).toEqual(['Success', 'Error', 'NotExecuted']);
      expect((err as Error).cause).toBeDefined();
      expect(((await history(db)) as { name: string }[]).map((r) => r.name)).toEqual(['0001_a']);
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
      const m = new Migrator({ db, source: edited });
      await expect(m.migrate()).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_MIGRATION_CHECKSUM'),
      );
      await expect(m.plan()).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_MIGRATION_CHECKSUM'),
      );
      expect(await history(db)).toHaveLength(1);
      expect((await m.status()).map((s) => s.state)).toEqual(['changed', 'pending']);
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
      const older = new Migrator({
        db,
        source: codeMigrations({ '0001_a': { sql: 'create table a (id integer)' } }),
      });
      await expect(older.migrate()).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_MIGRATION_UNKNOWN'),
      );
      expect((await older.status()).map((s) => [s.name, s.state])).toEqual([
        ['0001_a', 'applied'],
        ['0002_new', 'unknown'],
      ]);
    });

    it('refuses out-of-order names (E_MIGRATION_ORDER) and duplicates (E_MIGRATION_SOURCE)', async () => {
      const { db } = await fresh();
      await new Migrator({
        db,
        source: codeMigrations({ '0002_b': { sql: 'create table b (id integer)' } }),
      }).migrate();
      const late = codeMigrations({
        '0001_a': { sql: 'create table a (id integer)' },
        '0002_b': { sql: 'create table b (id integer)' },
      });
      await expect(new Migrator({ db, source: late }).migrate()).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_MIGRATION_ORDER'),
      );
      const list = async (names: string[]): Promise<NamedMigration[]> =>
        names.map((n) => ({ name: n, checksum: n, up: async () => undefined }));
      const custom = (names: string[]): MigrationSource => ({ getMigrations: () => list(names) });
      await expect(
        new Migrator({ db, source: custom(['0003_c', '0002_b']) }).migrate(),
      ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_MIGRATION_ORDER'));
      await expect(
        new Migrator({ db, source: custom(['0003_c', '0003_c']) }).migrate(),
      ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_MIGRATION_SOURCE'));
      expect(await history(db)).toHaveLength(1);
    });

    it('checks each dialect against the text that runs on it ({ sqlite, postgres })', async () => {
      const { db, tdb } = await fresh();
      const v1 = {
        '0001_x': {
          sqlite: 'create table x (id integer primary key)',
          postgres: 'create table x (id serial primary key)',
        },
      };
      await new Migrator({ db, source: codeMigrations(v1) }).migrate();
      const other = tdb.dialect === 'sqlite' ? 'postgres' : 'sqlite';
      const mine = tdb.dialect;
      const otherFixed = { '0001_x': { ...v1['0001_x'], [other]: `${v1['0001_x'][other]} ` } };
      expect(await new Migrator({ db, source: codeMigrations(otherFixed) }).plan()).toEqual([]);
      const mineChanged = { '0001_x': { ...v1['0001_x'], [mine]: `${v1['0001_x'][mine]} ` } };
      await expect(
        new Migrator({ db, source: codeMigrations(mineChanged) }).plan(),
      ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_MIGRATION_CHECKSUM'));
    });

    it('code migrations: checksum of up.toString(), or of checksumText when given', async () => {
      const { db } = await fresh();
      const up = async (trx: AnyKysely) => {
        await sql`create table pinned (id integer)`.execute(trx);
      };
      await new Migrator({
        db,
        source: codeMigrations({ '0001_pinned': { up, checksumText: 'pinned v1' } }),
      }).migrate();
      // A rebuilt function with other text but the same pin is the same migration.
      const rebuilt = async (_trx: AnyKysely) => undefined;
      expect(
        await new Migrator({
          db,
          source: codeMigrations({ '0001_pinned': { up: rebuilt, checksumText: 'pinned v1' } }),
        }).plan(),
      ).toEqual([]);
      await expect(
        new Migrator({ db, source: codeMigrations({ '0001_pinned': { up: rebuilt } }) }).plan(),
      ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_MIGRATION_CHECKSUM'));
    });

    it('refuses statements that would end or escape the migration transaction, before they run', async () => {
      const { db, tdb } = await fresh();
      await new Migrator({
        db,
        source: codeMigrations({ '0001_a': { sql: 'create table a (id integer)' } }),
      }).migrate();
      const before = await tdb.dump(db);
      const attempts: Record<string, Parameters<typeof codeMigrations>[0][string]> = {
        commitInText: {
          sql: 'create table early (id integer);\ncommit;\ncreate table late (id integer)',
        },
        beginInText: { sql: 'begin;\ncreate table early (id integer);\nend' },
        commitInCode: {
          up: async (trx) => {
            await sql`create table early (id integer)`.execute(trx);
            await sql`-- done\nCOMMIT`.execute(trx);
          },
        },
        nestedTransaction: {
          up: async (trx) => {
            await sql`create table early (id integer)`.execute(trx);
            await trx.transaction().execute(async (t) => {
              await sql`create table late (id integer)`.execute(t);
            });
          },
        },
        otherConnection: {
          up: async (trx) => {
            await trx.connection().execute(async () => undefined);
          },
        },
        executeQuery: {
          up: async (trx) => {
            await sql`create table early (id integer)`.execute(trx);
            await trx.executeQuery({
              sql: 'rollback',
              parameters: [],
              query: { kind: 'RawNode', sqlFragments: ['rollback'], parameters: [] },
              queryId: { queryId: 'x' },
            } as never);
          },
        },
      };
      for (const [label, migration] of Object.entries(attempts)) {
        const err = await new Migrator({
          db,
          source: codeMigrations({
            '0001_a': { sql: 'create table a (id integer)' },
            '0002_escape': migration,
          }),
        })
          .migrate()
          .catch((e: unknown) => e);
        expect(isCrystalMathError(err, 'E_MIGRATION_SOURCE'), label).toBe(true);
        expect(statuses(err), label).toEqual(['Error']);
        expect(await tdb.dump(db), label).toBe(before);
        expect(await tables(db, tdb), label).not.toContain('early');
        expect(await history(db), label).toHaveLength(1);
      }
      // SAVEPOINT / ROLLBACK TO inside a migration are fine: they stay inside its transaction.
      await new Migrator({
        db,
        source: codeMigrations({
          '0001_a': { sql: 'create table a (id integer)' },
          '0002_savepoint': {
            sql: 'savepoint sp; create table gone (id integer); rollback to savepoint sp; release sp; create table kept (id integer)',
          },
        }),
      }).migrate();
      expect(await tables(db, tdb)).toContain('kept');
      expect(await tables(db, tdb)).not.toContain('gone');
    });

    it('baselines an existing database only when asked, then applies the rest', async () => {
      const { db } = await fresh();
      await sql`create table legacy (id integer)`.execute(db);
      const src = codeMigrations({
        '0001_legacy': { sql: 'create table legacy (id integer)' },
        '0002_more': { sql: 'create table more (id integer)' },
      });
      const m = new Migrator({ db, source: src });
      // Not asked: migrate() would try to create legacy again, and fails atomically.
      await expect(m.migrate()).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_MIGRATION_FAILED'),
      );
      await expect(m.baseline('0009_nope')).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_MIGRATION_UNKNOWN'),
      );
      expect(await m.baseline('0001_legacy')).toEqual(['0001_legacy']);
      expect((await m.migrate()).results.map((r) => r.migrationName)).toEqual(['0002_more']);
      expect((await m.status()).map((s) => [s.name, s.state, s.baseline])).toEqual([
        ['0001_legacy', 'applied', true],
        ['0002_more', 'applied', false],
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
        '0003_c': { sql: 'create table c (id integer)' },
      });
      const m = new Migrator({ db, source: src });
      const err = await m.migrate({ signal: ac.signal }).catch((e: unknown) => e);
      expect(isCrystalMathError(err, 'E_MIGRATION_FAILED')).toBe(true);
      expect((err as { details: { aborted?: boolean } }).details.aborted).toBe(true);
      expect(statuses(err)).toEqual(['Success', 'NotExecuted', 'NotExecuted']);
      expect(await history(db)).toHaveLength(1);
      // Already aborted: nothing runs.
      const err2 = await m.migrate({ signal: ac.signal }).catch((e: unknown) => e);
      expect(isCrystalMathError(err2, 'E_MIGRATION_FAILED')).toBe(true);
      expect(await history(db)).toHaveLength(1);
      expect(await m.plan()).toEqual(['0002_b', '0003_c']);
    });

    it('sees an abort from outside (a timer, a signal handler) between migrations', async () => {
      const { db } = await fresh();
      const ac = new AbortController();
      const src = codeMigrations({
        '0001_a': {
          up: async (trx) => {
            await sql`create table a (id integer)`.execute(trx);
            setTimeout(() => ac.abort(), 0);
            const until = Date.now() + 20;
            while (Date.now() < until); // synchronous work, as better-sqlite3 does
          },
        },
        '0002_b': { sql: 'create table b (id integer)' },
      });
      const err = await new Migrator({ db, source: src })
        .migrate({ signal: ac.signal })
        .catch((e: unknown) => e);
      expect(isCrystalMathError(err, 'E_MIGRATION_FAILED')).toBe(true);
      expect(statuses(err)).toEqual(['Success', 'NotExecuted']);
      expect(await history(db)).toHaveLength(1);
    });

    it('reports events to the logger; a throwing logger changes nothing', async () => {
      const { db } = await fresh();
      const events: MigrationEvent[] = [];
      await new Migrator({
        db,
        source: codeMigrations({
          '0001_a': { sql: 'create table a (id integer)' },
          '0002_b': { sql: 'create table b (id integer)' },
        }),
        logger: (e) => {
          events.push(e);
          throw new Error('logger bug');
        },
      }).migrate();
      expect(events.map((e) => `${e.type} ${'name' in e ? e.name : ''}`)).toEqual([
        'migration:start 0001_a',
        'migration:success 0001_a',
        'migration:start 0002_b',
        'migration:success 0002_b',
      ]);
    });

    it('gives E_MIGRATION_LOCK_TIMEOUT while another migrator holds the lock, without blocking the event loop', async () => {
      const { db, tdb } = await fresh();
      const events: MigrationEvent[] = [];
      const m = new Migrator({
        db,
        source: codeMigrations({ '0001_a': { sql: 'create table a (id integer)' } }),
        lockTimeoutMs: 600,
        logger: (e) => events.push(e),
      });
      await m.migrate(); // the history table exists: the lock is the only obstacle
      // Bounds are named and generous, each far from the wait it tells apart: a busy machine
      // (CI: 2 shared cores) delays timers and turns, so margins of a few hundred ms flake.
      /** The lock wait that must end in E_MIGRATION_LOCK_TIMEOUT. */
      const LOCK_TIMEOUT_MS = 4_000;
      /** The timed-out wait ends (no hang) within this. */
      const LOCK_TIMEOUT_BOUND_MS = LOCK_TIMEOUT_MS + 20_000;
      /** A wait done synchronously would block the event loop for all of LOCK_TIMEOUT_MS; a wait
       * polled in short slices leaves turns far shorter even when the machine delays a timer. */
      const EVENT_LOOP_GAP_BOUND_MS = 1_500;
      /** An aborted wait ends far before its own lockTimeoutMs (30 s). */
      const ABORT_BOUND_MS = 10_000;
      const m2 = new Migrator({
        db,
        source: codeMigrations({
          '0001_a': { sql: 'create table a (id integer)' },
          '0002_b': { sql: 'create table b (id integer)' },
        }),
        lockTimeoutMs: LOCK_TIMEOUT_MS,
        logger: (e) => events.push(e),
      });
      const release = await tdb.holdLock();
      let maxGap = 0;
      let last = Date.now();
      const timer = setInterval(() => {
        const now = Date.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
      }, 5);
      try {
        const started = Date.now();
        const err = await m2.migrate().catch((e: unknown) => e);
        expect(isCrystalMathError(err, 'E_MIGRATION_LOCK_TIMEOUT')).toBe(true);
        expect(Date.now() - started).toBeGreaterThanOrEqual(LOCK_TIMEOUT_MS - 50);
        expect(Date.now() - started).toBeLessThan(LOCK_TIMEOUT_BOUND_MS);
        expect(events.some((e) => e.type === 'lock:wait')).toBe(true);
        // better-sqlite3 waits synchronously inside its busy handler: the wait is polled in short slices.
        expect(maxGap).toBeLessThan(EVENT_LOOP_GAP_BOUND_MS);
        // Aborting a wait ends it early.
        const ac = new AbortController();
        setTimeout(() => ac.abort(), 100);
        const m3 = new Migrator({ db, source: m2Source(), lockTimeoutMs: 30_000 });
        const t0 = Date.now();
        const aborted = await m3.migrate({ signal: ac.signal }).catch((e: unknown) => e);
        expect(isCrystalMathError(aborted, 'E_MIGRATION_FAILED')).toBe(true);
        expect(Date.now() - t0).toBeLessThan(ABORT_BOUND_MS);
      } finally {
        clearInterval(timer);
        await release();
      }
      // Once released, the same migration goes through and waits are reported.
      const release2 = await tdb.holdLock();
      setTimeout(() => void release2(), 200);
      const events2: MigrationEvent[] = [];
      const ok = await new Migrator({
        db,
        source: m2Source(),
        lockTimeoutMs: 10_000,
        logger: (e) => events2.push(e),
      }).migrate();
      expect(ok.results.map((r) => r.status)).toEqual(['Success']);
      expect(events2.map((e) => e.type)).toContain('lock:acquired');
    });

    it('two migrators in one process, on two connections: each migration applied once, both succeed', async () => {
      const { tdb } = await fresh();
      const src = codeMigrations({
        '0001_a': {
          sql: "create table a (id integer primary key, v text); insert into a values (1, 'x')",
        },
        '0002_b': { sql: 'alter table a add column w text; update a set w = v' },
      });
      const [r1, r2] = await Promise.all([
        new Migrator({ db: tdb.open(), source: src }).migrate(),
        new Migrator({ db: tdb.open(), source: src }).migrate(),
      ]);
      expect(r1.results.length + r2.results.length).toBe(2);
      expect(((await history(tdb.open())) as { name: string }[]).map((r) => r.name)).toEqual([
        '0001_a',
        '0002_b',
      ]);
    });
  });
}

const m2Source = (): MigrationSource =>
  codeMigrations({
    '0001_a': { sql: 'create table a (id integer)' },
    '0002_b': { sql: 'create table b (id integer)' },
  });
