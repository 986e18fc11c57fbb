#!/usr/bin/env node
// crystalmath-migrate: status, plan, up and baseline for a folder of NNNN_name.sql files, on an
// SQLite file or a PostgreSQL URL. Exit codes: 0 ok, 1 migration error, 2 usage error,
// 3 `plan --check` found pending migrations.

import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { isCrystalMathError } from '@crystalmath/core';
import type { AnyKysely } from './migration.js';
import { Migrator, type MigratorOptions } from './migrator.js';
import { isPostgresUrl, openDatabase } from './open-database.js';
import { folderMigrations } from './sources.js';

const USAGE = `usage: crystalmath-migrate <status|plan|up|baseline> --db <file|postgres://url> --dir <folder> [options]

  status                 every migration: applied, pending, changed or unknown
  plan                   the migrations "up" would apply, in order
  up                     apply them, each in its own transaction
  baseline --to NAME     record migrations up to NAME as applied without running them
                         (adopting an existing database; only on an empty history)

options:
  --db <file|url>        SQLite file or postgres:// URL
  --dir <folder>         NNNN_name.sql files (or NNNN_name.sqlite.sql + NNNN_name.postgres.sql)
  --table <name>         history table (default crystalmath_migrations)
  --lock-timeout <ms>    longest wait for the migration lock (default 60000)
  --check                with plan: exit 3 if anything is pending
  --json                 machine-readable output on stdout
  -h, --help             this text

exit codes: 0 ok, 1 migration error (its E_MIGRATION_* code is printed), 2 usage error,
3 plan --check found pending migrations`;

const COMMANDS = ['status', 'plan', 'up', 'baseline'] as const;

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      db: { type: 'string' },
      dir: { type: 'string' },
      to: { type: 'string' },
      table: { type: 'string' },
      'lock-timeout': { type: 'string' },
      check: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

function usage(message?: string): number {
  process.stderr.write(`${message ? `crystalmath-migrate: ${message}\n` : ''}${USAGE}\n`);
  return 2;
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    return usage((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const command = positionals[0] as (typeof COMMANDS)[number] | undefined;
  if (!command || !COMMANDS.includes(command)) {
    return usage(command ? `unknown command ${command}` : 'a command is needed');
  }
  if (positionals.length > 1) return usage(`unexpected argument ${positionals[1]}`);
  if (!values.db || !values.dir) return usage('--db and --dir are needed');
  if (command === 'baseline' && !values.to) return usage('baseline needs --to <migration name>');
  let lockTimeoutMs: number | undefined;
  if (values['lock-timeout'] !== undefined) {
    lockTimeoutMs = Number(values['lock-timeout']);
    if (!Number.isFinite(lockTimeoutMs) || lockTimeoutMs < 0) {
      return usage('--lock-timeout takes milliseconds');
    }
  }
  const json = values.json === true;
  const print = (human: string, data: unknown): void => {
    process.stdout.write(json ? `${JSON.stringify(data)}\n` : `${human}\n`);
  };
  const fail = (e: unknown): number => {
    const code = isCrystalMathError(e) ? e.code : 'E_UNEXPECTED';
    const message = (e as Error)?.message ?? String(e);
    if (json) process.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
    else process.stderr.write(`crystalmath-migrate: ${code}: ${message}\n`);
    return 1;
  };

  // status and plan only read: they never create a missing SQLite file (nor switch journal mode).
  const readOnly = command === 'status' || command === 'plan';
  const missing = !isPostgresUrl(values.db) && values.db !== ':memory:' && !existsSync(values.db);
  let db: AnyKysely;
  try {
    db = await openDatabase(readOnly && missing ? ':memory:' : values.db, { wal: false });
  } catch (e) {
    return fail(e);
  }
  if (readOnly && missing && !json) {
    process.stderr.write(`(${values.db} does not exist yet: every migration is pending)\n`);
  }
  const ac = new AbortController();
  const onSignal = (): void => {
    if (ac.signal.aborted) process.exit(130);
    process.stderr.write('stopping after the current migration (again to quit now)\n');
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const options: MigratorOptions = {
      db,
      source: folderMigrations(values.dir),
      ...(values.table ? { table: values.table } : {}),
      ...(lockTimeoutMs !== undefined ? { lockTimeoutMs } : {}),
      ...(json
        ? {}
        : {
            logger: (e) => {
              if (e.type === 'migration:success')
                process.stderr.write(`applied ${e.name} (${e.durationMs} ms)\n`);
              if (e.type === 'migration:skip') process.stderr.write(`${e.name}: ${e.reason}\n`);
              if (e.type === 'lock:wait')
                process.stderr.write('waiting for the migration lock...\n');
            },
          }),
    };
    const migrator = new Migrator(options);
    if (command === 'status') {
      const rows = await migrator.status();
      print(
        rows
          .map(
            (r) =>
              `${r.state.padEnd(8)} ${r.name}${r.appliedAt ? `  ${r.appliedAt}` : ''}${r.baseline ? '  (baseline)' : ''}`,
          )
          .join('\n') || '(no migrations)',
        rows,
      );
    } else if (command === 'plan') {
      const names = await migrator.plan();
      print(names.length ? names.join('\n') : 'up to date', names);
      if (values.check && names.length > 0) return 3;
    } else if (command === 'up') {
      const { results } = await migrator.migrate({ signal: ac.signal });
      print(results.length ? `${results.length} migration(s) applied` : 'up to date', results);
    } else {
      const names = await migrator.baseline(values.to!);
      print(`baselined ${names.length} migration(s) without running them`, names);
    }
    return 0;
  } catch (e) {
    return fail(e);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await db.destroy();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`crystalmath-migrate: ${(e as Error)?.message ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
