// The quickstart: a durable queue in a temporary SQLite file, jobs run as local processes,
// and a workflow prepare -> 3 calculations in parallel -> aggregate. The steps share no
// folder: each declares its outputs, the queue collects them into its artifact store, and the
// next step names them as `fromJob` inputs (which also orders the steps). Progress is printed
// live from the queue's events; at the end the aggregate's `result` is printed.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openQueue, sqliteStore, TERMINAL_JOB_STATES } from '@crystalmath/queue';
import { LocalRunner } from '@crystalmath/runner-process';
import { AGGREGATE, CALCULATE, PREPARE } from './calculations.js';

const node = process.execPath;
const dir = await mkdtemp(join(tmpdir(), 'crystalmath-quickstart-'));
const started = Date.now();
const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s`;

console.log(
  `CrystalMath quickstart\n  store:   ${join(dir, 'queue.db')} (SQLite)\n  runner:  local processes under ${join(dir, 'runs')}\n`,
);

const queue = await openQueue({
  store: sqliteStore({ path: join(dir, 'queue.db') }),
  targets: { local: { runner: new LocalRunner({ root: join(dir, 'runs') }), maxConcurrent: 3 } },
  // Short intervals suit a demo on one machine; see docs/operations.md for clusters.
  scheduler: { tickMs: 100, pollIntervalMs: 200 },
});

let code = 1;
try {
  const calc = (i: number) => ({
    spec: {
      name: `calc-${i + 1}`,
      argv: [node, '-e', CALCULATE, String(i)],
      inputs: [{ fromJob: 'prepare', path: 'params.json', to: 'params.json' }],
      outputs: [{ glob: 'result.json', required: true }],
    },
  });
  const workflow = await queue.submitWorkflow({
    name: 'quickstart',
    target: 'local',
    jobs: {
      prepare: { spec: { name: 'prepare', argv: [node, '-e', PREPARE], outputs: ['params.json'] } },
      'calc-1': calc(0),
      'calc-2': calc(1),
      'calc-3': calc(2),
      aggregate: {
        spec: {
          name: 'aggregate',
          argv: [node, '-e', AGGREGATE],
          inputs: [0, 1, 2].map((i) => ({
            fromJob: `calc-${i + 1}`,
            path: 'result.json',
            to: `calc-${i}.json`,
          })),
          outputs: [{ glob: 'result.json', required: true }],
        },
      },
    },
  });
  const keys = new Map(Object.values(workflow.jobs).map((j) => [j.id, j.workflowKey ?? j.name]));
  const total = keys.size;
  const finished = new Set<string>();
  console.log(`workflow ${workflow.name} (${workflow.id}): ${total} jobs\n`);

  queue.on('job:state', (e) => {
    if (e.workflowId !== workflow.id) return;
    if (TERMINAL_JOB_STATES.has(e.to)) finished.add(e.jobId);
    const bar = '#'.repeat(finished.size) + '-'.repeat(total - finished.size);
    console.log(
      `${elapsed()}  [${bar}] ${finished.size}/${total}  ${(keys.get(e.jobId) ?? e.jobId).padEnd(10)} ${e.from ?? 'new'} -> ${e.to}`,
    );
  });

  await queue.start();
  await queue.drain({ ids: [...keys.keys()], timeoutMs: 120_000 });

  const done = await queue.workflow(workflow.id);
  const states = Object.values(done?.jobs ?? {}).map((j) => j.state);
  if (states.length !== total || states.some((s) => s !== 'succeeded')) {
    console.error(`\nthe workflow did not succeed: ${JSON.stringify(done?.counts)}`);
  } else {
    const summary = done!.jobs.aggregate!.result as {
      results: { a: number; energy: number; neighbours: number }[];
      best: { a: number; energy: number };
    };
    console.log('\nResults: Lennard-Jones fcc crystal, energy per atom (reduced units)');
    console.log('  lattice a   neighbours   E/atom');
    for (const r of summary.results) {
      const mark = r.a === summary.best.a ? '  <- lowest' : '';
      console.log(
        `  ${r.a.toFixed(3).padStart(9)}   ${String(r.neighbours).padStart(10)}   ${r.energy.toFixed(4)}${mark}`,
      );
    }
    console.log(
      `\nall ${total} jobs succeeded in ${elapsed().trim()}. Next: docs/getting-started.md`,
    );
    code = 0;
  }
} finally {
  await queue.close();
  if (process.env.CM_QUICKSTART_KEEP !== '1') await rm(dir, { recursive: true, force: true });
}
process.exitCode = code;
