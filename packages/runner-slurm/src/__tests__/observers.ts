// Observers for tests: a transport wrapper that counts exec calls and a squeue wrapper that
// logs its invocations. They watch real components; they do not replace them.

import { chmod, mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export { countingTransport } from '@crystalmath/testkit';

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
