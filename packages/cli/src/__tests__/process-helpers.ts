// Spawning the built `crystalmath` binary as a real process, for signal and terminal tests.

import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect } from 'vitest';
import { until } from './cli-helpers.js';

export const BIN = fileURLToPath(new URL('../../dist/bin.js', import.meta.url));

export interface Spawned {
  readonly child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `node dist/bin.js <args>` in `cwd`, collecting stdout and stderr together. */
export function spawnCli(cwd: string, args: readonly string[]): Spawned {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => out, exited };
}

/**
 * Starts `crystalmath run` in `cwd` (the scheduler as a user runs it, in its own process) and
 * resolves once it printed `scheduler started`; `timeoutMs` is generous for a loaded machine.
 */
export async function startScheduler(cwd: string, timeoutMs = 15_000): Promise<Spawned> {
  const run = spawnCli(cwd, ['run']);
  await until(
    async () => (run.output().includes('scheduler started') ? true : undefined),
    timeoutMs,
    'scheduler started',
  );
  return run;
}

/**
 * Called in a `describe` block: before its tests, a project from `makeProject` with
 * `crystalmath run` in its own process (two SQLite connections in one thread would block each
 * other: better-sqlite3 waits synchronously); after them, the scheduler stopped with SIGTERM,
 * which must exit 0. `dir()` is the project folder.
 */
export function schedulerProcess(makeProject: () => Promise<string>): { dir(): string } {
  let dir: string | undefined;
  let run: Spawned | undefined;
  beforeAll(async () => {
    dir = await makeProject();
    run = await startScheduler(dir);
  });
  afterAll(async () => {
    if (run === undefined) return;
    run.child.kill('SIGTERM');
    expect((await run.exited).code, run.output()).toBe(0);
  });
  return {
    dir() {
      if (dir === undefined) throw new Error('schedulerProcess: the project is not made yet');
      return dir;
    },
  };
}
