// Proves in CI that the queue bench still runs end to end: a --quick run of @crystalmath/queue
// (SQLite store) alone must exit 0 and print, and write as JSON and as a chart, a real number for
// every figure, the multi-process one included; and a peer that cannot run is listed with why.

import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
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
      [
        runScript,
        '--quick',
        `--only=${system}`,
        `--out=${out}`,
        '--finished=1000',
        '--producers=2',
      ],
      { encoding: 'utf8', timeout: 60_000 },
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
    for (const key of ['single', 'dispatch', 'latencyP50', 'latencyP99', 'dispatchProducers']) {
      const value = figures[key]?.value;
      expect(
        Number.isFinite(value) && (value as number) > 0,
        `${key}: ${JSON.stringify(figures[key])}`,
      ).toBe(true);
    }
    // The rest are numbers, or a stated reason why the system has no such figure.
    for (const key of [
      'bulk',
      'dependencyP50',
      'dependencyP99',
      'dispatchFinished',
      'dispatchSchedulers',
    ]) {
      const fig = figures[key];
      expect(fig?.error, key).toBeUndefined();
      expect(typeof fig?.value === 'number' || typeof fig?.na === 'string', key).toBe(true);
    }
  });

  it('draws every figure into an SVG chart beside the JSON', () => {
    const svg = readFileSync(out.replace(/\.json$/, '.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    for (const title of ['single enqueue', 'dispatch while producer processes enqueue']) {
      expect(svg).toContain(title);
    }
  });
});

describe('queue bench --json', () => {
  it('prints the summary as JSON and lists a peer that cannot run with its reason', () => {
    // liteque is probed and refused on this Node/better-sqlite3: the run is quick.
    const out = join(dir, 'json.json');
    const run = spawnSync(
      process.execPath,
      [runScript, '--quick', '--json', '--only=liteque', `--out=${out}`],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(run.status, run.stderr).toBe(0);
    const json = JSON.parse(run.stdout) as {
      load: { start: number[] };
      chart: string;
      figures: { key: string; systems: { id: string; notRun?: string; value?: number }[] }[];
    };
    expect(json.load.start).toHaveLength(3);
    expect(existsSync(json.chart)).toBe(true);
    const single = json.figures.find((f) => f.key === 'single');
    const entry = single?.systems.find((s) => s.id === 'liteque');
    expect(typeof entry?.notRun === 'string' || typeof entry?.value === 'number').toBe(true);
  });
});

describe('queue bench peers', () => {
  it('says how to install redis-server when it is missing, and lists BullMQ with that reason', () => {
    // A PATH with a shell and nothing else: no redis-server (nor apt-get) to find.
    const bin = join(dir, 'path-without-redis');
    mkdirSync(bin, { recursive: true });
    symlinkSync('/bin/sh', join(bin, 'sh'));
    const out = join(dir, 'no-redis.json');
    const r = spawnSync(
      process.execPath,
      [runScript, '--quick', '--only=bullmq', '--json', `--out=${out}`],
      { encoding: 'utf8', timeout: 60_000, env: { ...process.env, PATH: bin } },
    );
    expect(r.status, r.stderr).toBe(0);
    const skipped = JSON.parse(readFileSync(out, 'utf8')).systems.find(
      (s: { id: string }) => s.id === 'bullmq',
    ).skipped as string;
    expect(skipped).toMatch(/redis-server not found/);
    expect(skipped).toMatch(/apt-get install -y redis-server/);
    expect(skipped).toMatch(/--install-peers/);
    expect(r.stderr).toMatch(/BullMQ \(redis\): not run: redis-server not found/);
  });
});
