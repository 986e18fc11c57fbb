// `crystalmath init`: writes a starter crystalmath.config.yaml (one local target, commented
// examples of an SSH host and a SLURM cluster), refusing to overwrite one without --force.

import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { CliError } from '../cli-error.js';
import type { CommandContext } from '../command-context.js';

/** The file `crystalmath init` writes. */
export const STARTER_CONFIG = `# crystalmath configuration: where the queue lives and where jobs may run.
# Reference: docs/cli.md. Paths are relative to this file.
store: crystalmath.db          # a SQLite file; or  store: { postgres: postgres://user@host/db }
defaultTarget: local

targets:
  local:
    type: local
    root: .crystalmath/runs    # one folder per job
    maxConcurrent: 2

  # lab:                       # an SSH host: an alias from ~/.ssh/config, or host/port/user
  #   type: ssh
  #   ssh: { host: lab-server }
  #   root: crystalmath-runs   # relative to the login directory
  #   maxConcurrent: 4

  # cluster:                   # a SLURM cluster, reached over SSH (omit ssh: on a login node)
  #   type: slurm
  #   ssh: { host: login.cluster.example.org, user: alice }
  #   root: /scratch/alice/crystalmath
  #   maxConcurrent: 50
  #   pollIntervalMs: 30000    # one squeue per 30 s: be kind to the cluster
  #   defaults: { partition: debug, walltimeSeconds: 3600, cpusPerTask: 4 }

  # gridengine:                # a Grid Engine cluster, reached over SSH (omit ssh: on a submit host)
  #   type: sge
  #   ssh: { host: login.gridengine.example.org, user: alice }
  #   root: /scratch/alice/crystalmath
  #   pollIntervalMs: 30000    # one qstat per 30 s
  #   defaults: { partition: all.q, parallelEnvironment: smp, walltimeSeconds: 3600 }
`;

/** Registers `init`. */
export function registerInitCommand(program: Command, ctx: CommandContext): void {
  program
    .command('init')
    .description('write a starter crystalmath.config.yaml in the current directory')
    .option('--force', 'overwrite an existing file')
    .action(async (flags: { force?: boolean }) => {
      const file = join(ctx.io.cwd, 'crystalmath.config.yaml');
      if (existsSync(file) && !flags.force) {
        throw new CliError('E_EXISTS', `init: ${file} exists (use --force to overwrite)`);
      }
      await writeFile(file, STARTER_CONFIG, 'utf8');
      ctx.emit({ file }, () => ctx.out(`wrote ${file}`));
    });
}
