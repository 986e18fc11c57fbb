#!/usr/bin/env node
// bench/ssh-pool: exec latency over a pooled connection vs a fresh connection per command
// (median, p99, ratio), and throughput with 1, 8 and 32 concurrent callers, against the
// testbed's sshd (read from env.json). Uses the built package: build it first with
// `pnpm --filter @crystalmath/ssh-pool build`.
//
//   node bench/ssh-pool.mjs [--quick] [--pooled=300] [--fresh=40] [--seconds=3] [--root] [--out=file.json]

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const dist = join(here, '..', 'packages', 'ssh-pool', 'dist', 'index.js');

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k, v ?? 'true'];
  }),
);
const quick = args.quick === 'true';
const POOLED = Number(args.pooled ?? (quick ? 60 : 300));
const FRESH = Number(args.fresh ?? (quick ? 10 : 40));
const SECONDS = Number(args.seconds ?? (quick ? 1 : 3));
const LEVELS = [1, 8, 32];

function fail(message) {
  console.error(`bench/ssh-pool: ${message}`);
  process.exit(1);
}

if (!existsSync(dist))
  fail(`${dist} is missing: build it with \`pnpm --filter @crystalmath/ssh-pool build\``);
const testbedDir = process.env.CRYSTALMATH_TESTBED_DIR || '/tmp/crystalmath-testbed';
const envFile = join(testbedDir, 'env.json');
if (!existsSync(envFile))
  fail(`${envFile} not found: start the testbed with \`sudo scripts/testbed up ssh\``);
const ssh = JSON.parse(readFileSync(envFile, 'utf8')).ssh;
if (!ssh) fail(`no ssh service in ${envFile}: start it with \`sudo scripts/testbed up ssh\``);

const { SshPool, SshTransport } = await import(pathToFileURL(dist).href);

const host = {
  host: ssh.host,
  port: ssh.port,
  username: args.root === 'true' ? ssh.rootUser : ssh.user,
  privateKeyPath: ssh.privateKeyPath,
  knownHostsPath: ssh.knownHostsPath,
};

const quantile = (values, q) => {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? Number.NaN;
};
const ms = (v) => `${v.toFixed(2)} ms`;
const summary = (values) => ({
  n: values.length,
  median: quantile(values, 0.5),
  p99: quantile(values, 0.99),
});

async function pooledLatency() {
  const pool = new SshPool({ max: 1 });
  const t = new SshTransport({ pool, host });
  try {
    for (let i = 0; i < 20; i++) await t.exec(['true']); // connect and warm up
    const times = [];
    for (let i = 0; i < POOLED; i++) {
      const t0 = performance.now();
      const r = await t.exec(['true']);
      times.push(performance.now() - t0);
      if (r.exitCode !== 0) throw new Error('exec failed');
    }
    return summary(times);
  } finally {
    await pool.close();
  }
}

/** What a tool without a pool does: connect, authenticate, verify the host key, exec, close. */
async function freshLatency() {
  const times = [];
  for (let i = 0; i < FRESH; i++) {
    const pool = new SshPool({ max: 1 });
    const t = new SshTransport({ pool, host });
    const t0 = performance.now();
    const r = await t.exec(['true']);
    times.push(performance.now() - t0);
    await pool.close();
    if (r.exitCode !== 0) throw new Error('exec failed');
  }
  return summary(times);
}

/**
 * The peer a shell user has: OpenSSH's own multiplexing (`ssh -S socket`, a ControlMaster
 * started once), one `ssh` process per command. Null when no `ssh` client is installed.
 */
async function opensshMuxLatency() {
  if (spawnSync('ssh', ['-V']).error) return null;
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-ssh-'));
  const socket = join(dir, 'ctl');
  const common = [
    ['-p', String(host.port)],
    ['-i', host.privateKeyPath],
    ['-o', `UserKnownHostsFile=${host.knownHostsPath}`],
    ['-o', 'StrictHostKeyChecking=yes'],
    ['-o', 'BatchMode=yes'],
    ['-o', 'IdentitiesOnly=yes'],
    ['-F', '/dev/null'],
  ].flat();
  const target = `${host.username}@${host.host}`;
  const master = spawn('ssh', [...common, '-M', '-S', socket, '-N', target], { stdio: 'ignore' });
  const run = (argv) =>
    new Promise((resolve, reject) => {
      const child = spawn('ssh', argv, { stdio: 'ignore' });
      child.on('error', reject);
      child.on('exit', (code) => resolve(code));
    });
  try {
    const ready = Date.now() + 10_000;
    while ((await run([...common, '-S', socket, '-O', 'check', target])) !== 0) {
      if (Date.now() > ready) return null;
      await new Promise((r) => setTimeout(r, 50));
    }
    const exec = () => run([...common, '-S', socket, target, 'true']);
    for (let i = 0; i < 10; i++) await exec();
    const times = [];
    for (let i = 0; i < Math.min(POOLED, 200); i++) {
      const t0 = performance.now();
      if ((await exec()) !== 0) throw new Error('ssh -S exec failed');
      times.push(performance.now() - t0);
    }
    return summary(times);
  } finally {
    master.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function throughput(callers) {
  // 4 connections x 8 sessions: 32 callers never wait for a session.
  const pool = new SshPool({ max: 4 });
  const t = new SshTransport({ pool, host });
  try {
    await Promise.all(Array.from({ length: Math.min(callers, 32) }, () => t.exec(['true'])));
    const times = [];
    const until = performance.now() + SECONDS * 1000;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: callers }, async () => {
        while (performance.now() < until) {
          const t0 = performance.now();
          await t.exec(['true']);
          times.push(performance.now() - t0);
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    return {
      callers,
      perSecond: times.length / elapsed,
      ...summary(times),
      connections: pool.stats().hosts[0]?.peakConnections ?? 0,
    };
  } finally {
    await pool.close();
  }
}

console.log(
  `bench/ssh-pool: ${host.username}@${host.host}:${host.port}, Node ${process.version}, ` +
    `${cpus().length} CPUs, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}${quick ? ' (quick)' : ''}`,
);
const pooled = await pooledLatency();
const fresh = await freshLatency();
const ratio = fresh.median / pooled.median;
console.log('\nexec latency (`true`, one caller)');
console.log(
  `  pooled connection        median ${ms(pooled.median).padStart(10)}   p99 ${ms(pooled.p99).padStart(10)}   (n=${pooled.n})`,
);
console.log(
  `  fresh connection/command median ${ms(fresh.median).padStart(10)}   p99 ${ms(fresh.p99).padStart(10)}   (n=${fresh.n})`,
);
console.log(
  `  ratio (fresh / pooled, median): ${ratio.toFixed(1)}x faster pooled; p99 ${(fresh.p99 / pooled.p99).toFixed(1)}x`,
);

const mux = await opensshMuxLatency();
if (mux) {
  console.log(
    `  OpenSSH ControlMaster    median ${ms(mux.median).padStart(10)}   p99 ${ms(mux.p99).padStart(10)}   (n=${mux.n}; one \`ssh -S\` process per command)`,
  );
  console.log(
    `  ratio (ControlMaster / pooled, median): ${(mux.median / pooled.median).toFixed(1)}x faster pooled`,
  );
} else console.log('  OpenSSH ControlMaster: not run (no ssh client, or the master did not start)');

console.log(`\nthroughput (pool of max 4 connections x 8 sessions, ${SECONDS} s per level)`);
const levels = [];
for (const callers of LEVELS) {
  const r = await throughput(callers);
  levels.push(r);
  console.log(
    `  ${String(callers).padStart(2)} callers: ${r.perSecond.toFixed(0).padStart(6)} commands/s   ` +
      `latency median ${ms(r.median).padStart(10)}   p99 ${ms(r.p99).padStart(10)}   connections ${r.connections}`,
  );
}
const base = levels[0]?.perSecond ?? 1;
console.log(
  `  scaling: ${levels.map((l) => `${l.callers} -> ${(l.perSecond / base).toFixed(1)}x`).join(', ')}`,
);

if (args.out) {
  writeFileSync(
    args.out,
    `${JSON.stringify({ at: new Date().toISOString(), host: `${host.username}@${host.host}:${host.port}`, loadavg: loadavg(), pooled, fresh, ratio, opensshControlMaster: mux, throughput: levels }, null, 2)}\n`,
  );
  console.log(`\nJSON written to ${args.out}`);
}
