// The README's first command ends here: the quickstart must run to the end, print its results
// and exit 0 on a fresh machine. This runs the built program exactly as `pnpm start` does.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const cwd = new URL('../..', import.meta.url).pathname;

describe('quickstart', () => {
  it('runs the workflow to the end, prints live progress and the results, exits 0', () => {
    const build = spawnSync('npx', ['tsup'], { cwd, encoding: 'utf8' });
    expect(build.status, build.stderr).toBe(0);
    const run = spawnSync(process.execPath, ['dist/main.js'], {
      cwd,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    // live progress: every job reached succeeded, and the bar filled up
    for (const key of ['prepare', 'calc-1', 'calc-2', 'calc-3', 'aggregate']) {
      expect(run.stdout).toMatch(new RegExp(`${key}\\s+\\w+ -> succeeded`));
    }
    expect(run.stdout).toContain('[#####] 5/5');
    // the results: fcc LJ energies near the minimum (about -8.6 per atom with this cutoff)
    const energies = [...run.stdout.matchAll(/^\s+1\.(?:500|550|600)\s+\d+\s+(-\d+\.\d+)/gm)].map(
      (m) => Number(m[1]),
    );
    expect(energies).toHaveLength(3);
    for (const e of energies) expect(e).toBeLessThan(-5);
    expect(run.stdout).toContain('<- lowest');
    expect(run.stdout).toContain('all 5 jobs succeeded');
  });
});
