// Crash recovery: a runner process (a child node running the built package) submits 20 jobs,
// stores their handles in a file, cancels two, and is killed with SIGKILL while all of them
// run. A new runner built from the stored handles alone follows every job to its true end.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isTerminalRunnerState, type RunnerHandle, type RunnerStatus } from '@crystalmath/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalRunner } from '../index.js';
import { groupMembers, isAlive, killHandle, type Scratch, scratch, waitUntil } from './helpers.js';

const DIST = join(dirname(fileURLToPath(import.meta.url)), '../../dist/index.js');

interface Expected {
  readonly state: RunnerStatus['state'];
  readonly exitCode?: number;
  readonly signal?: string;
}

const CHILD = `
import { renameSync, writeFileSync } from 'node:fs';
const { LocalRunner } = await import(process.env.CM_DIST);
const [home, out, go] = process.argv.slice(2);
const runner = new LocalRunner({ home, root: 'jobs', killGraceMs: 2000 });
// Jobs wait for the go file, which the test creates after this process is dead: they are
// all running when it dies, however slow the machine is.
const gated = (tail) => ['sh', '-c', 'while [ ! -e "$1" ]; do sleep 0.05; done; ' + tail, 'sh', go];
const jobs = [];
for (let i = 0; i < 6; i++) jobs.push({ spec: { name: 'ok', argv: gated('sleep 0.5') }, expect: { state: 'succeeded', exitCode: 0 } });
for (const code of [1, 2, 3, 7, 42, 126]) jobs.push({ spec: { name: 'bad', argv: gated('exit ' + code) }, expect: { state: 'failed', exitCode: code } });
for (let i = 0; i < 5; i++) jobs.push({ spec: { name: 'slow', argv: gated('sleep 60'), resources: { walltimeSeconds: 3 } }, expect: { state: 'timeout' } });
jobs.push({ spec: { name: 'script', script: 'while [ ! -e "$CM_GO" ]; do sleep 0.05; done\\necho done > done.txt\\n', env: { CM_GO: go } }, expect: { state: 'succeeded', exitCode: 0 } });
// Ignore SIGTERM: only the SIGKILL that the detached helper sends after the grace period,
// once this process is dead, can end them.
for (let i = 0; i < 2; i++) jobs.push({ spec: { name: 'stubborn', argv: ['sh', '-c', 'trap "" TERM; sleep 60 & wait'] }, expect: { state: 'cancelled', signal: 'SIGKILL' }, cancel: true });
const stored = [];
for (const [i, job] of jobs.entries()) {
  const handle = await runner.submit({ key: 'kill-' + i + '-' + process.pid, spec: job.spec });
  stored.push({ handle, expect: job.expect, cancel: job.cancel === true });
  writeFileSync(out + '.tmp', JSON.stringify(stored));
  renameSync(out + '.tmp', out);
}
for (const s of stored) if (s.cancel) await runner.cancel(s.handle);
process.stdout.write('ready\\n');
setInterval(() => {}, 1000);
`;

describe('a runner killed with SIGKILL while 20 jobs run', { timeout: 60_000 }, () => {
  let s: Scratch;
  let stored: { handle: RunnerHandle; expect: Expected; cancel: boolean }[] = [];

  beforeAll(async () => {
    s = await scratch('cm-rp-kill-');
  });
  afterAll(async () => {
    for (const j of stored) killHandle(j.handle);
    await s.dispose();
  });

  it('leaves jobs whose every outcome a fresh runner reports from the stored handles', async () => {
    expect(existsSync(DIST), `build the package first (${DIST})`).toBe(true);
    const script = join(s.home, 'child.mjs');
    const out = join(s.home, 'handles.json');
    const go = join(s.home, 'go');
    await writeFile(script, CHILD);
    const child = spawn(process.execPath, [script, s.home, out, go], {
      env: { ...process.env, CM_DIST: DIST },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_c, sig) => r(sig)));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        if (b.toString().includes('ready')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`the child exited early (${code})`)));
    });
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    stored = JSON.parse(await readFile(out, 'utf8'));
    expect(stored).toHaveLength(20);
    const runner = new LocalRunner({ home: s.home, root: 'jobs' });
    const handles = stored.map((j) => j.handle);
    const first = await runner.poll(handles);
    // Only the walltime (3 s, on a loaded machine) may have ended a job before the go file.
    for (const [i, j] of stored.entries()) {
      const allowed = j.expect.state === 'timeout' ? ['running', 'timeout'] : ['running'];
      expect(allowed, `job ${i}`).toContain(first[i]?.state);
    }
    await writeFile(go, '');

    let last: RunnerStatus[] = first;
    await waitUntil(
      async () => {
        last = await runner.poll(handles);
        return last.every((st) => isTerminalRunnerState(st.state));
      },
      30_000,
      'every job to end',
    );
    for (const [i, j] of stored.entries()) {
      expect({ i, ...last[i] }).toMatchObject({ i, ...j.expect });
    }
    expect(existsSync(join(s.home, 'jobs', stored[17]?.handle.jobKey ?? '', 'done.txt'))).toBe(
      true,
    );
    for (const j of stored) {
      expect(groupMembers(j.handle.data.pgid as number)).toEqual([]);
      expect(isAlive(j.handle.data.wrapperPid as number)).toBe(false);
    }
  });
});
