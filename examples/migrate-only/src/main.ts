// Demo: migrate a SQLite file to v1, then v2, show the status, then try a broken v3 and show
// that it was rolled back whole (the table its first statement created does not exist).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCrystalMathError } from '@crystalmath/core';
import { Migrator, openDatabase } from '@crystalmath/migrate';
import { sql } from 'kysely';
import { schema, v1, v2, v3Broken } from './notes-schema.js';

const dir = await mkdtemp(join(tmpdir(), 'cm-migrate-only-'));
const db = await openDatabase(join(dir, 'notes.db'));
try {
  for (const [label, record] of [
    ['v1', v1],
    ['v2', v2],
  ] as const) {
    const { results } = await new Migrator({ db, source: schema(record) }).migrate();
    console.log(`${label}: applied ${results.map((r) => r.migrationName).join(', ') || 'nothing'}`);
  }
  const again = await new Migrator({ db, source: schema(v2) }).migrate();
  console.log(`v2 again: applied ${again.results.length} (already up to date)`);

  try {
    await new Migrator({ db, source: schema(v3Broken) }).migrate();
  } catch (err) {
    if (!isCrystalMathError(err, 'E_MIGRATION_FAILED')) throw err;
    console.log(`v3: refused, ${err.message}`);
  }
  const runs = await sql<{
    n: number;
  }>`select count(*) as n from sqlite_master where name = 'runs'`.execute(db);
  console.log(`table "runs" exists after the failed migration: ${runs.rows[0]?.n === 1}`);

  console.log('status:');
  for (const m of await new Migrator({ db, source: schema(v3Broken) }).status()) {
    console.log(`  ${m.name.padEnd(26)} ${m.state}`);
  }
} finally {
  await db.destroy();
  await rm(dir, { recursive: true, force: true });
}
