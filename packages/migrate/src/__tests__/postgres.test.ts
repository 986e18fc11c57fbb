import { randomBytes } from 'node:crypto';
import { requireService } from '@crystalmath/testkit';
import { sql } from 'kysely';
import pg from 'pg';
import { describe } from 'vitest';
import { migratorSuite, type TestDatabase } from './migrator-suite.js';

const service = requireService('postgres');

/** A scratch database per test, dropped afterwards. */
async function postgresDb(): Promise<TestDatabase> {
  const name = `cm_mig_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: service!.connectionString });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(service!.connectionString);
  url.pathname = `/${name}`;
  return {
    target: url.toString(),
    dump: async (db) =>
      JSON.stringify(
        (
          await sql`select table_name, column_name, data_type, is_nullable, column_default from information_schema.columns
            where table_schema = 'public' order by table_name, ordinal_position`.execute(db)
        ).rows.concat(
          (
            await sql`select indexname, indexdef from pg_indexes where schemaname = 'public' order by indexname`.execute(
              db,
            )
          ).rows,
        ),
      ),
    cleanup: async () => {
      const c = new pg.Client({ connectionString: service!.connectionString });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
    holdLock: async () => {
      const c = new pg.Client({ connectionString: url.toString() });
      await c.connect();
      await c.query('select pg_advisory_lock($1)', [0x63_72_79_73]);
      return async () => {
        await c.end();
      };
    },
  };
}

describe.skipIf(!service)('PostgreSQL', () => {
  migratorSuite('PostgreSQL', postgresDb);
});
