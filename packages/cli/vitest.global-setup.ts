// Builds dist/ once before the tests that spawn `crystalmath` as a real process.
import { spawnSync } from 'node:child_process';

export function setup(): void {
  const r = spawnSync('npx', ['tsup', '--silent'], { cwd: import.meta.dirname, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`[cli] build before tests failed:\n${r.stdout}${r.stderr}`);
}
