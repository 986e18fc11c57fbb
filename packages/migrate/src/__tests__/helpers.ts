// Test databases for both dialects, and child processes that migrate them with the built
// package (as another program would): the race and crash tests kill and race real processes.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll } from 'vitest';
import type { AnyKysely, Dialect } from '../index.js';
import { postgresLockKey } from '../migrator.js';

export interface TestDatabase {
  readonly dialect: Dialect;
  /** A path or URL a child process can open. */
  readonly target: string;
  /** A kysely instance built the way the queue builds it (better-sqlite3 / pg Pool), destroyed by cleanup. */
  readonly open: () => AnyKysely;
  /** Schema objects (SQLite: sqlite_schema; PostgreSQL: information_schema + pg catalogs), as text. */
  readonly dump: (db: AnyKysely) => Promise<string>;
  /** Is the database sound after a crash? (SQLite: integrity_check; PostgreSQL: it answers.) */
  readonly integrity: () => Promise<string>;
  readonly cleanup: () => Promise<void>;
  /** Holds the migration lock from another connection until the returned function is called. */
  readonly holdLock: () => Promise<() => Promise<void>>;
}

export type MakeDb = () => Promise<TestDatabase>;

// ---------------------------------------------------------------------------------------------
// SQLite

const scratch = mkdtempSync(join(tmpdir(), 'cm-migrate-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let counter = 0;

/** `journal`: 'wal' (WAL set on the file) or 'delete' (better-sqlite3's default rollback journal). */
export function sqliteFactory(journal: 'wal' | 'delete' = 'wal'): MakeDb {
  return async () => {
    const target = join(scratch, `db-${process.pid}-${counter++}.sqlite`);
    const init = new Database(target);
    init.pragma(`journal_mode = ${journal}`);
    init.close();
    const opened: AnyKysely[] = [];
    return {
      dialect: 'sqlite',
      target,
      open: () => {
        const db = new Kysely<unknown>({
          dialect: new SqliteDialect({ database: new Database(target) }),
        }) as AnyKysely;
        opened.push(db);
        return db;
      },
      dump: async (db) =>
        JSON.stringify(
          (
            await sql`select type, name, tbl_name, sql from sqlite_schema order by type, name`.execute(
              db,
            )
          ).rows,
        ),
      integrity: async () => {
        const raw = new Database(target);
        try {
          return String(raw.pragma('integrity_check', { simple: true }));
        } finally {
          raw.close();
        }
      },
      cleanup: async () => {
        for (const db of opened.splice(0)) await db.destroy();
        for (const f of [target, `${target}-wal`, `${target}-shm`, `${target}-journal`]) {
          rmSync(f, { force: true });
        }
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
  };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: one scratch database per test file, one scratch schema per test database.

export interface PostgresScratch {
  readonly makeDb: MakeDb;
  readonly drop: () => Promise<void>;
}

export async function postgresScratch(connectionString: string): Promise<PostgresScratch> {
  const dbName = `cm_migrate_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString });
  await admin.connect();
  await admin.query(`create database ${dbName}`);
  await admin.end();
  const base = new URL(connectionString);
  base.pathname = `/${dbName}`;
  const urlFor = (schema: string): string => {
    const u = new URL(base);
    u.searchParams.set('options', `-c search_path=${schema}`);
    return u.toString();
  };
  const query = async (text: string): Promise<void> => {
    const c = new pg.Client({ connectionString: base.toString() });
    await c.connect();
    try {
      await c.query(text);
    } finally {
      await c.end();
    }
  };
  const makeDb: MakeDb = async () => {
    const schema = `s_${randomBytes(5).toString('hex')}`;
    await query(`create schema ${schema}`);
    const target = urlFor(schema);
    const opened: AnyKysely[] = [];
    return {
      dialect: 'postgres',
      target,
      open: () => {
        const db = new Kysely<unknown>({
          dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: target, max: 3 }) }),
        }) as AnyKysely;
        opened.push(db);
        return db;
      },
      dump: async (db) => {
        const parts = await Promise.all([
          sql`select table_name, table_type from information_schema.tables
              where table_schema = current_schema() order by table_name`.execute(db),
          sql`select table_name, column_name, ordinal_position, data_type, is_nullable, column_default
              from information_schema.columns where table_schema = current_schema()
              order by table_name, ordinal_position`.execute(db),
          sql`select table_name, constraint_name, constraint_type from information_schema.table_constraints
              where table_schema = current_schema() order by table_name, constraint_name`.execute(
            db,
          ),
          sql`select tablename, indexname, indexdef from pg_indexes
              where schemaname = current_schema() order by indexname`.execute(db),
          sql`select event_object_table, trigger_name, action_statement from information_schema.triggers
              where trigger_schema = current_schema() order by trigger_name`.execute(db),
        ]);
        return JSON.stringify(parts.map((p) => p.rows));
      },
      integrity: async () => {
        const c = new pg.Client({ connectionString: target });
        await c.connect();
        try {
          await c.query('select count(*) from pg_class');
          return 'ok';
        } finally {
          await c.end();
        }
      },
      cleanup: async () => {
        for (const db of opened.splice(0)) await db.destroy();
        await query(`drop schema if exists ${schema} cascade`);
      },
      holdLock: async () => {
        const c = new pg.Client({ connectionString: target });
        await c.connect();
        const [k1, k2] = postgresLockKey(schema, 'crystalmath_migrations');
        await c.query('select pg_advisory_lock($1::int4, $2::int4)', [k1, k2]);
        return async () => {
          await c.end();
        };
      },
    };
  };
  const drop = async (): Promise<void> => {
    const c = new pg.Client({ connectionString });
    await c.connect();
    try {
      await c.query(`drop database if exists ${dbName} with (force)`);
    } finally {
      await c.end();
    }
  };
  return { makeDb, drop };
}

// ---------------------------------------------------------------------------------------------
// Child processes running the built package.

const CHILD = fileURLToPath(new URL('./fixtures/migrate-child.mjs', import.meta.url));
const DIST = fileURLToPath(new URL('../../dist/index.js', import.meta.url));

/** The child processes import the built package: fail clearly when it is not built. */
export function assertBuilt(): void {
  if (!existsSync(DIST)) {
    throw new Error(
      `${DIST} is missing: build first (pnpm --filter @crystalmath/migrate build; turbo's test task does)`,
    );
  }
}

export interface Child {
  /** Resolves once the child has loaded everything and waits for its target. */
  readonly ready: Promise<void>;
  /** Gives the child its database: it starts migrating now. */
  readonly go: (target: string) => void;
  /** stdout + stderr once the child exits. */
  readonly done: Promise<{ out: string; code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when the child prints a line starting with `prefix` ('' if it exits first). */
  readonly waitFor: (prefix: string) => Promise<string>;
  readonly kill: () => void;
}

/** A child that loads the built package, says "ready", and migrates `mode` once given a target. */
export function spawnChild(mode: 'race' | 'crash'): Child {
  const child = spawn(process.execPath, [CHILD, '-', mode], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let scanned = 0;
  const lines: string[] = [];
  const waiters: { prefix: string; resolve: (line: string) => void }[] = [];
  const settle = (): void => {
    for (const w of waiters.splice(0)) {
      const line = lines.find((l) => l.startsWith(w.prefix));
      if (line !== undefined) w.resolve(line);
      else waiters.push(w);
    }
  };
  child.stdout.on('data', (d) => {
    out += d;
    const complete = out.lastIndexOf('\n');
    if (complete >= scanned) {
      lines.push(...out.slice(scanned, complete).split('\n'));
      scanned = complete + 1;
      settle();
    }
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  child.stdin.on('error', () => undefined); // killed before it read its target
  const done = new Promise<{ out: string; code: number | null; signal: NodeJS.Signals | null }>(
    (resolve) =>
      child.on('close', (code, signal) => {
        for (const w of waiters.splice(0)) w.resolve('');
        resolve({ out: out.trim(), code, signal });
      }),
  );
  const waitFor = (prefix: string): Promise<string> =>
    new Promise((resolve) => {
      waiters.push({ prefix, resolve });
      settle();
    });
  return {
    ready: waitFor('ready').then(() => undefined),
    go: (target) => child.stdin.end(`${target}\n`),
    done,
    waitFor,
    kill: () => child.kill('SIGKILL'),
  };
}

/** A long-lived child that migrates one database per request (the race rounds reuse it). */
export interface Worker {
  readonly run: (target: string, mode: 'race' | 'crash', startAt?: number) => Promise<string[]>;
  readonly close: () => Promise<void>;
}

export function startWorker(): Worker {
  const child = spawn(process.execPath, [CHILD, 'serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const pending = new Map<number, (lines: string[]) => void>();
  let buffer = '';
  let nextId = 0;
  child.stdout.on('data', (d) => {
    buffer += d;
    let nl = buffer.indexOf('\n');
    while (nl >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      const res = JSON.parse(line) as { id: number; lines: string[] };
      pending.get(res.id)?.(res.lines);
      pending.delete(res.id);
      nl = buffer.indexOf('\n');
    }
  });
  const exited = new Promise<void>((resolve) =>
    child.on('close', () => {
      for (const r of pending.values()) r(['error worker exited']);
      resolve();
    }),
  );
  return {
    run: (target, mode, startAt) =>
      new Promise((resolve) => {
        const id = nextId++;
        pending.set(id, resolve);
        child.stdin.write(`${JSON.stringify({ id, target, mode, startAt })}\n`);
      }),
    close: async () => {
      child.stdin.end();
      await exited;
    },
  };
}
