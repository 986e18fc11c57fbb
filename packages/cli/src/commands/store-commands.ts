// `crystalmath store check` and `crystalmath store backup <dest>`: maintenance of the configured
// store. SQLite files are checked and copied here (integrity_check, online backup API);
// PostgreSQL has its own tools, which these commands name.

import { resolve } from 'node:path';
import { backupSqliteStore, checkSqliteStore } from '@crystalmath/queue';
import type { Command } from 'commander';
import { CliError } from '../cli-error.js';
import type { CommandContext } from '../command-context.js';

const PG_BACKUP =
  'PostgreSQL store: take backups with pg_dump, e.g. `pg_dump -Fc -f crystalmath.dump "$URL"` (add `-n <schema>` for a queue in its own schema); restore with pg_restore into an empty database while no scheduler runs.';
const PG_CHECK =
  'PostgreSQL store: the server checks its own pages (enable data checksums at initdb; `pg_amcheck` verifies indexes and tables).';

/** Registers `store check` and `store backup`. */
export function registerStoreCommands(program: Command, ctx: CommandContext): void {
  const store = program.command('store').description('check or back up the queue store');
  store
    .command('check')
    .description('run an integrity check of the store (SQLite: PRAGMA integrity_check)')
    .action(async () => {
      const config = await ctx.config();
      if (config.store.kind !== 'sqlite') {
        ctx.emit({ kind: 'postgres', guidance: PG_CHECK }, () => ctx.out(PG_CHECK));
        return;
      }
      const r = checkSqliteStore(config.store.path);
      ctx.emit(r, () => {
        if (r.ok) ctx.out(`${r.path}: ok`);
        else for (const p of r.problems) ctx.out(`${r.path}: ${p}`);
      });
      if (!r.ok) {
        throw new CliError(
          'E_STORE',
          `${r.path} is damaged (${r.problems.length} problem(s)); restore it from a backup (docs/operations.md)`,
        );
      }
    });
  store
    .command('backup')
    .description('copy the store while it is in use (SQLite online backup; PostgreSQL: pg_dump)')
    .argument('<dest>', 'the file to write (must not exist)')
    .action(async (dest: string) => {
      const config = await ctx.config();
      if (config.store.kind !== 'sqlite') {
        ctx.emit({ kind: 'postgres', guidance: PG_BACKUP }, () => ctx.out(PG_BACKUP));
        return;
      }
      const target = resolve(ctx.io.cwd, dest);
      const pages = await backupSqliteStore(config.store.path, target);
      ctx.emit({ path: config.store.path, dest: target, pages }, () =>
        ctx.out(`backed up to ${target} (${pages} pages)`),
      );
    });
}
