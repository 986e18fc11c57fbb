// Behaviour of the process runner beyond conformance, against real processes on this machine:
// setup failures, cancel of whole process trees, lost jobs and PID reuse, walltime,
// crash-recovery lookups, cleanup, tailing and input validation.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isCrystalMathError, LocalTransport, type RunnerHandle } from '@crystalmath/core';
import { testJobKey, waitForState, waitForTerminal } from '@crystalmath/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalRunner, ProcessRunner } from '../index.js';
import {
  groupMembers,
  isAlive,
  killHandle,
  num,
  type Scratch,
  scratch,
  waitUntil,
} from './helpers.js';

let s: Scratch;
let runner: ProcessRunner;
const started: RunnerHandle[] = [];

beforeAll(async () => {
  s = await scratch();
  runner = s.runner();
});
afterAll(async () => {
  for (const h of started) killHandle(h);
  await s.dispose();
});

async function submit(
  spec: Parameters<ProcessRunner['submit']>[0]['spec'],
  key = testJobKey('rp'),
): Promise<RunnerHandle> {
  const h = await runner.submit({ key, spec });
  started.push(h);
  return h;
}

/**
 * How long a wait for an event of a real process (a job ends, a killed process is gone) may
 * take before the test fails: generous, as CI shares two cores with CPU-bound neighbours. The
 * bounds that are the behaviour under test (e.g. the walltime's stop) are written where used.
 */
const EVENT_TIMEOUT_MS = 45_000;
/**
 * A job over its walltime ends by the runner's TERM then KILL, not by itself: its tree would
 * run WALL_TREE_S; this generous bound sits far below that and far above a loaded machine.
 */
const WALL_STOP_BOUND_MS = 60_000;
const WALL_TREE_S = 600;

const finish = (h: RunnerHandle) => waitForTerminal(runner, h, EVENT_TIMEOUT_MS, 25);
const jobFile = (h: RunnerHandle, rel: string) => join(s.home, 'jobs', h.jobKey, rel);

describe('setup failures', () => {
  it('reports failed with a reason when the workdir cannot be entered, not lost', async () => {
    const h = await submit({
      name: 'badcd',
      argv: ['true'],
      inputs: [{ content: 'a file, not a directory', to: 'blocker' }],
      workdir: 'blocker/sub',
    });
    const st = await finish(h);
    expect(st.state).toBe('failed');
    expect(st.reason).toMatch(/setup failed: cannot enter workdir blocker\/sub/);
  });

  it('reports failed with a reason when module load is impossible', async () => {
    const h = await submit({ name: 'mod', argv: ['true'], modules: ['no-such-module/1.0'] });
    const st = await finish(h);
    expect(st.state).toBe('failed');
    expect(st.reason).toMatch(/setup failed: .*module/);
  });

  it('reports a plain non-zero exit by its exit code alone, with no reason repeating it', async () => {
    const st = await finish(await submit({ name: 'exit3', argv: ['sh', '-c', 'exit 3'] }));
    expect(st).toMatchObject({ state: 'failed', exitCode: 3 });
    expect(st.reason).toBeUndefined();
  });

  it('reports a failing pre command with its exit status and never runs the main command', async () => {
    const h = await submit({
      name: 'pre',
      argv: ['sh', '-c', 'echo ran > main.txt'],
      pre: [['sh', '-c', 'exit 4']],
    });
    const st = await finish(h);
    expect(st).toMatchObject({ state: 'failed', exitCode: 4 });
    expect(st.reason).toMatch(/pre\[0\] exited with status 4/);
    expect(existsSync(jobFile(h, 'main.txt'))).toBe(false);
  });

  it('runs post commands after a failing main command and keeps its exit code', async () => {
    const h = await submit({
      name: 'post',
      argv: ['sh', '-c', 'exit 2'],
      post: [['sh', '-c', 'echo post > post.txt'], ['false']],
    });
    expect(await finish(h)).toMatchObject({ state: 'failed', exitCode: 2 });
    expect(await readFile(jobFile(h, 'post.txt'), 'utf8')).toBe('post\n');
  });

  it('reports a missing program as failed with exit code 127', async () => {
    const h = await submit({ name: 'nocmd', argv: ['/no/such/program-xyz'] });
    expect(await finish(h)).toMatchObject({ state: 'failed', exitCode: 127 });
  });
});

describe('cancel', () => {
  it('kills the whole process tree, grandchildren that ignore SIGTERM included', async () => {
    const r = s.runner({ killGraceMs: 300 });
    const h = await r.submit({
      key: testJobKey('tree'),
      spec: {
        name: 'tree',
        // Everything ignores SIGTERM, so only the SIGKILL after the grace period ends it.
        argv: ['sh', '-c', 'trap "" TERM; sleep 300 & echo $! > bg.pid; sleep 300 & wait'],
      },
    });
    started.push(h);
    await waitUntil(() => existsSync(jobFile(h, 'bg.pid')), EVENT_TIMEOUT_MS, 'bg.pid');
    const bg = Number((await readFile(jobFile(h, 'bg.pid'), 'utf8')).trim());
    const pgid = num(h, 'pgid');
    expect(isAlive(bg)).toBe(true);
    expect(groupMembers(pgid).length).toBeGreaterThanOrEqual(3);
    await r.cancel(h);
    const st = await waitForTerminal(r, h, EVENT_TIMEOUT_MS, 25);
    expect(st.state).toBe('cancelled');
    expect(st.signal).toBe('SIGKILL');
    expect(isAlive(bg)).toBe(false);
    expect(groupMembers(pgid)).toEqual([]);
    expect(isAlive(num(h, 'wrapperPid'))).toBe(false);
  });

  it('reports cancelled, and never starts the job, when cancel lands before the wrapper starts it', async () => {
    // Fault injection for a race: the cancel marker appears just before the launch command.
    const key = testJobKey('early');
    const racing = new Proxy(s.transport, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (prop !== 'exec') return typeof value === 'function' ? value.bind(target) : value;
        return async (...args: Parameters<typeof target.exec>) => {
          const cmd = args[0];
          if (
            !Array.isArray(cmd) &&
            /mkdir \.cm\/launched/.test((cmd as { script: string }).script)
          ) {
            await writeFile(join(s.home, 'jobs', key, '.cm', 'cancelled'), '');
          }
          return target.exec(...args);
        };
      },
    });
    const r = new ProcessRunner({ transport: racing, root: 'jobs', killGraceMs: 200 });
    const h = await r.submit({
      key,
      spec: { name: 'early', argv: ['sh', '-c', 'echo ran > ran.txt'] },
    });
    const st = await waitForTerminal(r, h, EVENT_TIMEOUT_MS, 25);
    expect(st.state).toBe('cancelled');
    expect(st.reason).toMatch(/before it started/);
    expect(existsSync(jobFile(h, 'ran.txt'))).toBe(false);
    expect(existsSync(jobFile(h, '.cm/job'))).toBe(false);
  });

  it('is a no-op for a job whose directory was cleaned up', async () => {
    const h = await submit({ name: 'gone', argv: ['true'] });
    await finish(h);
    await runner.cleanup(h);
    await expect(runner.cancel(h)).resolves.toBeUndefined();
  });
});

describe('status that cannot lie', () => {
  it('reports lost when the wrapper and the job were killed without an exit record', async () => {
    const h = await submit({ name: 'victim', argv: ['sleep', '300'] });
    // The group the handle names exists once submit returned (setsid already ran in the job).
    expect(groupMembers(num(h, 'pgid'))).toContain(num(h, 'pid'));
    process.kill(num(h, 'wrapperPid'), 'SIGKILL');
    process.kill(-num(h, 'pgid'), 'SIGKILL');
    await waitUntil(() => !isAlive(num(h, 'pid')), EVENT_TIMEOUT_MS, 'the job to die');
    const [st] = await runner.poll([h]);
    expect(st?.state).toBe('lost');
    expect(st?.reason).toMatch(/no exit record/);
    expect(existsSync(jobFile(h, '.cm/exit'))).toBe(false);
  });

  it('reports lost, not running, when the PIDs now belong to other processes', async () => {
    const h = await submit({ name: 'reuse', argv: ['sleep', '300'] });
    process.kill(num(h, 'wrapperPid'), 'SIGKILL');
    process.kill(-num(h, 'pgid'), 'SIGKILL');
    // Another live process now answers to the handle's PIDs (as after PID reuse): its start
    // time differs from the one the handle recorded.
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const pid = other.pid as number;
      const forged = { ...h, data: { ...h.data, wrapperPid: pid, pid, pgid: pid } };
      expect(isAlive(pid)).toBe(true);
      const [st, again] = await runner.poll([forged, JSON.parse(JSON.stringify(forged))]);
      expect(st?.state).toBe('lost');
      expect(again?.state).toBe('lost');
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('reports lost for a live process of another boot or another start time', async () => {
    const h = await submit({ name: 'boot', argv: ['sleep', '300'] });
    expect((await runner.poll([h]))[0]?.state).toBe('running');
    const otherBoot = { ...h, data: { ...h.data, bootId: '00000000-0000-0000-0000-000000000000' } };
    const otherStart = {
      ...h,
      data: {
        ...h.data,
        wrapperStartTime: num(h, 'wrapperStartTime') + 1,
        startTime: num(h, 'startTime') + 1,
      },
    };
    const [a, b] = await runner.poll([otherBoot, otherStart]);
    expect(a?.state).toBe('lost');
    expect(b?.state).toBe('lost');
    await runner.cancel(h);
    expect((await finish(h)).state).toBe('cancelled');
  });

  it('keeps reporting running while the job runs after its wrapper died', async () => {
    const h = await submit({ name: 'orphan', argv: ['sleep', '300'] });
    process.kill(num(h, 'wrapperPid'), 'SIGKILL');
    await waitUntil(() => !isAlive(num(h, 'wrapperPid')), EVENT_TIMEOUT_MS, 'the wrapper to die');
    const [st] = await runner.poll([h]);
    expect(st?.state).toBe('running');
    expect(st?.reason).toMatch(/wrapper is gone/);
    // Cancel still reaches the job; with the wrapper gone the poll reads the marker.
    await runner.cancel(h);
    const end = await finish(h);
    expect(end.state).toBe('cancelled');
    expect(isAlive(num(h, 'pid'))).toBe(false);
  });

  it('reports failed with the signal when someone else terminates the wrapper', async () => {
    const h = await submit({ name: 'termw', argv: ['sleep', '300'] });
    process.kill(num(h, 'wrapperPid'), 'SIGTERM');
    const st = await finish(h);
    expect(st.state).toBe('failed');
    expect(st.reason).toMatch(/wrapper received SIGTERM/);
    expect(isAlive(num(h, 'pid'))).toBe(false);
  });
});

describe('resources', () => {
  it('exports OMP_NUM_THREADS from cpusPerTask, and the job key', async () => {
    const h = await submit({
      name: 'omp',
      argv: ['sh', '-c', 'printf "%s %s" "$OMP_NUM_THREADS" "$CM_JOB_KEY" > omp.txt'],
      resources: { cpusPerTask: 3 },
    });
    expect((await finish(h)).state).toBe('succeeded');
    expect(await readFile(jobFile(h, 'omp.txt'), 'utf8')).toBe(`3 ${h.jobKey}`);
  });

  it('applies its defaults under the job resources (the job wins field by field), checked at construction', async () => {
    const r = s.runner({ defaults: { cpusPerTask: 2, walltimeSeconds: 600 } });
    const script = 'printf "%s" "$OMP_NUM_THREADS" > omp.txt';
    const [byDefault, own] = await Promise.all([
      r.submit({ key: testJobKey('dflt'), spec: { name: 'd', argv: ['sh', '-c', script] } }),
      r.submit({
        key: testJobKey('own'),
        spec: { name: 'o', argv: ['sh', '-c', script], resources: { cpusPerTask: 5 } },
      }),
    ]);
    started.push(byDefault, own);
    expect((await waitForTerminal(r, byDefault, EVENT_TIMEOUT_MS, 25)).state).toBe('succeeded');
    expect((await waitForTerminal(r, own, EVENT_TIMEOUT_MS, 25)).state).toBe('succeeded');
    expect(await readFile(jobFile(byDefault, 'omp.txt'), 'utf8')).toBe('2');
    expect(await readFile(jobFile(own, 'omp.txt'), 'utf8')).toBe('5');
    let field: unknown;
    try {
      s.runner({ defaults: { cpusPerTask: 0 } });
    } catch (e) {
      field = isCrystalMathError(e, 'E_VALIDATION') ? e.details.field : e;
    }
    expect(field).toBe('defaults.cpusPerTask');
  });

  it('stops a job tree over its walltime with TERM then KILL, and reports timeout', async () => {
    const r = s.runner({ killGraceMs: 200 });
    const h = await r.submit({
      key: testJobKey('wall'),
      spec: {
        name: 'wall',
        argv: ['sh', '-c', `trap "" TERM; sleep ${WALL_TREE_S} & echo $! > bg.pid; wait`],
        resources: { walltimeSeconds: 1 },
      },
    });
    started.push(h);
    const t0 = Date.now();
    const st = await waitForTerminal(r, h, EVENT_TIMEOUT_MS, 25);
    expect(st.state).toBe('timeout');
    expect(st.reason).toMatch(/walltime of 1 s exceeded/);
    expect(Date.now() - t0).toBeLessThan(WALL_STOP_BOUND_MS);
    const bg = Number((await readFile(jobFile(h, 'bg.pid'), 'utf8')).trim());
    expect(isAlive(bg)).toBe(false);
    expect(groupMembers(num(h, 'pgid'))).toEqual([]);
  });

  it('does not leave the watchdog behind when the job ends before its walltime', async () => {
    const h = await submit({ name: 'quick', argv: ['true'], resources: { walltimeSeconds: 600 } });
    expect((await finish(h)).state).toBe('succeeded');
    // The watchdog leads its own session: find it by its command line.
    const dir = join(s.home, 'jobs', h.jobKey);
    const watchdogs = () =>
      execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.includes(`${dir}/.cm/wrapper.sh watchdog`));
    await waitUntil(() => watchdogs().length === 0, EVENT_TIMEOUT_MS, 'the watchdog to exit');
  });

  it('starts a watchdog for a job with a walltime (the check above can see one)', async () => {
    const h = await submit({
      name: 'wd',
      argv: ['sleep', '300'],
      resources: { walltimeSeconds: 600 },
    });
    const dir = join(s.home, 'jobs', h.jobKey);
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    expect(ps).toContain(`${dir}/.cm/wrapper.sh watchdog`);
    await runner.cancel(h);
    expect((await finish(h)).state).toBe('cancelled');
  });
});

describe('find, cleanup, tail', () => {
  it('finds a job from its directory alone, with the identities to re-attach', async () => {
    const key = testJobKey('find');
    const h = await submit({ name: 'find', argv: ['sleep', '300'], outputs: ['*.txt'] }, key);
    const found = await runner.find(key);
    expect(found).toEqual(JSON.parse(JSON.stringify(h)));
    await runner.cancel(found as RunnerHandle);
    expect((await finish(h)).state).toBe('cancelled');
  });

  it('treats a directory left by a crashed submission as never submitted, and reuses it when stale', async () => {
    const key = testJobKey('half');
    const dir = join(s.home, 'jobs', key);
    await mkdir(join(dir, '.cm'), { recursive: true });
    await writeFile(join(dir, '.cm', 'claim'), `${Math.floor(Date.now() / 1000)} deadbeef\n`);
    expect(await runner.find(key)).toBeNull();
    await expect(runner.submit({ key, spec: { name: 'x', argv: ['true'] } })).rejects.toSatisfy(
      (e) => isCrystalMathError(e, 'E_RUNNER_SUBMIT') && /in progress/.test((e as Error).message),
    );
    const patient = s.runner({ staleClaimSeconds: 0 });
    const h = await patient.submit({ key, spec: { name: 'x', argv: ['true'] } });
    expect((await waitForTerminal(patient, h, EVENT_TIMEOUT_MS, 25)).state).toBe('succeeded');
  });

  it('cleanup stops a running job and removes its directory', async () => {
    const h = await submit({ name: 'cleanrun', argv: ['sh', '-c', 'sleep 300 & wait'] });
    await runner.cleanup(h);
    expect(existsSync(join(s.home, 'jobs', h.jobKey))).toBe(false);
    await waitUntil(
      () => groupMembers(num(h, 'pgid')).length === 0,
      EVENT_TIMEOUT_MS,
      'the group to die',
    );
    expect(isAlive(num(h, 'wrapperPid'))).toBe(false);
    expect(await runner.find(h.jobKey)).toBeNull();
    expect((await runner.poll([h]))[0]?.state).toBe('lost');
  });

  it('tails stdout and stderr from offsets without splitting a UTF-8 character', async () => {
    const h = await submit({
      name: 'tail',
      argv: ['sh', '-c', 'printf "h\\303\\251llo\\n"; printf "oops\\n" >&2'],
    });
    await finish(h);
    const all = await runner.tail(h);
    expect(all).toEqual({ data: 'héllo\n', offset: 7 });
    // Offset 2 is inside é: the tail starts there, byte-exact, and decodes what it can.
    const mid = await runner.tail(h, { offset: 3 });
    expect(mid).toEqual({ data: 'llo\n', offset: 7 });
    expect(await runner.tail(h, { stream: 'stderr' })).toEqual({ data: 'oops\n', offset: 5 });
    expect(await runner.tail(h, { offset: 7 })).toEqual({ data: '', offset: 7 });
  });

  it('collects with ** globs and keeps relative paths', async () => {
    const h = await submit({
      name: 'coll',
      argv: ['sh', '-c', 'mkdir -p a/b && echo 1 > a/b/x.out && echo 2 > y.out && echo 3 > z.log'],
      outputs: ['**/*.out'],
    });
    await finish(h);
    const dest = join(s.home, 'collected');
    const r = await runner.collect(h, dest);
    expect([...r.files].sort()).toEqual(['a/b/x.out', 'y.out']);
    expect(r.bytes).toBe(4);
    expect(await readFile(join(dest, 'a/b/x.out'), 'utf8')).toBe('1\n');
  });
});

describe('validation', () => {
  it('rejects handles that point outside the root or carry non-numeric PIDs', async () => {
    const h = await submit({ name: 'v', argv: ['true'] });
    await finish(h);
    const bad: RunnerHandle[] = [
      { ...h, data: { ...h.data, jobDir: '/etc' } },
      { ...h, kind: 'slurm' },
      { ...h, jobKey: '../x' },
      { ...h, data: { ...h.data, pid: '1; touch /tmp/x' } },
      { ...h, data: { ...h.data, bootId: 'x y' } },
    ];
    for (const b of bad) {
      await expect(runner.poll([b])).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_RUNNER_HANDLE'),
      );
      await expect(runner.cleanup(b)).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_RUNNER_HANDLE'),
      );
    }
    expect(existsSync(jobFile(h, '.cm/exit'))).toBe(true);
  });

  it('rejects reserved env names and inputs inside .cm, and creates nothing', async () => {
    const key = testJobKey('resv');
    await expect(
      runner.submit({ key, spec: { name: 'r', argv: ['true'], env: { cm_dir: '/' } } }),
    ).rejects.toSatisfy(
      (e) =>
        isCrystalMathError(e, 'E_VALIDATION') && /spec\.env\.cm_dir/.test((e as Error).message),
    );
    await expect(
      runner.submit({
        key,
        spec: { name: 'r', argv: ['true'], inputs: [{ content: 'x', to: '.cm/exit' }] },
      }),
    ).rejects.toSatisfy(
      (e) => isCrystalMathError(e, 'E_VALIDATION') && /inputs\[0\]\.to/.test((e as Error).message),
    );
    expect(existsSync(join(s.home, 'jobs', key))).toBe(false);
  });

  it('rejects bad constructor options with the field named', () => {
    const t = s.transport;
    for (const [opts, field] of [
      [{ transport: t, root: '' }, 'root'],
      [{ transport: t, root: '/' }, 'root'],
      [{ transport: t, root: '../up' }, 'root'],
      [{ transport: t, root: 'a\nb' }, 'root'],
      [{ transport: t, root: 'jobs', killGraceMs: -1 }, 'killGraceMs'],
      [{ transport: t, root: 'jobs', shell: 'sh; rm -rf /' }, 'shell'],
      [{ transport: {}, root: 'jobs' }, 'transport'],
    ] as const) {
      expect(() => new ProcessRunner(opts as never)).toThrow(
        expect.objectContaining({ code: 'E_VALIDATION', field }),
      );
    }
  });

  it('gives up before writing anything when the signal has fired', async () => {
    const key = testJobKey('abort');
    const ac = new AbortController();
    ac.abort();
    await expect(
      runner.submit({ key, spec: { name: 'a', argv: ['true'] } }, { signal: ac.signal }),
    ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_ABORTED'));
    expect(existsSync(join(s.home, 'jobs', key))).toBe(false);
  });

  it('LocalRunner resolves a relative root against its home and an absolute root as is', async () => {
    const abs = new LocalRunner({ root: join(s.home, 'abs-root'), killGraceMs: 200 });
    const h = await abs.submit({ key: testJobKey('abs'), spec: { name: 'abs', argv: ['true'] } });
    expect((await waitForTerminal(abs, h, EVENT_TIMEOUT_MS, 25)).state).toBe('succeeded');
    expect(existsSync(join(s.home, 'abs-root', h.jobKey, '.cm', 'exit'))).toBe(true);
    const rel = new LocalRunner({ home: s.home, root: 'rel-root/./x/' });
    expect(rel.jobDir('k1')).toBe('rel-root/x/k1');
    await expect(waitForState(abs, h, 'succeeded', 1_000, 25)).resolves.toMatchObject({
      state: 'succeeded',
    });
  });
});

describe('without setsid', () => {
  /** A PATH with the tools the runner's scripts and these jobs use, minus setsid (and perl). */
  async function limitedPath(withPerl: boolean): Promise<string> {
    const bin = join(s.home, withPerl ? 'bin-perl' : 'bin-bare');
    await mkdir(bin, { recursive: true });
    const tools = [
      'sh',
      'mkdir',
      'date',
      'rm',
      'cat',
      'sleep',
      'mv',
      'tr',
      'find',
      'true',
      'printf',
      'basename',
    ];
    if (withPerl) tools.push('perl');
    for (const tool of tools) {
      const real = execFileSync('sh', ['-c', 'command -v "$1"', 'sh', tool], {
        encoding: 'utf8',
      }).trim();
      await symlink(real, join(bin, tool));
    }
    return bin;
  }

  it('falls back to perl POSIX::setsid: the job still leads its own process group and cancels as a tree', async () => {
    const path = await limitedPath(true);
    const r = new ProcessRunner({
      transport: new LocalTransport({ home: s.home, baseEnv: { PATH: path } }),
      root: 'jobs',
      killGraceMs: 200,
    });
    const h = await r.submit({
      key: testJobKey('perl'),
      spec: { name: 'perl', argv: ['sh', '-c', 'sleep 300 & echo $! > bg.pid; wait'] },
    });
    started.push(h);
    expect(num(h, 'pgid')).toBe(num(h, 'pid'));
    await waitUntil(() => existsSync(jobFile(h, 'bg.pid')), EVENT_TIMEOUT_MS, 'bg.pid');
    const bg = Number((await readFile(jobFile(h, 'bg.pid'), 'utf8')).trim());
    expect(groupMembers(num(h, 'pgid'))).toContain(bg);
    expect(groupMembers(num(h, 'wrapperPid'))).not.toContain(num(h, 'pid'));
    await r.cancel(h);
    expect((await waitForTerminal(r, h, EVENT_TIMEOUT_MS, 25)).state).toBe('cancelled');
    expect(isAlive(bg)).toBe(false);
  });

  it('refuses to submit, and frees the key, when neither setsid nor perl exists', async () => {
    const path = await limitedPath(false);
    const r = new ProcessRunner({
      transport: new LocalTransport({ home: s.home, baseEnv: { PATH: path } }),
      root: 'jobs',
    });
    const key = testJobKey('nosetsid');
    await expect(r.submit({ key, spec: { name: 'n', argv: ['true'] } })).rejects.toSatisfy(
      (e) =>
        isCrystalMathError(e, 'E_RUNNER_SUBMIT') &&
        /neither setsid nor perl/.test((e as Error).message),
    );
  });
});
