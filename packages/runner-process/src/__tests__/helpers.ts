// Shared helpers for this package's tests: a LocalRunner in a scratch home, a transport
// observer that counts exec calls, and checks on real processes through /proc.

import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalTransport, type RunnerHandle, type Transport } from '@crystalmath/core';
import { ProcessRunner, type ProcessRunnerOptions } from '../index.js';

export interface Scratch {
  readonly home: string;
  readonly transport: LocalTransport;
  runner(options?: Partial<ProcessRunnerOptions>): ProcessRunner;
  dispose(): Promise<void>;
}

/** A scratch home with a LocalTransport over it; `runner()` makes runners rooted at `jobs`. */
export async function scratch(prefix = 'cm-rp-'): Promise<Scratch> {
  const home = await mkdtemp(join(tmpdir(), prefix));
  const transport = new LocalTransport({ home });
  return {
    home,
    transport,
    runner: (options = {}) =>
      new ProcessRunner({ transport, root: 'jobs', killGraceMs: 500, ...options }),
    dispose: () => rm(home, { recursive: true, force: true }),
  };
}

/**
 * Observes a transport: counts exec calls, delegating everything (a watcher of the real
 * transport, not a replacement).
 */
export function countingTransport(inner: Transport): { transport: Transport; execs: () => number } {
  let n = 0;
  const transport = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop === 'exec') {
        return (...args: Parameters<Transport['exec']>) => {
          n++;
          return target.exec(...args);
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { transport, execs: () => n };
}

/** True while `pid` is a live process (a zombie counts as dead). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** PIDs of live processes in process group `pgid`. */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSyncSafe('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') out.push(Number(entry));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

function readdirSyncSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Waits until `check` is true, or throws after `timeoutMs`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The numeric field `name` of a process handle's data. */
export function num(h: RunnerHandle, name: string): number {
  const v = h.data[name];
  if (typeof v !== 'number') throw new Error(`handle has no numeric ${name}`);
  return v;
}

/**
 * Kills what a handle started, directly (test teardown, or a job lost with its wrapper). The
 * wrapper dies first: killed second, a wrapper the machine happened to run in between would
 * see its job die and record an exit status, and the job would not read as lost.
 */
export function killHandle(h: RunnerHandle): void {
  for (const [name, group] of [
    ['wrapperPid', false],
    ['pid', true],
  ] as const) {
    const v = h.data[name];
    if (typeof v !== 'number') continue;
    try {
      process.kill(group ? -v : v, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
