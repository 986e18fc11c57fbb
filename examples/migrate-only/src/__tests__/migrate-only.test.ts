import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCrystalMathError } from '@crystalmath/core';
import { type AnyKysely, codeMigrations, Migrator, openDatabase } from '@crystalmath/migrate';
import { requireService } from '@crystalmath/testkit';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema, v1, v2, v3Broken } from '../notes-schema.js';

async function tables(db: AnyKysely, dialect: 'sqlite' | 'postgres'): Promise<string[]> {
  const q =
    dialect === 'sqlite'
      ? sql<{
          name: string;
        }>`select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name`
      : sql<{
          name: string;
        }>`select table_name as name from information_schema.tables where table_schema = current_schema() order by table_name`;
  return (await q.execute(db)).rows.map((r) => r.name);
}

function suite(dialect: 'sqlite' | 'postgres', open: () => Promise<AnyKysely>) {
  let db: AnyKysely;
  beforeAll(async () => {
    db = await open();
  });
  afterAll(async () => {
    await db?.destroy();
  });

  it('applies v1 then v2, and a second run applies nothing', async () => {
    const r1 = await new Migrator({ db, source: schema(v1) }).migrate();
    expect(r1.results.map((r) => r.status)).toEqual(['Success', 'Success']);
    const r2 = await new Migrator({ db, source: schema(v2) }).migrate();
    expect(r2.results.map((r) => r.migrationName)).toEqual([
      '0003_calculation_status',
      '0004_tags',
    ]);
    expect((await new Migrator({ db, source: schema(v2) }).migrate()).results).toEqual([]);
    expect(await tables(db, dialect)).toEqual(
      expect.arrayContaining(['calculations', 'structures', 'tags']),
    );
  });

  it('rolls a failing migration back whole: its first statement leaves no table', async () => {
    const err = await new Migrator({ db, source: schema(v3Broken) }).migrate().catch((e) => e);
    expect(isCrystalMathError(err, 'E_MIGRATION_FAILED')).toBe(true);
    expect(await tables(db, dialect)).not.toContain('runs');
    const status = await new Migrator({ db, source: schema(v3Broken) }).status();
    expect(status.find((m) => m.name === '0005_half_done')?.state).toBe('pending');
  });

  it('refuses to run when an applied migration was edited', async () => {
    const edited = codeMigrations({
      ...v2,
      '0001_structures': { sql: 'create table structures (id integer primary key)' },
    });
    const err = await new Migrator({ db, source: edited }).migrate().catch((e) => e);
    expect(isCrystalMathError(err, 'E_MIGRATION_CHECKSUM')).toBe(true);
  });
}

describe('migrate-only on SQLite', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cm-ex-migrate-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  suite('sqlite', () => openDatabase(join(dir, 'notes.db')));
});

const pg = requireService('postgres');
describe.skipIf(!pg)('migrate-only on PostgreSQL', () => {
  const schemaName = `ex_migrate_${process.pid}_${Date.now().toString(36)}`;
  suite('postgres', async () => {
    const admin = await openDatabase(pg!.connectionString);
    await sql.raw(`create schema ${schemaName}`).execute(admin);
    await admin.destroy();
    const url = new URL(pg!.connectionString);
    url.searchParams.set('options', `-c search_path=${schemaName}`);
    return openDatabase(url.toString());
  });
  afterAll(async () => {
    const admin = await openDatabase(pg!.connectionString);
    await sql.raw(`drop schema if exists ${schemaName} cascade`).execute(admin);
    await admin.destroy();
  });
});

describe('the example program', () => {
  it('runs to the end and shows the failed migration rolled back', () => {
    const build = spawnSync('npx', ['tsup'], {
      cwd: new URL('../..', import.meta.url).pathname,
      encoding: 'utf8',
    });
    expect(build.status).toBe(0);
    const run = spawnSync('node', ['dist/main.js'], {
      cwd: new URL('../..', import.meta.url).pathname,
      encoding: 'utf8',
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('v1: applied 0001_structures, 0002_calculations');
    expect(run.stdout).toContain('table "runs" exists after the failed migration: false');
    expect(run.stdout).toMatch(/0005_half_done\s+pending/);
  });
});
