// The shared suite on SQLite (rollback journal, better-sqlite3's default, and WAL), then what is
// SQLite's alone: foreign keys around table rebuilds, PRAGMA foreign_keys being a no-op inside a
// transaction, COMMIT waiting for readers, dialect detection.

import { spawn } from 'node:child_process';
import { isCrystalMathError } from '@crystalmath/core';
import Database from 'better-sqlite3';
import { Kysely, type KyselyPlugin, SqliteDialect, sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { type AnyKysely, codeMigrations, Migrator, rebuildTable } from '../index.js';
import { sqliteFactory, type TestDatabase } from './helpers.js';
import { migratorSuite } from './migrator-suite.js';

migratorSuite('SQLite (rollback journal)', sqliteFactory('delete'));
migratorSuite('SQLite (WAL)', sqliteFactory('wal'));

const TREE = {
  '0001_tree': {
    sql: `create table parent (id integer primary key, name text);
      create table child (id integer primary key, parent_id integer not null references parent(id) on delete cascade);
      create index parent_name on parent (name);
      create table log (msg text);
      create trigger parent_ins after insert on parent begin insert into log values ('parent ' || new.id); end;
      create view family as select p.name, c.id as child_id from parent p join child c on c.parent_id = p.id;
      insert into parent values (1, 'a'), (2, 'b');
      insert into child (parent_id) values (1), (1), (2)`,
  },
} as const;

const count = async (db: AnyKysely, table: string): Promise<number> =>
  Number(
    (await sql<{ c: number }>`select count(*) as c from ${sql.table(table)}`.execute(db)).rows[0]
      ?.c,
  );
const fkOn = async (db: AnyKysely): Promise<number> =>
  Number(
    (await sql<{ foreign_keys: number }>`PRAGMA foreign_keys`.execute(db)).rows[0]?.foreign_keys,
  );
const schemaOf = async (db: AnyKysely, name: string): Promise<string | undefined> =>
  (await sql<{ sql: string }>`select sql from sqlite_schema where name = ${name}`.execute(db))
    .rows[0]?.sql;

describe('SQLite specifics', () => {
  const cleanups: TestDatabase[] = [];
  async function tree(): Promise<{ db: AnyKysely; tdb: TestDatabase }> {
    const tdb = await sqliteFactory('wal')();
    cleanups.push(tdb);
    const db = tdb.open();
    await new Migrator({ db, source: codeMigrations(TREE) }).migrate();
    return { db, tdb };
  }
  afterEach(async () => {
    for (const tdb of cleanups.splice(0)) await tdb.cleanup();
  });

  it('rebuilds a parent table with children present: child rows survive, foreign_key_check empty, indexes, triggers and views kept', async () => {
    const { db } = await tree();
    expect(await fkOn(db)).toBe(1); // better-sqlite3's default: the cascade would happen
    const { results } = await new Migrator({
      db,
      source: codeMigrations({
        ...TREE,
        '0002_parent_not_null': {
          disableForeignKeys: true,
          up: (trx) =>
            rebuildTable(trx, {
              table: 'parent',
              createSql:
                "create table {{table}} (id integer primary key, name text not null check (name <> ''))",
            }),
        },
      }),
    }).migrate();
    expect(results.map((r) => r.status)).toEqual(['Success']);
    expect(await count(db, 'child')).toBe(3);
    expect(await count(db, 'parent')).toBe(2);
    expect((await sql`PRAGMA foreign_key_check`.execute(db)).rows).toEqual([]);
    expect(await fkOn(db)).toBe(1); // restored
    expect(await schemaOf(db, 'parent')).toContain('not null check');
    expect(await schemaOf(db, 'parent_name')).toBeDefined();
    expect(await schemaOf(db, 'parent_ins')).toBeDefined();
    expect((await sql`select * from family order by child_id`.execute(db)).rows).toHaveLength(3);
    // The recreated trigger fires, and the cascade still works after the rebuild.
    await sql`insert into parent values (3, 'c')`.execute(db);
    expect(await count(db, 'log')).toBe(3);
    await sql`delete from parent where id = 1`.execute(db);
    expect(await count(db, 'child')).toBe(1);
  });

  it('rebuilds with a column mapping', async () => {
    const { db } = await tree();
    await new Migrator({
      db,
      source: codeMigrations({
        ...TREE,
        '0002_rename': {
          disableForeignKeys: true,
          up: (trx) =>
            rebuildTable(trx, {
              table: 'parent',
              createSql: 'create table {{table}} (id integer primary key, label text not null)',
              columns: { id: 'id', label: "upper(name) || '!'" },
              keepIndexesAndTriggers: false,
              afterSql: [
                'create index parent_label on parent (label)',
                'drop view family',
                'create view family as select p.label, c.id as child_id from parent p join child c on c.parent_id = p.id',
              ],
            }),
        },
      }),
    }).migrate();
    expect((await sql`select label from parent order by id`.execute(db)).rows).toEqual([
      { label: 'A!' },
      { label: 'B!' },
    ]);
    expect(await count(db, 'child')).toBe(3);
    expect(await schemaOf(db, 'parent_name')).toBeUndefined();
  });

  it('without disableForeignKeys, rebuildTable refuses (E_MIGRATION_FOREIGN_KEY) instead of cascade-deleting children', async () => {
    const { db, tdb } = await tree();
    const before = await tdb.dump(db);
    const err = await new Migrator({
      db,
      source: codeMigrations({
        ...TREE,
        '0002_rebuild': {
          up: (trx) =>
            rebuildTable(trx, {
              table: 'parent',
              createSql: 'create table {{table}} (id integer primary key, name text not null)',
            }),
        },
      }),
    })
      .migrate()
      .catch((e: unknown) => e);
    expect(isCrystalMathError(err, 'E_MIGRATION_FOREIGN_KEY')).toBe(true);
    expect(await count(db, 'child')).toBe(3);
    expect(await tdb.dump(db)).toBe(before);
  });

  it('PRAGMA foreign_keys inside a migration: hoisted out of the transaction in SQL text, refused in code', async () => {
    const { db } = await tree();
    // The SQLite manual's rebuild, written as a migration file would be.
    const manual = `PRAGMA foreign_keys = OFF;
      create table parent_new (id integer primary key, name text not null);
      insert into parent_new select id, name from parent;
      drop table parent;
      alter table parent_new rename to parent;
      PRAGMA foreign_key_check;
      PRAGMA foreign_keys = ON;`;
    const sqlSource = codeMigrations({ ...TREE, '0002_manual': { sql: manual } });
    const [, m2] = await sqlSource.getMigrations();
    expect(m2?.disableForeignKeys).toBe(true);
    // The view names parent: take it out first, as the manual says (step 9).
    await sql`drop view family`.execute(db);
    await new Migrator({ db, source: sqlSource }).migrate();
    expect(await count(db, 'child')).toBe(3);
    expect(await fkOn(db)).toBe(1);

    // In code the pragma cannot be moved: refused, because inside the transaction it would
    // silently do nothing and the drop below would cascade.
    const code = codeMigrations({
      ...TREE,
      '0002_manual': { sql: manual },
      '0003_code': {
        up: async (trx) => {
          await sql`PRAGMA foreign_keys = OFF`.execute(trx);
          await sql`drop table parent`.execute(trx);
        },
      },
    });
    const err = await new Migrator({ db, source: code }).migrate().catch((e: unknown) => e);
    expect(isCrystalMathError(err, 'E_MIGRATION_SOURCE')).toBe(true);
    expect((err as Error).message).toMatch(/no effect inside a transaction/);
    expect(await count(db, 'child')).toBe(3);
  });

  it('refuses to run inside a transaction someone else opened on the connection (where pragmas and atomicity would not hold)', async () => {
    const { db, tdb } = await tree();
    const before = await tdb.dump(db);
    await db.connection().execute(async (conn) => {
      await sql`begin`.execute(conn);
      try {
        const err = await new Migrator({
          db: conn,
          source: codeMigrations({
            ...TREE,
            '0002_rebuild': {
              disableForeignKeys: true,
              up: (trx) =>
                rebuildTable(trx, {
                  table: 'parent',
                  createSql: 'create table {{table}} (id integer primary key, name text)',
                }),
            },
          }),
        })
          .migrate()
          .catch((e: unknown) => e);
        expect(isCrystalMathError(err, 'E_MIGRATION_FAILED')).toBe(true);
        expect((err as Error).message).toMatch(/within a transaction/);
      } finally {
        await sql`rollback`.execute(conn);
      }
    });
    expect(await count(db, 'child')).toBe(3);
    expect(await tdb.dump(db)).toBe(before);
  });

  it('rolls a rebuild back when it would leave dangling children, and restores foreign_keys', async () => {
    const { db, tdb } = await tree();
    const before = await tdb.dump(db);
    const err = await new Migrator({
      db,
      source: codeMigrations({
        ...TREE,
        '0002_lossy': {
          disableForeignKeys: true,
          up: async (trx) => {
            await rebuildTable(trx, {
              table: 'parent',
              createSql: 'create table {{table}} (id integer primary key, name text)',
            });
            await sql`delete from parent where id = 2`.execute(trx);
          },
        },
      }),
    })
      .migrate()
      .catch((e: unknown) => e);
    expect(isCrystalMathError(err, 'E_MIGRATION_FOREIGN_KEY')).toBe(true);
    expect((err as { details: { violations: unknown[] } }).details.violations).toHaveLength(1);
    expect(await count(db, 'parent')).toBe(2);
    expect(await tdb.dump(db)).toBe(before);
    expect(await fkOn(db)).toBe(1);
  });

  it('violations that were there before a rebuild do not block it; new ones do', async () => {
    const { db } = await tree();
    await sql`PRAGMA foreign_keys = OFF`.execute(db);
    await sql`insert into child (parent_id) values (99)`.execute(db); // pre-existing orphan
    await sql`PRAGMA foreign_keys = ON`.execute(db);
    await new Migrator({
      db,
      source: codeMigrations({
        ...TREE,
        '0002_rebuild': {
          disableForeignKeys: true,
          up: (trx) =>
            rebuildTable(trx, {
              table: 'parent',
              createSql: 'create table {{table}} (id integer primary key, name text not null)',
            }),
        },
      }),
    }).migrate();
    expect(await count(db, 'child')).toBe(4);
  });

  it('rebuildTable outside a migration does the 12 steps itself, foreign keys off and restored', async () => {
    const { db } = await tree();
    await rebuildTable(db, {
      table: 'parent',
      createSql: 'create table {{table}} (id integer primary key, name text not null)',
    });
    expect(await count(db, 'child')).toBe(3);
    expect(await fkOn(db)).toBe(1);
    expect(await schemaOf(db, 'parent')).toContain('not null');
    // A rebuild that would orphan children is rolled back.
    await expect(
      rebuildTable(db, {
        table: 'parent',
        createSql: 'create table {{table}} (id integer primary key, name text not null)',
        columns: { id: 'id + 100', name: 'name' },
      }),
    ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_MIGRATION_FOREIGN_KEY'));
    expect((await sql`select id from parent order by id`.execute(db)).rows).toEqual([
      { id: 1 },
      { id: 2 },
    ]);
    expect(await fkOn(db)).toBe(1);
  });

  it('a failing disableForeignKeys migration restores foreign_keys and leaves the schema as it was', async () => {
    const { db, tdb } = await tree();
    const before = await tdb.dump(db);
    const err = await new Migrator({
      db,
      source: codeMigrations({
        ...TREE,
        '0002_fails': {
          disableForeignKeys: true,
          up: async (trx) => {
            await rebuildTable(trx, {
              table: 'parent',
              createSql: 'create table {{table}} (id integer primary key, name text)',
            });
            await sql`select * from nope`.execute(trx);
          },
        },
      }),
    })
      .migrate()
      .catch((e: unknown) => e);
    expect(isCrystalMathError(err, 'E_MIGRATION_FAILED')).toBe(true);
    expect(await tdb.dump(db)).toBe(before);
    expect(await fkOn(db)).toBe(1);
    expect(await count(db, 'child')).toBe(3);
  });

  it('COMMIT waits for readers (rollback journal) instead of failing, and busy_timeout is restored', async () => {
    const tdb = await sqliteFactory('delete')();
    cleanups.push(tdb);
    const raw = new Database(tdb.target);
    raw.pragma('busy_timeout = 0');
    const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: raw }) }) as AnyKysely;
    try {
      await new Migrator({
        db,
        source: codeMigrations({ '0001_t': { sql: 'create table t (id integer)' } }),
      }).migrate();
      // Another process holds a read transaction (a SHARED lock) for 1.5 s.
      const reader = spawn(
        process.execPath,
        [
          '-e',
          `const D = require('better-sqlite3'); const d = new D(${JSON.stringify(tdb.target)});
           d.exec('begin'); d.prepare('select * from t').all(); console.log('held');
           setTimeout(() => { d.exec('commit'); d.close(); }, 1500);`,
        ],
        { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'inherit'] },
      );
      await new Promise<void>((resolve) => reader.stdout.once('data', () => resolve()));
      const started = Date.now();
      const { results } = await new Migrator({
        db,
        source: codeMigrations({
          '0001_t': { sql: 'create table t (id integer)' },
          '0002_u': { sql: 'create table u (id integer)' },
        }),
      }).migrate();
      expect(results.map((r) => r.status)).toEqual(['Success']);
      expect(Date.now() - started).toBeGreaterThan(500);
      await new Promise((r) => reader.on('close', r));
      expect(raw.pragma('busy_timeout', { simple: true })).toBe(0);
    } finally {
      await db.destroy();
    }
  });

  it('detects the dialect from the adapter; refuses one it does not know', async () => {
    const tdb = await sqliteFactory()();
    cleanups.push(tdb);
    const db = tdb.open();
    expect(new Migrator({ db, source: codeMigrations({}) }).dialect).toBe('sqlite');
    const plugin: KyselyPlugin = {
      transformQuery: (a) => a.node,
      transformResult: async (a) => a.result,
    };
    expect(new Migrator({ db: db.withPlugin(plugin), source: codeMigrations({}) }).dialect).toBe(
      'sqlite',
    );
    const fake = {
      getExecutor: () => ({ adapter: new (class MysqlAdapter {})() }),
    } as unknown as AnyKysely;
    expect(() => new Migrator({ db: fake, source: codeMigrations({}) })).toThrow(/pass dialect/);
    expect(new Migrator({ db: fake, source: codeMigrations({}), dialect: 'sqlite' }).dialect).toBe(
      'sqlite',
    );
  });
});
