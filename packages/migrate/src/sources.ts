// Migration sources: a record of code migrations, or a folder of NNNN_name.sql files. Both
// give each migration a SHA-256 checksum of its text, so an edited migration is detected.

import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'kysely';
import type {
  AnyKysely,
  Migration,
  MigrationContext,
  MigrationSource,
  NamedMigration,
} from './migration.js';
import { MigrationError } from './migration-error.js';
import { splitSqlStatements } from './split-sql.js';

export type SqlMigration =
  | { readonly sql: string }
  | { readonly sqlite: string; readonly postgres: string };
export type CodeMigration = Migration | SqlMigration;

const NAME = /^[0-9]{4,}_[A-Za-z0-9_.-]+$/;

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function sqlFor(m: SqlMigration, dialect: MigrationContext['dialect']): string {
  return 'sql' in m ? m.sql : m[dialect];
}

/** A migration that runs SQL text statement by statement, on the migration's transaction. */
function fromSql(name: string, m: SqlMigration): NamedMigration {
  const text = 'sql' in m ? m.sql : `-- sqlite\n${m.sqlite}\n-- postgres\n${m.postgres}`;
  return {
    name,
    checksum: sha256(text),
    async up(db: AnyKysely, ctx: MigrationContext) {
      for (const stmt of splitSqlStatements(sqlFor(m, ctx.dialect))) {
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

/**
 * Migrations written in code, applied in name order. A value is `{ up }`, `{ sql }`, or
 * `{ sqlite, postgres }` for SQL that differs by dialect.
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
    if ('up' in m) {
      return {
        name,
        checksum: sha256(m.up.toString()),
        up: (db, ctx) => m.up(db, ctx),
        ...(m.disableForeignKeys ? { disableForeignKeys: true } : {}),
      };
    }
    return fromSql(name, m);
  });
  list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { getMigrations: async () => list };
}

/**
 * Migrations from a folder: `NNNN_name.sql` for both dialects, or `NNNN_name.sqlite.sql` plus
 * `NNNN_name.postgres.sql` where they differ. Other files are ignored.
 */
export function folderMigrations(dir: string): MigrationSource {
  return {
    async getMigrations() {
      let files: string[];
      try {
        files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
      } catch (cause) {
        throw new MigrationError('E_MIGRATION_SOURCE', `cannot read migrations folder ${dir}`, {
          cause,
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
        if (e.sql !== undefined) out.push(fromSql(name, { sql: e.sql }));
        else if (e.sqlite !== undefined && e.postgres !== undefined) {
          out.push(fromSql(name, { sqlite: e.sqlite, postgres: e.postgres }));
        } else {
          throw new MigrationError(
            'E_MIGRATION_SOURCE',
            `${name} needs both .sqlite.sql and .postgres.sql (or one .sql)`,
          );
        }
      }
      return out.sort((a, b) => (a.name < b.name ? -1 : 1));
    },
  };
}
