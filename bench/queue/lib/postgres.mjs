// Scratch PostgreSQL databases for the PostgreSQL systems: one fresh database per measured
// session, created from the testbed's connection string and dropped afterwards.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';

const ENV_JSON = process.env.CM_TESTBED_ENV ?? '/tmp/crystalmath-testbed/env.json';

/**
 * The testbed's PostgreSQL connection string (env `CM_BENCH_POSTGRES_URL` wins), or an
 * `{ error }` saying why there is none.
 */
export function postgresUrl() {
  if (process.env.CM_BENCH_POSTGRES_URL) return { url: process.env.CM_BENCH_POSTGRES_URL };
  if (!existsSync(ENV_JSON)) return { error: `no testbed (${ENV_JSON} missing)` };
  try {
    const env = JSON.parse(readFileSync(ENV_JSON, 'utf8'));
    const url = env?.postgres?.connectionString;
    if (typeof url !== 'string') return { error: `${ENV_JSON} has no postgres.connectionString` };
    return { url };
  } catch (error) {
    return { error: `cannot read ${ENV_JSON}: ${error.message}` };
  }
}

/** The same URL with another database name. */
export function withDatabase(url, database) {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * Opens an admin connection and returns `{ create, dropAll, close }`: `create(prefix)` makes a
 * fresh database and returns its URL; `dropAll()` drops every database it created.
 */
export async function scratchDatabases(url) {
  const { default: pg } = await import('pg');
  const admin = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  await admin.connect();
  const created = [];
  return {
    async create(prefix) {
      const name = `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
      // The name is generated here from [a-z0-9_] only, so quoting it as an identifier is safe.
      await admin.query(`CREATE DATABASE "${name}"`);
      created.push(name);
      return withDatabase(url, name);
    },
    async dropAll() {
      for (const name of created.splice(0)) {
        await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => {});
      }
    },
    async close() {
      await admin.end();
    },
  };
}

/** True when a PostgreSQL server answers at `url` within 3 s. */
export async function postgresUp(url) {
  try {
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
    await client.connect();
    await client.query('select 1');
    await client.end();
    return true;
  } catch {
    return false;
  }
}
