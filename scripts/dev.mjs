#!/usr/bin/env node
// The two README commands land here: `npm run quickstart` and `npm test`. It needs only Node 20
// and npm: it brings pnpm (pinned), installs the workspace, builds, and runs either the
// quickstart or the whole test suite (starting the service testbed when it can).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const PNPM = '12.4.2';
const env = {
  ...process.env,
  TURBO_TELEMETRY_DISABLED: '1',
  FORCE_COLOR: process.env.FORCE_COLOR ?? '0',
};
// node-gyp must use the local Node headers: there is no download on these machines.
if (!env.npm_config_nodedir && existsSync('/usr/include/node/node.h'))
  env.npm_config_nodedir = '/usr';

function run(cmd, args, opts = {}) {
  const started = Date.now();
  console.log(`\n$ ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, env, ...opts });
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (r.error) throw r.error;
  console.log(`  (${secs} s, exit ${r.status})`);
  return r.status ?? 1;
}

function must(cmd, args, opts) {
  const code = run(cmd, args, opts);
  if (code !== 0) process.exit(code);
}

function pnpmCommand() {
  const probe = spawnSync('pnpm', ['--version'], { encoding: 'utf8', env });
  if (probe.status === 0 && probe.stdout.trim() === PNPM) return ['pnpm', []];
  return ['npx', ['--yes', `pnpm@${PNPM}`]];
}
const [pnpmBin, pnpmPre] = pnpmCommand();
const pnpm = (args, opts) => run(pnpmBin, [...pnpmPre, ...args], opts);
const pnpmMust = (args, opts) => must(pnpmBin, [...pnpmPre, ...args], opts);

function install() {
  pnpmMust(['install', '--frozen-lockfile']);
}

function testbedUp() {
  if (process.env.CM_SKIP_TESTBED === '1') return false;
  const status = spawnSync('bash', [join(root, 'scripts/testbed'), 'status'], {
    encoding: 'utf8',
    env,
  });
  if (status.status === 0 && !/down/.test(status.stdout)) return false; // already up: not ours
  if (process.getuid?.() !== 0) {
    console.log(
      '\n[dev] not root: not starting the testbed; service tests skip (CI fails them). See scripts/testbed.',
    );
    return false;
  }
  must('bash', [join(root, 'scripts/testbed'), 'up']);
  return true;
}

function summarize() {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const dir of ['packages', 'examples', 'bench']) {
    const base = join(root, dir);
    if (!existsSync(base)) continue;
    const pkgs = dir === 'bench' ? [''] : readdirSync(base);
    for (const pkg of pkgs) {
      const file = join(base, pkg, '.vitest-report.json');
      if (!existsSync(file)) continue;
      const report = JSON.parse(readFileSync(file, 'utf8'));
      passed += report.numPassedTests ?? 0;
      failed += report.numFailedTests ?? 0;
      skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
      rmSync(file);
    }
  }
  console.log(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
  return failed;
}

const task = process.argv[2];
install();
if (task === 'quickstart') {
  pnpmMust(['turbo', 'run', 'build', '--filter=@crystalmath/example-quickstart...']);
  process.exit(pnpm(['--filter', '@crystalmath/example-quickstart', 'start']));
} else if (task === 'test') {
  pnpmMust(['turbo', 'run', 'build']);
  let status = pnpm(['turbo', 'run', 'typecheck']);
  status ||= run(pnpmBin, [...pnpmPre, 'exec', 'biome', 'check', '.']);
  // Each published package as a consumer would install it (exports, types, files).
  status ||= pnpm(['turbo', 'run', 'publint']);
  const started = testbedUp();
  try {
    const concurrency = process.env.CM_TEST_CONCURRENCY ?? '2';
    const code = pnpm([
      'turbo',
      'run',
      'test',
      `--concurrency=${concurrency}`,
      '--continue',
      '--',
      '--reporter=default',
      '--reporter=json',
      '--outputFile=.vitest-report.json',
    ]);
    const failed = summarize();
    status ||= code || (failed > 0 ? 1 : 0);
  } finally {
    if (started) run('bash', [join(root, 'scripts/testbed'), 'down']);
  }
  process.exit(status);
} else if (task === 'bench') {
  pnpmMust(['turbo', 'run', 'build']);
  process.exit(pnpm(['--filter', '@crystalmath/bench', 'start', ...process.argv.slice(3)]));
} else {
  console.error('usage: node scripts/dev.mjs quickstart|test|bench');
  process.exit(2);
}
