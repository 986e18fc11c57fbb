// Observers for tests: a transport wrapper that counts exec calls and a squeue wrapper that
// logs its invocations. They watch real components; they do not replace them.

import { chmod, mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Transport } from '@crystalmath/core';

export { countingTransport } from '@crystalmath/testkit';

/** Transport calls that each cost at least one round trip to the target. */
const TRANSPORT_CALLS = [
  'exec',
  'writeFile',
  'readFile',
  'mkdir',
  'remove',
  'stat',
  'rename',
  'upload',
  'download',
] as const;
export type TransportCall = (typeof TRANSPORT_CALLS)[number];

/**
 * Observes a transport: counts every call by method (each is at least one round trip; an exec
 * on ssh-pool's command channel is exactly one), delegating everything.
 */
export function roundTripCounter(inner: Transport): {
  transport: Transport;
  calls: () => Partial<Record<TransportCall, number>>;
  reset: () => void;
} {
  let calls: Partial<Record<TransportCall, number>> = {};
  const counted = new Set<string | symbol>(TRANSPORT_CALLS);
  const transport = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      if (!counted.has(prop)) return value.bind(target);
      return (...args: unknown[]) => {
        const name = prop as TransportCall;
        calls[name] = (calls[name] ?? 0) + 1;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return {
    transport,
    calls: () => ({ ...calls }),
    reset: () => {
      calls = {};
    },
  };
}

/**
 * A `squeue` that logs each invocation to a file and then runs the real one: an observer for
 * counting scheduler calls. With `hide`, it drops the lines of those job ids, which is how a
 * test makes squeue forget a job before SLURM's MinJobAge would (fault injection). It lives in
 * `parent`, which the test removes.
 */
export async function squeueWrapper(
  parent: string,
  hide: readonly string[] = [],
): Promise<{ path: string; log: string }> {
  const dir = await mkdtemp(join(parent, 'cm-squeue-'));
  const log = join(dir, 'calls.log');
  const path = join(dir, 'squeue');
  const filter = hide.length === 0 ? '' : ` | grep -v -E '^(${hide.join('|')})(_|\\|)'`;
  await writeFile(
    path,
    `#!/bin/sh\necho "$*" >> '${log}'\nout=$(squeue "$@") || exit $?\n[ -n "$out" ] && printf '%s\\n' "$out"${filter}\nexit 0\n`,
  );
  await chmod(path, 0o755);
  await writeFile(log, '');
  return { path, log };
}
