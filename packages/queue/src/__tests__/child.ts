// Spawning the fixture processes of the multi-process tests (crash, two schedulers, event
// follower). Children import the BUILT package: `pnpm --filter @crystalmath/queue build` first
// (turbo runs the build before the tests).

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { StoreSpec } from './helpers.js';

export const DIST = fileURLToPath(new URL('../../dist/index.js', import.meta.url));
const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

export function assertBuilt(): void {
  if (!existsSync(DIST)) {
    throw new Error(
      `[queue tests] ${DIST} is missing: run "pnpm --filter @crystalmath/queue build" first`,
    );
  }
}

export interface Child {
  readonly proc: ChildProcess;
  /** Resolves when the child printed `line` (e.g. "ready"). */
  waitFor(line: string): Promise<void>;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
  /** Tells a `waitForGo` child to start. */
  go(): void;
}

export function spawnFixture(script: string, config: Record<string, unknown>): Child {
  const proc = spawn(process.execPath, [FIXTURES + script], {
    env: { ...process.env, CM_CHILD: JSON.stringify({ dist: DIST, ...config }) },
    stdio: [config.waitForGo ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters: { line: string; resolve: () => void }[] = [];
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of [...waiters]) {
      if (out.split('\n').includes(w.line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }));
  });
  return {
    proc,
    exit,
    stdout: () => out,
    stderr: () => err,
    go: () => {
      proc.stdin?.write('go\n');
    },
    waitFor: (line) =>
      new Promise<void>((resolve, reject) => {
        if (out.split('\n').includes(line)) return resolve();
        waiters.push({ line, resolve });
        void exit.then(({ code, signal }) =>
          reject(
            new Error(`child exited (${code ?? signal}) before "${line}": ${err.slice(-2000)}`),
          ),
        );
      }),
  };
}

export interface SchedulerChildConfig {
  readonly store: StoreSpec;
  readonly journal: string;
  readonly targets: Readonly<Record<string, number>>;
  readonly ownerId: string;
  readonly leaseMs: number;
  readonly durationMs: number;
  readonly mode: 'run' | 'drain';
  readonly produce?: boolean;
  readonly produceEveryMs?: number;
  readonly produceMax?: number;
  readonly runForMs?: number;
  readonly drainTimeoutMs?: number;
  /** Load the package, print "loaded", then wait for a line on stdin before opening the queue. */
  readonly waitForGo?: boolean;
}

export function spawnScheduler(config: SchedulerChildConfig): Child {
  return spawnFixture('scheduler-child.mjs', { ...config });
}

export interface JournalEntry {
  readonly key: string;
  readonly name: string;
  readonly at: number;
  readonly pid: number;
}

/** Job id of a runner key `cm-<store>-<id>-a<attempt>`. */
export function jobIdOfKey(key: string): string {
  const m = /^cm-[0-9a-f]+-([0-9]+)-a[0-9]+$/.exec(key);
  if (!m) throw new Error(`not a queue job key: ${key}`);
  return m[1]!;
}

/** Keys (or job ids) that occur more than once. */
export function duplicates(values: readonly string[]): string[] {
  const seen = new Set<string>();
  const dup = new Set<string>();
  for (const v of values) (seen.has(v) ? dup : seen).add(v);
  return [...dup];
}

/**
 * The most jobs of each target the runner ran at once, from the journal: a job runs from its
 * submission `at` for `durationMs`, and the queue frees its slot only after seeing it end, so
 * this can never exceed the target's limit if the queue keeps it.
 */
export function maxConcurrency(
  entries: readonly JournalEntry[],
  durationMs: number,
): Record<string, number> {
  const byTarget = new Map<string, number[]>();
  for (const e of entries) {
    const target = e.name.split('.')[0]!;
    byTarget.set(target, [...(byTarget.get(target) ?? []), e.at]);
  }
  const out: Record<string, number> = {};
  for (const [target, starts] of byTarget) {
    starts.sort((a, b) => a - b);
    let max = 0;
    let lo = 0;
    for (let hi = 0; hi < starts.length; hi++) {
      while (starts[lo]! + durationMs <= starts[hi]!) lo++;
      max = Math.max(max, hi - lo + 1);
    }
    out[target] = max;
  }
  return out;
}

export const envInt = (name: string, fallback: number): number => {
  const v = process.env[name];
  const n = v === undefined ? Number.NaN : Number(v);
  return Number.isInteger(n) && n > 0 ? n : fallback;
};
