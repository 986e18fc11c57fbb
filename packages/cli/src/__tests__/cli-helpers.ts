// Helpers for driving the real CLI in-process: captured streams, a temporary project with a
// config file, and a `crystalmath` function that returns exit code and output.

import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CliIo } from '../cli-io.js';
import { main } from '../main.js';

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `crystalmath <args>` in `cwd` and captures everything it prints. */
export async function crystalmath(
  cwd: string,
  args: readonly string[],
  options: { signal?: AbortSignal; env?: Record<string, string> } = {},
): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    cwd,
    env: { ...options.env },
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

/** A temporary project folder with a crystalmath.config.yaml. */
export async function project(config: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cm-cli-'));
  await writeFile(join(dir, 'crystalmath.config.yaml'), config);
  return dir;
}

/** The config of most tests: one local target, fast scheduler intervals. */
export const LOCAL_CONFIG = `store: state/queue.db
defaultTarget: local
scheduler: { tickMs: 50, pollIntervalMs: 100 }
targets:
  local: { type: local, root: runs, maxConcurrent: 3 }
`;

export async function until<T>(
  fn: () => Promise<T | undefined>,
  timeoutMs = 20_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
