import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isCrystalMathError } from '@crystalmath/core';
import Database from 'better-sqlite3';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { codeMigrations, Migrator, openDatabase, rebuildTable } from '../index.js';
import { migratorSuite, runChild, type TestDatabase } from './migrator-suite.js';

const scratch = mkdtempSync(join(tmpdir(), 'cm-migrate-'));
let n = 0;

async function sqliteDb(): Promise<TestDatabase> {
  const target = join(scratch, `db-${n++}.sqlite`);
  return {
    target,
    dump: async (db) =>
      JSON.stringify(
        (
          await sql`select type, name, tbl_name, sql from sqlite_schema order by type, name`.execute(
            db,
          )
        ).rows,
      ),
    cleanup: async () => {
      for (const f of [target, `${target}-wal`, `${target}-shm`]) rmSync(f, { force: true });
    },
    holdLock: async () => {
      const other = new Database(target);
      other.exec('BEGIN IMMEDIATE');
      return async () => {
        other.exec('ROLLBACK');
        other.close();
      };
    },
  };
}

migratorSuite('SQLite', sqliteDb);

describe('SQLite specifics', () => {
  it('survives SIGKILL at random points of a long migration: integrity ok, old or new version, rerun completes', async () => {
    const trials = Number(process.env.CM_MIGRATE_CRASH_TRIALS ?? 50);
    const outcomes = { old: 0, new: 0 };
    for (let i = 0; i < trials; i++) {
      const tdb = await sqliteDb();
      try {
        const child = runChild(tdb.target, 'crash');
        // Node start-up takes ~60-100 ms; the long migration ~300 ms more: spread kills over both.
        await new Promise((r) => setTimeout(r, 40 + Math.random() * 250));
        child.kill();
        await child.done;
        const raw = new Database(tdb.target);
        expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
        const hasHistory = raw
          .prepare("select count(*) c from sqlite_schema where name = 'crystalmath_migrations'")
          .get() as { c: number };
        const applied = hasHistory.c
          ? (
              raw.prepare('select name from crystalmath_migrations order by name').all() as {
                name: string;
              }[]
            ).map((r) => r.name)
          : [];
        const tables = (
          raw
            .prepare(
              "select name from sqlite_schema where type = 'table' and name in ('big', 'marker')",
            )
            .all() as { name: string }[]
        ).map((r) => r.name);
        raw.close();
        // Version is all-or-nothing: 0002 recorded iff its tables exist.
        if (applied.includes('0002_long')) {
          expect(tables.sort()).toEqual(['big', 'marker']);
          outcomes.new++;
        } else {
          expect(tables).toEqual([]);
          outcomes.old++;
        }
        expect(await runChild(tdb.target, 'crash').done).toMatch(/^ok/);
      } finally {
        await tdb.cleanup();
      }
    }
    expect(outcomes.old + outcomes.new).toBe(trials);
    expect(outcomes.old).toBeGreaterThan(0); // some kills landed before or during the migration
  }, 180_000);

  it('rebuilds a parent table with children present: no child row deleted, foreign_key_check empty', async () => {
    const tdb = await sqliteDb();
    const db = await openDatabase(tdb.target);
    try {
      await new Migrator({
        db,
        source: codeMigrations({
          '0001_tree': {
            sql: `create table parent (id integer primary key, name text);
              create table child (id integer primary key, parent_id integer not null references parent(id) on delete cascade);
              insert into parent values (1, 'a'), (2, 'b');
              insert into child (parent_id) values (1), (1), (2)`,
          },
        }),
      }).migrate();
      const rebuild = codeMigrations({
        '0001_tree': {
          sql: `create table parent (id integer primary key, name text);
              create table child (id integer primary key, parent_id integer not null references parent(id) on delete cascade);
              insert into parent values (1, 'a'), (2, 'b');
              insert into child (parent_id) values (1), (1), (2)`,
        },
        '0002_parent_not_null': {
          disableForeignKeys: true,
          up: (trx) =>
            rebuildTable(trx, {
              table: 'parent',
              createSql: 'create table {{table}} (id integer primary key, name text not null)',
            }),
        },
      });
      await new Migrator({ db, source: rebuild }).migrate();
      expect(
        Number((await sql<{ c: number }>`select count(*) c from child`.execute(db)).rows[0]?.c),
      ).toBe(3);
      expect((await sql`PRAGMA foreign_key_check`.execute(db)).rows).toEqual([]);
      expect(
        Number(
          (await sql<{ foreign_keys: number }>`PRAGMA foreign_keys`.execute(db)).rows[0]
            ?.foreign_keys,
        ),
      ).toBe(1);
    } finally {
      await db.destroy();
      await tdb.cleanup();
    }
  });

  it('rolls a rebuild back when it would leave dangling children (E_MIGRATION_FOREIGN_KEY)', async () => {
    const tdb = await sqliteDb();
    const db = await openDatabase(tdb.target);
    try {
      const base = {
        '0001_tree': {
          sql: `create table parent (id integer primary key); create table child (id integer primary key, parent_id integer references parent(id));
            insert into parent values (1); insert into child (parent_id) values (1)`,
        },
      };
      await new Migrator({ db, source: codeMigrations(base) }).migrate();
      const bad = codeMigrations({
        ...base,
        '0002_lossy': {
          disableForeignKeys: true,
          up: async (trx) => {
            await rebuildTable(trx, {
              table: 'parent',
              createSql: 'create table {{table}} (id integer primary key)',
            });
            await sql`delete from parent`.execute(trx);
          },
        },
      });
      await expect(new Migrator({ db, source: bad }).migrate()).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_MIGRATION_FOREIGN_KEY'),
      );
      expect(
        Number((await sql<{ c: number }>`select count(*) c from parent`.execute(db)).rows[0]?.c),
      ).toBe(1);
    } finally {
      await db.destroy();
      await tdb.cleanup();
    }
  });

  it('runs status, plan and up from the CLI on a folder of .sql files', () => {
    const dir = join(scratch, 'cli-migrations');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, '0001_jobs.sql'),
      "create table jobs (id integer primary key, note text default 'a;b');\n-- done;\n",
    );
    writeFileSync(
      join(dir, '0002_trigger.sql'),
      'create table log (id integer);\ncreate trigger jobs_ins after insert on jobs begin insert into log values (new.id); end;\n',
    );
    const bin = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
    const db = join(scratch, 'cli.sqlite');
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
    expect(run('plan', '--db', db, '--dir', dir).stdout).toBe('0001_jobs\n0002_trigger\n');
    const up = run('up', '--db', db, '--dir', dir, '--json');
    expect(up.status).toBe(0);
    expect(JSON.parse(up.stdout)).toHaveLength(2);
    expect(run('status', '--db', db, '--dir', dir).stdout).toMatch(
      /applied\s+0001_jobs[\s\S]*applied\s+0002_trigger/,
    );
    writeFileSync(join(dir, '0001_jobs.sql'), 'create table jobs (id integer primary key);\n');
    const changed = run('up', '--db', db, '--dir', dir);
    expect(changed.status).toBe(1);
    expect(changed.stderr).toContain('E_MIGRATION_CHECKSUM');
    expect(run('frobnicate').status).toBe(2);
  });
});
