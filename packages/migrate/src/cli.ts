#!/usr/bin/env node
// crystalmath-migrate: status, plan, up and baseline for a folder of NNNN_name.sql files, on an
// SQLite file or a PostgreSQL URL. Exit codes: 0 ok, 1 migration error, 2 usage error.

import { parseArgs } from 'node:util';
import { isCrystalMathError } from '@crystalmath/core';
import { Migrator } from './migrator.js';
import { openDatabase } from './open-database.js';
import { folderMigrations } from './sources.js';

const USAGE = `usage: crystalmath-migrate <status|plan|up|baseline> --db <file|postgres://url> --dir <folder> [--to NAME] [--table NAME] [--json]`;

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    process.stderr.write(`crystalmath-migrate: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const command = positionals[0];
  if (
    !command ||
    !['status', 'plan', 'up', 'baseline'].includes(command) ||
    !values.db ||
    !values.dir
  ) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  if (command === 'baseline' && !values.to) {
    process.stderr.write('crystalmath-migrate: baseline needs --to <migration name>\n');
    return 2;
  }
  const db = await openDatabase(values.db);
  const json = values.json === true;
  const print = (human: string, data: unknown): void => {
    process.stdout.write(json ? `${JSON.stringify(data)}\n` : `${human}\n`);
  };
  try {
    const migrator = new Migrator({
      db,
      source: folderMigrations(values.dir),
      ...(values.table ? { table: values.table } : {}),
      logger: json
        ? undefined
        : (e) => {
            if (e.type === 'migration:success')
              process.stderr.write(`applied ${e.name} (${e.durationMs} ms)\n`);
            if (e.type === 'lock:wait') process.stderr.write('waiting for the migration lock...\n');
          },
    } as ConstructorParameters<typeof Migrator>[0]);
    if (command === 'status') {
      const rows = await migrator.status();
      print(
        rows
          .map((r) => `${r.state.padEnd(8)} ${r.name}${r.appliedAt ? `  ${r.appliedAt}` : ''}`)
          .join('\n') || '(no migrations)',
        rows,
      );
    } else if (command === 'plan') {
      const names = await migrator.plan();
      print(names.length ? names.join('\n') : 'up to date', names);
    } else if (command === 'up') {
      const { results } = await migrator.migrate();
      print(results.length ? `${results.length} migration(s) applied` : 'up to date', results);
    } else {
      const names = await migrator.baseline(values.to!);
      print(`baselined ${names.length} migration(s) without running them`, names);
    }
    return 0;
  } catch (e) {
    const code = isCrystalMathError(e) ? e.code : 'E_UNEXPECTED';
    if (json)
      process.stdout.write(
        `${JSON.stringify({ error: { code, message: (e as Error).message } })}\n`,
      );
    else process.stderr.write(`crystalmath-migrate: ${code}: ${(e as Error).message}\n`);
    return 1;
  } finally {
    await db.destroy();
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      db: { type: 'string' },
      dir: { type: 'string' },
      to: { type: 'string' },
      table: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`crystalmath-migrate: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
