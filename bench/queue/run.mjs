#!/usr/bin/env node
// `node bench/queue/run.mjs [--quick] [--only=a,b] [--out=file]`: measures @crystalmath/queue and
// its peers in this one process on this machine, prints a table with ratios and PASS/FAIL
// against the targets, and writes the figures as JSON (default bench/results/latest.json).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderChart } from './lib/chart.mjs';
import { postgresUp, postgresUrl, scratchDatabases } from './lib/postgres.mjs';
import { startRedis } from './lib/redis-server.mjs';
import { renderTable, summary } from './lib/report.mjs';
import { measureSystem } from './lib/scenarios.mjs';
import { startWatchdog } from './lib/watchdog.mjs';
import { SYSTEMS } from './systems/index.mjs';

const here = dirname(fileURLToPath(import.meta.url));

// Counts sized so the whole default run stays under about 3 minutes on 2 cores; --quick is a
// smoke run of a few seconds per system. Each can be overridden: --single=N, --finished=N, ...
const FULL = {
  single: 10_000,
  enqueueWarmup: 500,
  enqueueRounds: 3,
  bulk: 20_000,
  enqueueMaxMs: 2_000,
  batch: 1_000,
  dispatch: 10_000,
  warmup: 500,
  latency: 200,
  latencyGapMs: 5,
  dependencies: 50,
  finished: 100_000,
  concurrency: 32,
  pollMs: 10,
  // The multi-process figures: producer processes enqueueing beside the worker (jobs per
  // enqueue call), and worker processes sharing one PostgreSQL database.
  producers: 4,
  producerBatch: 1,
  schedulers: 3,
  phaseTimeoutMs: 60_000,
  fillTimeoutMs: 30_000,
  // Past this the run is flagged as over its time target (every system still runs: ratios
  // need the peers).
  budgetS: 180,
  // The watchdog ends the run if a system blocks the event loop this long.
  stallMs: 30_000,
};
const QUICK = {
  ...FULL,
  single: 300,
  enqueueWarmup: 50,
  enqueueRounds: 1,
  bulk: 2_000,
  enqueueMaxMs: 1_000,
  batch: 500,
  dispatch: 1_000,
  warmup: 100,
  latency: 30,
  dependencies: 10,
  finished: 2_000,
  phaseTimeoutMs: 15_000,
  fillTimeoutMs: 15_000,
  stallMs: 15_000,
};

function parseArgs(argv) {
  const args = {
    quick: false,
    json: false,
    only: null,
    out: join(here, '..', 'results', 'latest.json'),
  };
  const overrides = {};
  for (const arg of argv) {
    if (arg === '--') continue; // some package managers pass it through
    const [key, value] = arg.replace(/^--/, '').split('=', 2);
    if (key === 'quick') args.quick = true;
    else if (key === 'json') args.json = true;
    else if (key === 'install-peers') args.installPeers = true;
    else if (key === 'only') args.only = new Set(value.split(','));
    else if (key === 'out') args.out = value;
    else if (key === 'figures' && (value === 'all' || value === 'enqueue')) args.figures = value;
    else if (key === 'help') args.help = true;
    else if (key in FULL && value !== undefined && /^[0-9]+$/.test(value))
      overrides[key] = Number(value);
    else throw new Error(`[bench] unknown argument ${arg} (see --help)`);
  }
  args.cfg = { ...(args.quick ? QUICK : FULL), ...overrides, figures: args.figures ?? 'all' };
  return args;
}

function betterSqliteVersion() {
  try {
    return createRequire(import.meta.url)('better-sqlite3/package.json').version;
  } catch {
    return '?';
  }
}

const USAGE = `usage: node bench/queue/run.mjs [--quick] [--json] [--only=id,id] [--figures=all|enqueue] [--install-peers] [--out=file.json] [--<count>=N]
--install-peers: as root, apt-get install what a peer needs and is missing (Debian's redis-server for BullMQ)
systems: ${SYSTEMS.map((s) => s.id).join(', ')}
counts:  ${Object.keys(FULL).join(', ')}`;

function describeRun(args, started, warnings, loadStart) {
  const c = args.cfg;
  return {
    load: { start: loadStart, end: loadavg().map((v) => Number(v.toFixed(2))) },
    mode: args.quick ? 'quick' : 'full',
    node: `Node ${process.versions.node}`,
    cpus: availableParallelism(),
    counts:
      `${c.single} single, ${c.bulk} bulk (batches of ${c.batch}; median of ${c.enqueueRounds} rounds, each at most ${c.enqueueMaxMs} ms), ` +
      `${c.dispatch} dispatched, ` +
      `${c.latency} latency samples, ${c.dependencies} dependency pairs, ${c.finished} finished, ` +
      `${c.producers} producer processes (${c.producerBatch} job${c.producerBatch === 1 ? '' : 's'} per call), ${c.schedulers} worker processes`,
    notes: [
      'dispatch = jobs handed to user code (worker handler, or the no-op Runner.submit) per second, from worker start',
      'dependency release = prerequisite completion handed back by user code -> dependent handed to user code',
      ...warnings.map((w) => `warning: ${w}`),
    ],
    seconds: (Date.now() - started) / 1000,
  };
}

function writeResults(args, meta, results) {
  const json = {
    at: new Date().toISOString(),
    ...meta,
    config: args.cfg,
    summary: summary(results),
    systems: [...results.values()].map((r) => ({
      id: r.system.id,
      label: r.system.label,
      group: r.system.group,
      ours: Boolean(r.system.ours),
      settings: r.system.settings,
      skipped: r.skip ?? null,
      seconds: r.seconds ?? null,
      figures: r.figures ?? null,
    })),
  };
  mkdirSync(dirname(args.out), { recursive: true });
  writeFileSync(args.out, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(args.out.replace(/\.json$/, '') + '.svg', renderChart(json));
  return json;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const started = Date.now();
  const loadStart = loadavg().map((v) => Number(v.toFixed(2)));
  const watchdog = startWatchdog({ stallMs: args.cfg.stallMs });
  const tmpDir = mkdtempSync(join(tmpdir(), 'cm-bench-'));
  const warnings = [];
  let redis = null;
  let scratch = null;
  const env = {
    cfg: args.cfg,
    tmpDir,
    // Names this run's Redis keys, so child processes find the parent's.
    runId: process.pid,
    watchChild: (pid) => watchdog.child(pid),
    warn: (msg) => {
      if (warnings.length < 50) warnings.push(msg);
    },
    progress: (msg) => {
      watchdog.phase(msg);
      process.stderr.write(`[bench] ${msg}\n`);
    },
    // Started on first use: only BullMQ needs it.
    redis: async () => {
      redis ??= await startRedis({ install: args.installPeers === true, log: env.progress });
      if (redis.pid) watchdog.child(redis.pid);
      return redis;
    },
    postgres: null,
    postgresReason: '',
    betterSqliteVersion: betterSqliteVersion(),
  };
  const selected = SYSTEMS.filter((s) => !args.only || args.only.has(s.id));
  if (selected.some((s) => s.group === 'postgres')) {
    const pg = postgresUrl();
    if (pg.error) env.postgresReason = pg.error;
    else if (!(await postgresUp(pg.url)))
      env.postgresReason = 'the testbed PostgreSQL does not answer';
    else {
      scratch = await scratchDatabases(pg.url);
      env.postgres = scratch;
    }
  }

  // A peer's background loop that throws must not take the report down with it: its phase
  // times out and says so, and the warning is printed.
  process.on('unhandledRejection', (error) => env.warn(`unhandled: ${error?.message ?? error}`));
  process.once('SIGINT', () => {
    void Promise.resolve(redis?.stop?.()).finally(() => process.exit(130));
  });

  const results = new Map();
  try {
    for (const system of selected) {
      const prepared = await system.prepare(env);
      if (prepared.skip) {
        results.set(system.id, { system, skip: prepared.skip });
        env.progress(`${system.label}: not run: ${prepared.skip}`);
        continue;
      }
      const t0 = Date.now();
      const figures = await measureSystem(system, env);
      results.set(system.id, { system, figures, seconds: (Date.now() - t0) / 1000 });
      await scratch?.dropAll();
      // Written after each system too, so a run stopped by the watchdog keeps what it measured.
      writeResults(args, describeRun(args, started, warnings, loadStart), results);
    }
  } finally {
    await redis?.stop?.();
    await scratch?.dropAll().catch(() => {});
    await scratch?.close().catch(() => {});
    rmSync(tmpDir, { recursive: true, force: true });
  }

  if ((Date.now() - started) / 1000 > args.cfg.budgetS) {
    const [load] = loadavg();
    warnings.push(
      `the run took longer than ${args.cfg.budgetS} s: load average ${load.toFixed(1)} on ` +
        `${availableParallelism()} CPUs; figures taken on a busy machine are low across the board`,
    );
  }
  const meta = describeRun(args, started, warnings, loadStart);
  const json = writeResults(args, meta, results);
  const chart = `${args.out.replace(/\.json$/, '')}.svg`;
  if (args.json) {
    // The summary alone on stdout (progress went to stderr), for scripts.
    const { at, mode, node, cpus, load, seconds, summary: figures } = json;
    console.log(JSON.stringify({ at, mode, node, cpus, load, seconds, figures, chart }, null, 2));
    return 0;
  }
  console.log(renderTable(results, meta));
  console.log(`total ${meta.seconds.toFixed(1)} s`);
  console.log(`results written to ${args.out}, chart ${chart}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error.message);
    process.exit(1);
  },
);
