#!/usr/bin/env node
// bench/cli-startup: how long the `crystalmath` command takes to start, against `node -e 0` in
// the same run: `crystalmath --version` (goal: at most 2x) and `crystalmath list` on a store of
// 1,000 jobs (goal: at most 3x). Uses the built CLI: `pnpm turbo run build --filter=@crystalmath/cli...`.
//
//   node bench/cli-startup.mjs [--runs=15] [--jobs=1000] [--out=file.json]

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openQueue, sqliteStore } from '@crystalmath/queue';
import { NoopRunner } from './queue/systems/noop-runner.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const bin = join(here, '..', 'packages', 'cli', 'dist', 'bin.js');
const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k, v ?? 'true'];
  }),
);
const RUNS = Number(args.runs ?? 15);
const JOBS = Number(args.jobs ?? 1000);

if (!existsSync(bin)) {
  console.error(`bench/cli-startup: ${bin} is missing: build the CLI first`);
  process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), 'cm-bench-cli-'));
try {
  writeFileSync(
    join(dir, 'crystalmath.config.yaml'),
    'store: queue.db\ndefaultTarget: local\ntargets:\n  local: { type: local, root: runs }\n',
  );
  const queue = await openQueue({
    store: sqliteStore({ path: join(dir, 'queue.db') }),
    targets: { local: { runner: new NoopRunner() } },
  });
  for (let i = 0; i < JOBS; i += 500) {
    await queue.enqueueMany(
      Array.from({ length: Math.min(500, JOBS - i) }, (_, k) => ({
        spec: { name: `job-${i + k}`, argv: ['true'] },
        target: 'local',
      })),
    );
  }
  await queue.close();

  const commands = {
    'node -e 0': [process.execPath, ['-e', '0']],
    'crystalmath --version': [process.execPath, [bin, '--version']],
    'crystalmath list': [process.execPath, [bin, 'list']],
  };
  const times = Object.fromEntries(Object.keys(commands).map((k) => [k, []]));
  // Interleaved, so a burst of load on the machine falls on every command alike.
  for (let r = 0; r < RUNS + 1; r++) {
    for (const [name, [cmd, argv]] of Object.entries(commands)) {
      const t0 = process.hrtime.bigint();
      const res = spawnSync(cmd, argv, { cwd: dir, encoding: 'utf8' });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (res.status !== 0) throw new Error(`${name} exited ${res.status}: ${res.stderr}`);
      if (r > 0) times[name].push(ms); // the first round warms the file cache
    }
  }
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)];
  };
  const base = median(times['node -e 0']);
  const goals = { 'crystalmath --version': 2, 'crystalmath list': 3 };
  const result = { runs: RUNS, jobs: JOBS, loadavg: loadavg()[0], figures: {} };
  console.log(
    `cli start-up, median of ${RUNS} runs, ${JOBS} jobs in the store (load ${loadavg()[0].toFixed(2)})`,
  );
  for (const name of Object.keys(commands)) {
    const m = median(times[name]);
    const ratio = m / base;
    const goal = goals[name];
    result.figures[name] = { medianMs: m, ratio, goal: goal ?? null };
    console.log(
      `  ${name.padEnd(24)} ${m.toFixed(0).padStart(6)} ms  ${ratio.toFixed(2)}x node -e 0${
        goal ? `  goal <= ${goal}x: ${ratio <= goal ? 'PASS' : 'FAIL'}` : ''
      }`,
    );
  }
  if (args.out) writeFileSync(args.out, `${JSON.stringify(result, null, 2)}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
