// The built bin, run as a user would, on temp databases: status, plan, up, baseline, exit codes.

import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireService } from '@crystalmath/testkit';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, postgresScratch } from './helpers.js';

const BIN = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'cm-migrate-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function run(...args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
}

let n = 0;
function folder(files: Record<string, string>): string {
  const dir = join(scratch, `migrations-${n++}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const FILES = {
  '0001_jobs.sql':
    "-- jobs; the first table\ncreate table jobs (id integer primary key, note text default 'a;b');\n",
  '0002_trigger.sqlite.sql':
    'create table log (id integer);\ncreate trigger jobs_ins after insert on jobs begin\n  insert into log values (new.id);\nend;\n',
  '0002_trigger.postgres.sql': `create table log (id integer);
create function jobs_ins() returns trigger language plpgsql as $$
begin
  insert into log values (new.id);
  return new;
end;
$$;
create trigger jobs_ins after insert on jobs for each row execute function jobs_ins();
`,
  '0003_variant.sqlite.sql': 'create table v (id integer primary key autoincrement);\n',
  '0003_variant.postgres.sql': 'create table v (id serial primary key);\n',
  'README.md': 'not a migration',
};

describe('crystalmath-migrate (built bin)', () => {
  beforeAll(() => assertBuilt());

  it('is an executable with a node shebang', () => {
    const r = spawnSync(BIN, ['--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^usage: crystalmath-migrate/);
    expect(r.stdout).toMatch(/exit codes/);
  });

  it('usage errors exit 2', () => {
    const dir = folder(FILES);
    const db = join(scratch, 'usage.sqlite');
    for (const args of [
      [],
      ['frobnicate', '--db', db, '--dir', dir],
      ['up', '--db', db],
      ['up', '--dir', dir],
      ['up', '--db', db, '--dir', dir, '--nope'],
      ['up', 'extra', '--db', db, '--dir', dir],
      ['baseline', '--db', db, '--dir', dir],
      ['up', '--db', db, '--dir', dir, '--lock-timeout', 'soon'],
    ]) {
      const r = run(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/usage:/);
    }
    expect(existsSync(db)).toBe(false);
  });

  it('status, plan, up on an SQLite file; refusals exit 1 with their code', () => {
    const dir = folder(FILES);
    const db = join(scratch, 'app.sqlite');
    // Reading a database that does not exist does not create it.
    const st0 = run('status', '--db', db, '--dir', dir);
    expect(st0.status).toBe(0);
    expect(st0.stdout).toMatch(
      /pending\s+0001_jobs\npending\s+0002_trigger\npending\s+0003_variant/,
    );
    expect(existsSync(db)).toBe(false);
    const plan = run('plan', '--db', db, '--dir', dir, '--check');
    expect(plan.status).toBe(3);
    expect(plan.stdout).toBe('0001_jobs\n0002_trigger\n0003_variant\n');

    const up = run('up', '--db', db, '--dir', dir);
    expect(up.status, up.stderr).toBe(0);
    expect(up.stdout).toBe('3 migration(s) applied\n');
    expect(up.stderr).toMatch(/applied 0001_jobs \(\d+ ms\)/);
    const raw = new Database(db, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('delete'); // not switched to WAL
    raw.close();

    expect(run('plan', '--db', db, '--dir', dir, '--check').status).toBe(0);
    expect(run('up', '--db', db, '--dir', dir).stdout).toBe('up to date\n');
    const st = run('status', '--db', db, '--dir', dir, '--json');
    expect(st.status).toBe(0);
    expect(
      (JSON.parse(st.stdout) as { name: string; state: string }[]).map((s) => [s.name, s.state]),
    ).toEqual([
      ['0001_jobs', 'applied'],
      ['0002_trigger', 'applied'],
      ['0003_variant', 'applied'],
    ]);

    // A failing migration: exit 1, rolled back whole.
    writeFileSync(
      join(dir, '0004_bad.sql'),
      'create table half (id integer);\ninsert into nope values (1);\n',
    );
    const bad = run('up', '--db', db, '--dir', dir);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(
      /E_MIGRATION_FAILED: \[migrate\] 0004_bad failed and was rolled back/,
    );
    const check = new Database(db, { readonly: true });
    expect(
      check.prepare("select count(*) as c from sqlite_schema where name = 'half'").get(),
    ).toEqual({ c: 0 });
    expect(check.prepare('select count(*) as c from crystalmath_migrations').get()).toEqual({
      c: 3,
    });
    check.close();
    const badJson = run('up', '--db', db, '--dir', dir, '--json');
    expect(badJson.status).toBe(1);
    expect(JSON.parse(badJson.stdout).error.code).toBe('E_MIGRATION_FAILED');

    // An edited applied migration.
    writeFileSync(join(dir, '0004_bad.sql'), 'create table half (id integer);\n');
    writeFileSync(join(dir, '0001_jobs.sql'), 'create table jobs (id integer primary key);\n');
    const changed = run('up', '--db', db, '--dir', dir);
    expect(changed.status).toBe(1);
    expect(changed.stderr).toContain('E_MIGRATION_CHECKSUM');
    expect(run('status', '--db', db, '--dir', dir).stdout).toMatch(/changed\s+0001_jobs/);
    expect(run('plan', '--db', db, '--dir', dir).status).toBe(1);
  });

  it('baseline adopts an existing database, only on an empty history', () => {
    const dir = folder(FILES);
    const db = join(scratch, 'legacy.sqlite');
    const raw = new Database(db);
    raw.exec("create table jobs (id integer primary key, note text default 'a;b')");
    raw.close();
    const base = run('baseline', '--to', '0001_jobs', '--db', db, '--dir', dir);
    expect(base.status, base.stderr).toBe(0);
    expect(base.stdout).toMatch(/baselined 1 migration/);
    expect(run('status', '--db', db, '--dir', dir).stdout).toMatch(
      /applied\s+0001_jobs\s+\S+\s+\(baseline\)\npending\s+0002_trigger/,
    );
    expect(run('up', '--db', db, '--dir', dir).status).toBe(0);
    const again = run('baseline', '--to', '0002_trigger', '--db', db, '--dir', dir);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('E_MIGRATION_ORDER');
  });

  it('gives up after --lock-timeout while another writer holds the database', () => {
    const dir = folder(FILES);
    const db = join(scratch, 'locked.sqlite');
    const holder = new Database(db);
    holder.exec('create table other (id integer)');
    holder.exec('begin immediate');
    try {
      const started = Date.now();
      const r = run('up', '--db', db, '--dir', dir, '--lock-timeout', '300');
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('E_MIGRATION_LOCK_TIMEOUT');
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      holder.exec('rollback');
      holder.close();
    }
    expect(run('up', '--db', db, '--dir', dir).status).toBe(0);
  });

  it('Ctrl-C during up stops between migrations; the database stays at a whole version', async () => {
    const dir = folder({
      '0001_a.sql': 'create table a (id integer)',
      '0002_slow.sql': `create table slow (v text);
        insert into slow select hex(randomblob(64)) from
          (with recursive n(i) as (select 1 union all select i + 1 from n where i < 200000) select i from n)`,
      '0003_c.sql': 'create table c (id integer)',
    });
    const db = join(scratch, 'sigint.sqlite');
    const child = spawn(process.execPath, [BIN, 'up', '--db', db, '--dir', dir]);
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (d) => {
      stderr += d;
      if (!sent && /applied 0001_a/.test(stderr)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(1);
    expect(stderr).toContain('stopping after the current migration');
    expect(stderr).toMatch(/E_MIGRATION_FAILED: \[migrate\] aborted before 000[23]/);
    const check = new Database(db, { readonly: true });
    const names = (
      check.prepare('select name from crystalmath_migrations order by name').all() as {
        name: string;
      }[]
    ).map((r) => r.name);
    const tables = (
      check.prepare("select name from sqlite_schema where type = 'table'").all() as {
        name: string;
      }[]
    ).map((r) => r.name);
    check.close();
    expect(names[0]).toBe('0001_a');
    expect(names).not.toContain('0003_c');
    expect(tables.includes('slow')).toBe(names.includes('0002_slow'));
    expect(run('up', '--db', db, '--dir', dir).status).toBe(0);
  });

  it('runs against a missing folder with exit 1 (E_MIGRATION_SOURCE)', () => {
    const r = run('plan', '--db', join(scratch, 'x.sqlite'), '--dir', join(scratch, 'nowhere'));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('E_MIGRATION_SOURCE');
  });

  const pgService = requireService('postgres');
  it.skipIf(!pgService)('status, plan, up on a PostgreSQL URL', async () => {
    const pg = await postgresScratch(pgService!.connectionString);
    try {
      const tdb = await pg.makeDb();
      const dir = folder(FILES);
      expect(run('plan', '--db', tdb.target, '--dir', dir).stdout).toBe(
        '0001_jobs\n0002_trigger\n0003_variant\n',
      );
      const up = run('up', '--db', tdb.target, '--dir', dir, '--json');
      expect(up.status, up.stderr + up.stdout).toBe(0);
      expect(JSON.parse(up.stdout)).toHaveLength(3);
      expect(run('status', '--db', tdb.target, '--dir', dir).stdout).toMatch(
        /applied\s+0003_variant/,
      );
      await tdb.cleanup();
    } finally {
      await pg.drop();
    }
  });
});
