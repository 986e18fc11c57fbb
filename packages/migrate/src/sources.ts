// Migration sources: a record of code migrations, or a folder of NNNN_name.sql files. Both
// give each migration a SHA-256 checksum of its text, so an edited migration is detected.

import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'kysely';
import {
  type AnyKysely,
  compareMigrationNames,
  type Dialect,
  type Migration,
  type MigrationContext,
  type MigrationSource,
  type NamedMigration,
} from './migration.js';
import { MigrationError } from './migration-error.js';
import { leadingWords, splitSqlStatements, stripLeadingComments } from './split-sql.js';

export type SqlMigration =
  | { readonly sql: string }
  | { readonly sqlite: string; readonly postgres: string };
export type CodeMigration = Migration | SqlMigration;

const NAME = /^[0-9]{4,}_[A-Za-z0-9_.-]+$/;

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Line endings and a byte-order mark do not change a migration (a Windows checkout is the same migration). */
function normalize(text: string): string {
  return text.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
}

const FK_SET = /^pragma\s+(?:main\s*\.\s*)?foreign_keys\s*(?:=\s*|\(\s*)['"]?(\w+)/i;

/**
 * The statements of one dialect's SQL text, with `PRAGMA foreign_keys = ...` taken out: it is a
 * no-op inside the migration's transaction, so `OFF` becomes the migration's
 * `disableForeignKeys` (applied outside the transaction) and `ON` is implied by the restore.
 */
function prepareSql(text: string): { statements: string[]; disableForeignKeys: boolean } {
  const statements: string[] = [];
  let disableForeignKeys = false;
  for (const stmt of splitSqlStatements(text)) {
    const m = leadingWords(stmt, 1)[0] === 'pragma' && FK_SET.exec(stripLeadingComments(stmt));
    if (m) {
      if (/^(off|0|false|no)$/i.test(m[1]!)) disableForeignKeys = true;
      continue;
    }
    statements.push(stmt);
  }
  return { statements, disableForeignKeys };
}

/** A migration that runs SQL text statement by statement, on the migration's transaction. */
function fromSql(name: string, m: SqlMigration): NamedMigration {
  const texts: Record<Dialect, string> =
    'sql' in m
      ? { sqlite: normalize(m.sql), postgres: normalize(m.sql) }
      : { sqlite: normalize(m.sqlite), postgres: normalize(m.postgres) };
  const prepared: Partial<Record<Dialect, ReturnType<typeof prepareSql>>> = {};
  const get = (d: Dialect) => {
    prepared[d] ??= prepareSql(texts[d]);
    return prepared[d];
  };
  const dialectChecksums =
    'sql' in m ? undefined : { sqlite: sha256(texts.sqlite), postgres: sha256(texts.postgres) };
  return {
    name,
    checksum:
      'sql' in m
        ? sha256(texts.sqlite)
        : sha256(`-- sqlite\n${texts.sqlite}\n-- postgres\n${texts.postgres}`),
    ...(dialectChecksums ? { dialectChecksums } : {}),
    // Only SQLite has the pragma; on PostgreSQL the flag is ignored.
    ...(get('sqlite').disableForeignKeys ? { disableForeignKeys: true } : {}),
    async up(db: AnyKysely, ctx: MigrationContext) {
      for (const stmt of get(ctx.dialect).statements) {
        await sql.raw(stmt).execute(db);
      }
    },
  };
}

function checkName(name: string): void {
  if (!NAME.test(name)) {
    throw new MigrationError(
      'E_MIGRATION_SOURCE',
      `migration name "${name}" must look like 0001_create_jobs`,
      {
        details: { field: 'name', name },
      },
    );
  }
}

function checkMigration(name: string, m: unknown): asserts m is CodeMigration {
  const o = m as Record<string, unknown> | null;
  const ok =
    typeof o === 'object' &&
    o !== null &&
    (typeof o.up === 'function' ||
      typeof o.sql === 'string' ||
      (typeof o.sqlite === 'string' && typeof o.postgres === 'string'));
  if (!ok) {
    throw new MigrationError(
      'E_MIGRATION_SOURCE',
      `migration ${name} must be { up }, { sql } or { sqlite, postgres }`,
      { details: { name } },
    );
  }
}

/**
 * Migrations written in code, applied in name order. A value is `{ up }`, `{ sql }`, or
 * `{ sqlite, postgres }` for SQL that differs by dialect. SQL text is split with
 * `splitSqlStatements` and runs statement by statement inside the migration's transaction.
 *
 * Checksums: SQL text (line endings normalised); for `{ up }`, `up.toString()` or `checksumText`.
 *
 * @example
 * codeMigrations({
 *   '0001_jobs': { sql: 'create table jobs (id integer primary key, name text not null)' },
 *   '0002_index': { up: (db) => db.schema.createIndex('jobs_name').on('jobs').column('name').execute() },
 * })
 */
export function codeMigrations(record: Readonly<Record<string, CodeMigration>>): MigrationSource {
  const list = Object.entries(record).map(([name, m]): NamedMigration => {
    checkName(name);
    checkMigration(name, m);
    if ('up' in m && typeof m.up === 'function') {
      return {
        name,
        checksum: sha256(m.checksumText ?? m.up.toString()),
        up: (db, ctx) => m.up(db, ctx),
        ...(m.disableForeignKeys ? { disableForeignKeys: true } : {}),
      };
    }
    return fromSql(name, m as SqlMigration);
  });
  list.sort((a, b) => compareMigrationNames(a.name, b.name));
  return { getMigrations: async () => list };
}

/**
 * Migrations from a folder: `NNNN_name.sql` for both dialects, or `NNNN_name.sqlite.sql` plus
 * `NNNN_name.postgres.sql` where they differ. Other files are ignored. Read on every
 * `getMigrations()` call.
 */
export function folderMigrations(dir: string): MigrationSource {
  return {
    async getMigrations() {
      let files: string[];
      try {
        files = (await readdir(dir, { withFileTypes: true }))
          .filter((f) => f.isFile() && f.name.endsWith('.sql'))
          .map((f) => f.name)
          .sort();
      } catch (cause) {
        throw new MigrationError('E_MIGRATION_SOURCE', `cannot read migrations folder ${dir}`, {
          cause,
          details: { dir },
        });
      }
      const byName = new Map<string, { sql?: string; sqlite?: string; postgres?: string }>();
      for (const file of files) {
        const m = /^(.*?)(?:\.(sqlite|postgres))?\.sql$/.exec(file)!;
        const name = m[1]!;
        checkName(name);
        const entry = byName.get(name) ?? {};
        const text = await readFile(join(dir, file), 'utf8');
        if (m[2] === 'sqlite') entry.sqlite = text;
        else if (m[2] === 'postgres') entry.postgres = text;
        else entry.sql = text;
        byName.set(name, entry);
      }
      const out: NamedMigration[] = [];
      for (const [name, e] of byName) {
        if (e.sql !== undefined && (e.sqlite !== undefined || e.postgres !== undefined)) {
          throw new MigrationError(
            'E_MIGRATION_SOURCE',
            `${name} has both ${name}.sql and a dialect file (.sqlite.sql / .postgres.sql): keep one form`,
            { details: { name } },
          );
        }
        if (e.sql !== undefined) out.push(fromSql(name, { sql: e.sql }));
        else if (e.sqlite !== undefined && e.postgres !== undefined) {
          out.push(fromSql(name, { sqlite: e.sqlite, postgres: e.postgres }));
        } else {
          throw new MigrationError(
            'E_MIGRATION_SOURCE',
            `${name} needs both .sqlite.sql and .postgres.sql (or one .sql)`,
            { details: { name } },
          );
        }
      }
      return out.sort((a, b) => compareMigrationNames(a.name, b.name));
    },
  };
}
