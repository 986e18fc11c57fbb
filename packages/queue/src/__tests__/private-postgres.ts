// A PostgreSQL server of the test's own (initdb + pg_ctl as the postgres user, its own port and
// socket folder), for fault tests that stop, restart or terminate it. Never the shared testbed
// server: other tests use that one.

import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '@crystalmath/testkit';
import pg from 'pg';

const run = promisify(execFile);

/** Debian's server binaries (postgresql-NN), or null when PostgreSQL is not installed. */
export function postgresBin(): string | null {
  try {
    const v = readdirSync('/usr/lib/postgresql').sort().at(-1);
    return v ? `/usr/lib/postgresql/${v}/bin` : null;
  } catch {
    return null;
  }
}

export interface PrivatePostgres {
  readonly port: number;
  /** Superuser URL with a password (scram-sha-256), database `postgres`. */
  readonly connectionString: string;
  /** The password, to check that it appears nowhere. */
  readonly password: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** `pg_ctl restart -m fast`. */
  restart(): Promise<void>;
  /** pg_terminate_backend on every backend of `database` but the caller's; returns how many. */
  terminateBackends(database: string): Promise<number>;
  destroy(): Promise<void>;
}

export async function privatePostgres(): Promise<PrivatePostgres> {
  const bin = postgresBin();
  if (!bin) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql');
  const dir = mkdtempSync(join(tmpdir(), 'cm-pg-'));
  chmodSync(dir, 0o777);
  const data = join(dir, 'data');
  const port = await freePort();
  const password = `pw-${Math.random().toString(36).slice(2)}`;
  const pwFile = join(dir, 'pw');
  await run('sh', ['-c', 'umask 022; printf %s "$1" > "$2"', 'sh', password, pwFile]);
  const asPostgres = (cmd: string, args: string[]) =>
    run('runuser', ['-u', 'postgres', '--', `${bin}/${cmd}`, ...args], { timeout: 60_000 });
  await asPostgres('initdb', [
    '-D',
    data,
    '-U',
    'postgres',
    '--auth=scram-sha-256',
    `--pwfile=${pwFile}`,
    '--no-sync',
  ]);
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40`;
  const ctl = (...args: string[]) =>
    asPostgres('pg_ctl', ['-D', data, '-o', opts, '-l', join(dir, 'log'), '-w', ...args]);
  await ctl('start');
  const connectionString = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
  return {
    port,
    connectionString,
    password,
    stop: async () => {
      await ctl('-m', 'fast', 'stop');
    },
    start: async () => {
      await ctl('start');
    },
    restart: async () => {
      await ctl('-m', 'fast', 'restart');
    },
    terminateBackends: async (database) => {
      const c = new pg.Client({ connectionString });
      c.on('error', () => undefined);
      await c.connect();
      try {
        const r = await c.query(
          'select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()',
          [database],
        );
        return r.rowCount ?? 0;
      } finally {
        await c.end();
      }
    },
    destroy: async () => {
      await ctl('-m', 'immediate', 'stop').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Creates a database on the server and returns its URL. */
export async function createDatabase(admin: string, name: string): Promise<string> {
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  try {
    await c.query(`create database ${name}`);
  } finally {
    await c.end();
  }
  const u = new URL(admin);
  u.pathname = `/${name}`;
  return u.toString();
}
