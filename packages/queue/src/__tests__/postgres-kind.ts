// The PostgreSQL entry of the parameterized store list: one scratch database per test file
// (created on first use, dropped after the file), one fresh schema per store. Unavailable (the
// suites skip it) when the testbed's PostgreSQL is not up; under CI requireService throws.

import { randomBytes } from 'node:crypto';
import { requireService } from '@crystalmath/testkit';
import pg from 'pg';
import { afterAll } from 'vitest';
import { postgresStore } from '../store/postgres/postgres-store.js';
import type { StoreKind } from './helpers.js';

const service = requireService('postgres');

/** A connection string to another database of the same server. */
export function withDatabase(connectionString: string, database: string): string {
  const u = new URL(connectionString);
  u.pathname = `/${database}`;
  return u.toString();
}

export interface ScratchDatabase {
  readonly connectionString: string;
  drop(): Promise<void>;
}

/** Creates an empty database on the testbed server; `drop()` removes it (closing stragglers). */
export async function scratchDatabase(admin: string): Promise<ScratchDatabase> {
  const name = `cm_queue_test_${process.pid}_${randomBytes(3).toString('hex')}`;
  const run = async (sql: string): Promise<void> => {
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await run(`create database ${name}`);
  return {
    connectionString: withDatabase(admin, name),
    drop: () => dropDatabase(name, run),
  };
}

/** How long dropping a scratch database may keep being refused before the test file fails. */
const DROP_TIMEOUT_MS = 30_000;

/**
 * `drop database … with (force)`, retried while the server refuses it for a session it may not
 * end (one of another role, such as an autovacuum worker, refuses FORCE with 42501, until it
 * leaves) or one still in use (55006); any other error, or a refusal past DROP_TIMEOUT_MS, fails.
 */
async function dropDatabase(name: string, run: (sql: string) => Promise<void>): Promise<void> {
  const deadline = Date.now() + DROP_TIMEOUT_MS;
  for (let pause = 50; ; pause = Math.min(pause * 2, 1_000)) {
    try {
      await run(`drop database if exists ${name} with (force)`);
      return;
    } catch (error) {
      const code = (error as { code?: string }).code;
      if ((code !== '42501' && code !== '55006') || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
}

let scratch: Promise<ScratchDatabase> | null = null;

afterAll(async () => {
  const s = scratch;
  scratch = null;
  if (s) await (await s).drop();
});

export const postgresKind: StoreKind = {
  name: 'postgres',
  unavailable: service ? null : 'the testbed PostgreSQL is not up',
  async make() {
    if (!service) throw new Error('PostgreSQL testbed service missing');
    scratch ??= scratchDatabase(service.connectionString);
    const { connectionString } = await scratch;
    const schema = `q_${randomBytes(4).toString('hex')}`;
    return {
      spec: { kind: 'postgres', connectionString, schema },
      factory: (extra = {}) => postgresStore({ connectionString, schema, poolSize: 4, ...extra }),
      cleanup: async () => {
        const c = new pg.Client({ connectionString });
        await c.connect();
        try {
          await c.query(`drop schema if exists ${schema} cascade`);
        } finally {
          await c.end();
        }
      },
    };
  },
};
