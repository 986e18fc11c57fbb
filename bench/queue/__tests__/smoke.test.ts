// Proves in CI that the queue bench still runs end to end: a --quick run of @crystalmath/queue
// (SQLite store) alone must exit 0 and print, and write as JSON, a real number for every figure.

import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const runScript = join(dirname(fileURLToPath(import.meta.url)), '..', 'run.mjs');
// Another system can be smoke-tested by id, e.g. `plainjob`, when the queue is being rebuilt.
const system = process.env.CM_BENCH_SMOKE_SYSTEM ?? 'crystalmath-sqlite';
const dir = mkdtempSync(join(tmpdir(), 'cm-bench-smoke-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Figure {
  readonly value?: number;
  readonly na?: string;
  readonly error?: string;
}

describe('queue bench --quick', () => {
  const out = join(dir, 'results.json');
  let run: SpawnSyncReturns<string>;
  beforeAll(() => {
    run = spawnSync(
      process.execPath,
      [runScript, '--quick', `--only=${system}`, `--out=${out}`, '--finished=1000'],
      { encoding: 'utf8', timeout: 50_000 },
    );
  });

  it('exits 0 and prints a numeric figure with a verdict for each target', () => {
    expect(run.error, run.stderr).toBeUndefined();
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).not.toMatch(/not run:/);
    expect(run.stdout).not.toMatch(/error:/);
    for (const unit of ['jobs/s', 'ms']) {
      expect(run.stdout).toMatch(new RegExp(`\\b[0-9][0-9,.]* ${unit}\\b`));
    }
    // Four targets carry a verdict on every system; the slowdown one needs finished jobs kept.
    const verdicts = run.stdout.match(/ (PASS|FAIL)$/gm) ?? [];
    expect(verdicts.length).toBeGreaterThanOrEqual(4);
  });

  it('writes every measured figure as a finite positive number', () => {
    const json = JSON.parse(readFileSync(out, 'utf8')) as {
      systems: { id: string; skipped: string | null; figures: Record<string, Figure> | null }[];
    };
    const entry = json.systems.find((s) => s.id === system);
    expect(entry?.skipped ?? null).toBeNull();
    const figures = entry?.figures ?? {};
    for (const key of ['single', 'dispatch', 'latencyP50', 'latencyP99']) {
      const value = figures[key]?.value;
      expect(
        Number.isFinite(value) && (value as number) > 0,
        `${key}: ${JSON.stringify(figures[key])}`,
      ).toBe(true);
    }
    // The rest are numbers, or a stated reason why the system has no such figure.
    for (const key of ['bulk', 'dependencyP50', 'dependencyP99', 'dispatchFinished']) {
      const fig = figures[key];
      expect(fig?.error, key).toBeUndefined();
      expect(typeof fig?.value === 'number' || typeof fig?.na === 'string', key).toBe(true);
    }
  });
});
