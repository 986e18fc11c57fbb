// The same acceptance suite on the testbed's PostgreSQL: one scratch database for this file,
// one scratch schema per test database, all dropped afterwards. Skipped (with a note) when the
// testbed is not up; under CI a missing PostgreSQL fails the run.
import { requireService } from '@crystalmath/testkit';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeMigrations, Migrator } from '../index.js';
import { crashTest, raceTest } from './concurrency-suite.js';
import { type MakeDb, type PostgresScratch, postgresScratch } from './helpers.js';
import { migratorSuite } from './migrator-suite.js';

const service = requireService('postgres');
const rounds = Number(process.env.CM_MIGRATE_RACE_ROUNDS ?? 20);
const trials = Number(process.env.CM_MIGRATE_CRASH_TRIALS ?? 50);

describe.skipIf(!service)('PostgreSQL', () => {
  let scratch: PostgresScratch | undefined;
  beforeAll(async () => {
    scratch = await postgresScratch(service!.connectionString);
  });
  afterAll(async () => {
    await scratch?.drop();
  });
  const makeDb: MakeDb = () => scratch!.makeDb();

  migratorSuite('PostgreSQL', makeDb);
  raceTest('PostgreSQL', makeDb, rounds);
  crashTest('PostgreSQL', makeDb, trials);

  it('migrators of different history tables do not wait for each other (the advisory lock is per schema and table)', async () => {
    const tdb = await makeDb();
    try {
      const release = await tdb.holdLock(); // the lock of crystalmath_migrations
      try {
        const db = tdb.open();
        const { results } = await new Migrator({
          db,
          table: 'app_migrations',
          lockTimeoutMs: 500,
          source: codeMigrations({ '0001_app': { sql: 'create table app (id integer)' } }),
        }).migrate();
        expect(results.map((r) => r.status)).toEqual(['Success']);
        expect((await sql`select count(*)::int as n from app_migrations`.execute(db)).rows).toEqual(
          [{ n: 1 }],
        );
      } finally {
        await release();
      }
    } finally {
      await tdb.cleanup();
    }
  });
});
