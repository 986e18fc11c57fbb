// Test wiring for the testbed's real Grid Engine: a LocalTransport whose commands run as the
// testbed's unprivileged user (Grid Engine refuses jobs of uids below 1000, and these tests
// run as root), a registry that qdels every job a suite submitted, and unique roots.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Command,
  type ExecOptions,
  LocalTransport,
  type Runner,
  type RunnerHandle,
  type Transport,
} from '@crystalmath/core';
import { requireService, sgeEnv } from '@crystalmath/testkit';
import { SgeRunner, type SgeRunnerOptions } from '../sge-runner.js';

/** The testbed's Grid Engine, or undefined outside CI when it is not running. */
export const sge = requireService('sge');

const isRoot = process.getuid?.() === 0;

/**
 * This machine as `sge.user`: commands run through `setpriv` with that user's uid, gid and
 * groups (and its HOME, USER, LOGNAME); file operations stay this process's (root's), which
 * can write into the directories the user's commands created. When the tests do not run as
 * root, the current user submits.
 */
export function localSgeTransport(): Transport {
  const user = sge?.user ?? 'cmtest';
  // Relative paths and the commands' working directory: /tmp, which the user can enter.
  const home = tmpdir();
  if (!isRoot) {
    return new LocalTransport({ home, baseEnv: { ...process.env, ...sgeEnv() } });
  }
  const uid = execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim();
  const gid = execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim();
  const base = new LocalTransport({
    home,
    baseEnv: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      LANG: 'C.UTF-8',
      HOME: `/home/${user}`,
      USER: user,
      LOGNAME: user,
      ...sgeEnv(),
    },
  });
  const prefix = ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--init-groups', '--'];
  const exec = (command: Command, options?: ExecOptions) =>
    base.exec(
      Array.isArray(command)
        ? [...prefix, ...(command as readonly string[])]
        : [...prefix, '/bin/sh', '-c', (command as { script: string }).script],
      options,
    );
  return new Proxy(base, {
    get: (target, prop) => {
      if (prop === 'exec') return exec;
      if (prop === 'description') return `local as ${user}`;
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Small defaults: the queue has 2 slots shared by every engineer's tests. */
export function makeRunner(
  transport: Transport,
  root: string,
  options: Partial<SgeRunnerOptions> = {},
): SgeRunner {
  return new SgeRunner({
    transport,
    root,
    defaults: sge ? { partition: sge.queue, parallelEnvironment: sge.pe } : {},
    pollMinIntervalMs: 0,
    // qacct's first record after a qmaster start can take ~15 s: well inside this.
    lostGraceMs: 60_000,
    ...options,
  });
}

/** Remembers the job ids of every handle it sees, and qdels them all at the end. */
export class JobRegistry {
  readonly ids = new Set<string>();

  track(handle: RunnerHandle): RunnerHandle {
    const id = handle.data.jobId;
    if (typeof id === 'string') this.ids.add(id);
    return handle;
  }

  /** A runner that records every submitted handle here. */
  wrap<R extends Runner>(runner: R): R {
    return new Proxy(runner, {
      get: (target, prop) => {
        const value = Reflect.get(target, prop, target);
        if (prop === 'submit') {
          return async (...args: Parameters<Runner['submit']>) =>
            this.track(await (value as Runner['submit']).apply(target, args));
        }
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  async deleteAll(transport: Transport): Promise<void> {
    const ids = [...this.ids];
    for (let i = 0; i < ids.length; i += 200) {
      await transport
        .exec(['qdel', ids.slice(i, i + 200).join(',')], { timeoutMs: 60_000 })
        .catch(() => undefined);
    }
  }
}

/** A fresh job root under /tmp, writable by the submitting user. */
export function uniqueRoot(): string {
  return join(tmpdir(), `cm-sge-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`);
}
