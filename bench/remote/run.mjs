#!/usr/bin/env node
// bench/remote: what a remote operation costs at 0 and 30 ms round trip, against the testbed's
// sshd and SLURM. The 30 ms link is emulated by a loopback TCP proxy that holds every chunk
// 15 ms each way (delay-proxy.mjs: `tc netem` is missing from these kernels; loopback itself is
// never slowed). Printed per link:
//   - small-command latency (`true`, one caller, median and p99): ssh-pool's command channel,
//     an exec channel per command (`commandChannel: false`), a fresh connection per command,
//     and OpenSSH's ControlMaster (one `ssh -S` process per command);
//   - SLURM submissions per second over SSH (held jobs, cancelled at the end) and round trips
//     per submit (transport calls, and commands the command channel ran).
// Goals (issue 17): a small command in at most 1 RTT + 2 ms; on loopback at least 50x faster
// than a fresh connection; submit in at most 2 round trips.
//
// Build first: pnpm turbo run build --filter=@crystalmath/runner-slurm...
//   node bench/remote/run.mjs [--quick] [--n=200] [--fresh=20] [--submits=20] [--delays=0,15]

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { delayProxy } from './delay-proxy.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const pkg = (name) => join(here, '..', '..', 'packages', name, 'dist', 'index.js');

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k, v ?? 'true'];
  }),
);
const quick = args.quick === 'true';
const N = Number(args.n ?? (quick ? 40 : 200));
const FRESH = Number(args.fresh ?? (quick ? 5 : 20));
const SUBMITS = Number(args.submits ?? (quick ? 5 : 20));
const DELAYS = String(args.delays ?? '0,15')
  .split(',')
  .map(Number);

function fail(message) {
  console.error(`bench/remote: ${message}`);
  process.exit(1);
}
for (const name of ['ssh-pool', 'runner-slurm']) {
  if (!existsSync(pkg(name))) fail(`${pkg(name)} is missing: build @crystalmath/${name} first`);
}
const envFile = join(process.env.CRYSTALMATH_TESTBED_DIR || '/tmp/crystalmath-testbed', 'env.json');
if (!existsSync(envFile)) fail(`${envFile} not found: start the testbed (scripts/testbed up)`);
const env = JSON.parse(readFileSync(envFile, 'utf8'));
if (!env.ssh) fail('no ssh service in the testbed');

const { SshPool, SshTransport } = await import(pathToFileURL(pkg('ssh-pool')).href);
const { SlurmRunner } = await import(pathToFileURL(pkg('runner-slurm')).href);

const quantile = (values, q) => {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? Number.NaN;
};
const summary = (values) => ({
  n: values.length,
  median: quantile(values, 0.5),
  p99: quantile(values, 0.99),
});
const fmt = (v) => `${v.toFixed(2)} ms`.padStart(11);
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

async function timeCommands(t, n) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await t.exec(['true']);
    times.push(performance.now() - t0);
    if (r.exitCode !== 0) throw new Error('exec failed');
  }
  return summary(times);
}

async function pooled(host, commandChannel) {
  const pool = new SshPool({ max: 1, commandChannel });
  const t = new SshTransport({ pool, host });
  try {
    // Connect, start the command channel, warm up.
    for (let i = 0; i < 20 || (commandChannel && pool.stats().hosts[0].commands.channel < 5); i++) {
      await t.exec(['true']);
    }
    const before = pool.stats().hosts[0].commands;
    const s = await timeCommands(t, N);
    const after = pool.stats().hosts[0].commands;
    return { ...s, viaChannel: after.channel - before.channel };
  } finally {
    await pool.close();
  }
}

async function fresh(host) {
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

async function controlMaster(host) {
  if (spawnSync('ssh', ['-V']).error) return null;
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-remote-ssh-'));
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
    const ready = Date.now() + 15_000;
    while ((await run([...common, '-S', socket, '-O', 'check', target])) !== 0) {
      if (Date.now() > ready) return null;
      await new Promise((r) => setTimeout(r, 50));
    }
    const times = [];
    for (let i = 0; i < 5 + Math.min(N, 100); i++) {
      const t0 = performance.now();
      if ((await run([...common, '-S', socket, target, 'true'])) !== 0) throw new Error('ssh -S');
      if (i >= 5) times.push(performance.now() - t0);
    }
    return summary(times);
  } finally {
    master.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Counts transport calls by method (each at least one round trip). */
function counting(inner) {
  const calls = {};
  const transport = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      return (...a) => {
        if (prop !== 'hostConfig') calls[prop] = (calls[prop] ?? 0) + 1;
        return value.apply(target, a);
      };
    },
  });
  return { transport, calls };
}

async function submissions(host) {
  if (!env.slurm) return null;
  const pool = new SshPool({ max: 1 });
  const ssh = new SshTransport({ pool, host });
  const { transport, calls } = counting(ssh);
  const root = `cm-bench-remote-${Date.now().toString(36)}`;
  const runner = new SlurmRunner({
    transport,
    root,
    defaults: { cpusPerTask: 1, memoryMb: 64, partition: env.slurm.partition },
    pollMinIntervalMs: 0,
  });
  const ids = [];
  try {
    for (let i = 0; i < 20 || pool.stats().hosts[0].commands.channel < 5; i++) {
      await ssh.exec(['true']);
    }
    for (const k of Object.keys(calls)) delete calls[k];
    const before = pool.stats().hosts[0].commands;
    const t0 = performance.now();
    for (let i = 0; i < SUBMITS; i++) {
      // Held: they never run, so the shared cluster pays nothing; cancelled below.
      const h = await runner.submit({
        key: `bench-${Date.now().toString(36)}-${i}`,
        spec: {
          name: 'bench',
          argv: ['true'],
          inputs: [
            { content: 'a\n', to: 'in/a.txt' },
            { content: 'b\n', to: 'in/b.txt' },
          ],
          resources: { extraDirectives: ['--hold'] },
        },
      });
      ids.push(String(h.data.jobId));
    }
    const seconds = (performance.now() - t0) / 1000;
    const after = pool.stats().hosts[0].commands;
    const total = Object.values(calls).reduce((a, b) => a + b, 0);
    return {
      perSecond: SUBMITS / seconds,
      transportCallsPerSubmit: total / SUBMITS,
      channelCommandsPerSubmit: (after.channel - before.channel) / SUBMITS,
      execChannelsPerSubmit: (after.exec - before.exec) / SUBMITS,
      calls: { ...calls },
    };
  } finally {
    if (ids.length > 0) await ssh.exec(['scancel', ...ids]).catch(() => undefined);
    await ssh.remove(root).catch(() => undefined);
    await pool.close();
  }
}

console.log(
  `bench/remote: ${env.ssh.user}@${env.ssh.host}:${env.ssh.port}, Node ${process.version}, ` +
    `${cpus().length} CPUs, load average ${load()}${quick ? ' (quick)' : ''}`,
);
console.log(
  'latency: a loopback TCP proxy holding every chunk D ms each way (RTT = 2D; tc netem is not available)',
);
const results = [];
const dir = mkdtempSync(join(tmpdir(), 'cm-bench-remote-'));
try {
  for (const delayMs of DELAYS) {
    const proxy = await delayProxy({ host: env.ssh.host, port: env.ssh.port, delayMs });
    const knownHostsPath = join(dir, `known_hosts_${proxy.port}`);
    writeFileSync(knownHostsPath, `[127.0.0.1]:${proxy.port} ${env.ssh.hostPublicKey}\n`);
    const host = {
      host: '127.0.0.1',
      port: proxy.port,
      username: env.ssh.user,
      privateKeyPath: env.ssh.privateKeyPath,
      knownHostsPath,
    };
    try {
      const rtt = 2 * delayMs;
      console.log(`\nround trip ${rtt} ms (proxy ${delayMs} ms each way)`);
      const channel = await pooled(host, true);
      const exec = await pooled(host, false);
      const cold = await fresh(host);
      const mux = await controlMaster(host);
      const row = (label, s, extra = '') =>
        console.log(
          `  ${label.padEnd(28)} median ${fmt(s.median)}   p99 ${fmt(s.p99)}   (n=${s.n})${extra}`,
        );
      row('command channel', channel, `  [${channel.viaChannel}/${channel.n} on the channel]`);
      row('exec channel per command', exec);
      row('fresh connection per command', cold);
      if (mux) row('OpenSSH ControlMaster', mux);
      const goal = rtt + 2;
      console.log(
        `  goal: command channel <= 1 RTT + 2 ms = ${goal} ms: ${channel.median <= goal ? 'PASS' : 'FAIL'} (median ${channel.median.toFixed(2)} ms)`,
      );
      const speedup = cold.median / channel.median;
      console.log(
        `  fresh / command channel: ${speedup.toFixed(1)}x; exec / command channel: ${(exec.median / channel.median).toFixed(1)}x${
          mux
            ? `; ControlMaster / command channel: ${(mux.median / channel.median).toFixed(1)}x`
            : ''
        }${rtt === 0 ? ` (goal on loopback >= 50x: ${speedup >= 50 ? 'PASS' : 'FAIL'})` : ''}`,
      );
      const sub = await submissions(host);
      if (sub) {
        console.log(
          `  SLURM submit over SSH: ${sub.perSecond.toFixed(1)} submissions/s (one caller, n=${SUBMITS}, 2 inputs each); ` +
            `${sub.transportCallsPerSubmit.toFixed(2)} transport calls per submit, ` +
            `${sub.channelCommandsPerSubmit.toFixed(2)} on the command channel (1 round trip each), ` +
            `${sub.execChannelsPerSubmit.toFixed(2)} exec channels (goal <= 2 round trips: ${
              sub.transportCallsPerSubmit <= 2 && sub.execChannelsPerSubmit === 0 ? 'PASS' : 'FAIL'
            })`,
        );
      } else {
        console.log('  SLURM submit: skipped (no slurm service in the testbed)');
      }
      results.push({ rttMs: rtt, channel, exec, fresh: cold, controlMaster: mux, submit: sub });
    } finally {
      await proxy.close();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`\nload average at the end: ${load()}`);
if (args.out) writeFileSync(args.out, JSON.stringify({ load: loadavg(), results }, null, 2));
