// The suite every Runner implementation must pass: submit, poll in one batch, cancel, find,
// exact argv/env delivery, validation that changes nothing, handles that survive JSON.

import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCrystalMathError } from '../errors.js';
import type { JobSpec } from '../job.js';
import type { Runner, RunnerHandle } from '../runner.js';
import { isTerminalRunnerState, type RunnerStatus } from '../status.js';
import { COMMAND_WORDS, NASTY_STRINGS } from './transport-conformance.js';

export interface RunnerFixture {
  readonly runner: Runner;
  /** Called once after the suite. */
  readonly cleanup?: () => Promise<void>;
}

export interface RunnerConformanceOptions {
  /** Longest a short job may take from submit to terminal state, in ms. Default 60 000. */
  readonly jobTimeoutMs?: number;
  /** Interval between polls while waiting, in ms. Default 200. */
  readonly pollIntervalMs?: number;
  /** Run the walltime test (a job with a 1 s limit that sleeps longer). Default true. */
  readonly walltime?: boolean;
  /** Smallest walltime the runner enforces, in seconds (SLURM: 60). Default 1. */
  readonly minWalltimeSeconds?: number;
}

/** Polls until the job reaches a terminal state, or throws after `timeoutMs`. */
export async function waitForTerminal(
  runner: Runner,
  handle: RunnerHandle,
  timeoutMs = 60_000,
  intervalMs = 200,
): Promise<RunnerStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [status] = await runner.poll([handle]);
    if (status && isTerminalRunnerState(status.state)) return status;
    if (Date.now() > deadline) {
      throw new Error(
        `job ${handle.jobKey} not terminal after ${timeoutMs} ms: ${JSON.stringify(status)}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Polls until the job reports `state` (or any terminal state), or throws after `timeoutMs`. */
export async function waitForState(
  runner: Runner,
  handle: RunnerHandle,
  state: RunnerStatus['state'],
  timeoutMs = 60_000,
  intervalMs = 200,
): Promise<RunnerStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [status] = await runner.poll([handle]);
    if (status && (status.state === state || isTerminalRunnerState(status.state))) return status;
    if (Date.now() > deadline) {
      throw new Error(
        `job ${handle.jobKey} did not reach ${state} in ${timeoutMs} ms: ${JSON.stringify(status)}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A unique job key for tests. */
export function testJobKey(prefix = 'conf'): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** Registers the Runner conformance suite under `describe(name)`. */
export function runnerConformance(
  name: string,
  makeFixture: () => Promise<RunnerFixture>,
  options: RunnerConformanceOptions = {},
): void {
  const jobTimeout = options.jobTimeoutMs ?? 60_000;
  const interval = options.pollIntervalMs ?? 200;
  const minWall = options.minWalltimeSeconds ?? 1;
  describe(`Runner conformance: ${name}`, { timeout: jobTimeout + 30_000 }, () => {
    let fx: RunnerFixture;
    let runner: Runner;
    let local: string;
    const submit = (spec: JobSpec, key = testJobKey()): Promise<RunnerHandle> =>
      runner.submit({ key, spec });
    const finish = (h: RunnerHandle): Promise<RunnerStatus> =>
      waitForTerminal(runner, h, jobTimeout, interval);

    /** The job's stdout, through `tail` or `collect`, whichever the runner has. */
    async function output(h: RunnerHandle, file = 'out.txt'): Promise<string> {
      if (runner.collect) {
        const dest = await mkdtemp(join(local, 'collect-'));
        await runner.collect(h, dest, { globs: [file] });
        return readFile(join(dest, file), 'utf8');
      }
      throw new Error('runner has neither collect nor tail: cannot read job output');
    }

    beforeAll(async () => {
      fx = await makeFixture();
      runner = fx.runner;
      local = await mkdtemp(join(tmpdir(), 'cm-runner-conf-'));
    }, 60_000);
    afterAll(async () => {
      await fx?.cleanup?.();
      await rm(local, { recursive: true, force: true });
    }, 60_000);

    it('declares its capabilities and kind', () => {
      expect(typeof runner.kind).toBe('string');
      expect(runner.capabilities.minPollIntervalMs).toBeGreaterThanOrEqual(0);
      // The queue trusts the declared capabilities (e.g. find-based recovery): each must match
      // the method being there.
      for (const cap of ['find', 'collect', 'cleanup', 'tail', 'validate'] as const) {
        expect(
          runner.capabilities[cap] === true,
          `capabilities.${cap} is ${String(runner.capabilities[cap])} but ${cap}() is ${typeof runner[cap] === 'function' ? 'present' : 'absent'}`,
        ).toBe(typeof runner[cap] === 'function');
      }
    });

    it('runs a job to success with exit code 0', async () => {
      const h = await submit({ name: 'ok', argv: ['true'] });
      expect(h.kind).toBe(runner.kind);
      const s = await finish(h);
      expect(s.state).toBe('succeeded');
      expect(s.exitCode).toBe(0);
    });

    it('reports a non-zero exit as failed with its exit code', async () => {
      const s = await finish(await submit({ name: 'fail3', argv: ['sh', '-c', 'exit 3'] }));
      expect(s.state).toBe('failed');
      expect(s.exitCode).toBe(3);
    });

    it('delivers argv and env values byte for byte', async () => {
      const env = { CM_VALUE: 'a\'b "c" $(x) `y` \n z ✓' };
      const h = await submit({
        name: 'argv',
        argv: [
          'sh',
          '-c',
          'printf "%s\\0" "$@" > out.txt; printf "%s" "$CM_VALUE" > env.txt',
          'sh',
          ...NASTY_STRINGS,
        ],
        env,
        outputs: ['out.txt', 'env.txt'],
      });
      expect((await finish(h)).state).toBe('succeeded');
      if (!runner.collect) return;
      expect((await output(h)).split('\0').slice(0, -1)).toEqual(NASTY_STRINGS);
      expect(await output(h, 'env.txt')).toBe(env.CM_VALUE);
    });

    it('runs each command word as a program, never as an assignment or a reserved word', async () => {
      const [assign, path, pre, post] = await Promise.all([
        submit({ name: 'assign', argv: ['X=1'] }),
        submit({ name: 'path', argv: ['PATH=/nonexistent', 'true'] }),
        submit({ name: 'pre-if', argv: ['true'], pre: [['if']] }),
        submit({ name: 'post-words', argv: ['true'], post: COMMAND_WORDS.map((w) => [w]) }),
      ]);
      const s = await Promise.all([finish(assign), finish(path), finish(pre), finish(post)]);
      expect(s[0], 'argv ["X=1"] must fail like execvp("X=1")').toMatchObject({
        state: 'failed',
        exitCode: 127,
      });
      expect(s[1], 'argv ["PATH=/nonexistent", "true"] must not run true').toMatchObject({
        state: 'failed',
        exitCode: 127,
      });
      expect(s[2], 'pre [["if"]] must fail like execvp("if")').toMatchObject({
        state: 'failed',
        exitCode: 127,
      });
      expect(s[3]?.state, 'post commands named like reserved words must not break the job').toBe(
        'succeeded',
      );
    });

    it('runs a script job in its workdir with staged inputs', async () => {
      const h = await submit({
        name: 'script',
        script: 'cat input.txt > out.txt\npwd >> out.txt\n',
        workdir: 'work/dir',
        inputs: [{ content: 'staged ✓\n', to: 'work/dir/input.txt' }],
      });
      expect((await finish(h)).state).toBe('succeeded');
      if (!runner.collect) return;
      const out = await output(h, 'work/dir/out.txt');
      expect(out.startsWith('staged ✓\n')).toBe(true);
      expect(out.trimEnd().endsWith('/work/dir')).toBe(true);
    });

    it('polls many handles in order, and an empty batch', async () => {
      expect(await runner.poll([])).toEqual([]);
      const a = await submit({ name: 'a', argv: ['sh', '-c', 'exit 0'] });
      const b = await submit({ name: 'b', argv: ['sh', '-c', 'exit 5'] });
      await finish(a);
      await finish(b);
      const [sa, sb, sa2] = await runner.poll([a, b, a]);
      expect([sa?.state, sb?.state, sa2?.state]).toEqual(['succeeded', 'failed', 'succeeded']);
      expect(sb?.exitCode).toBe(5);
    });

    it('accepts a handle that went through JSON', async () => {
      const h = await submit({ name: 'json', argv: ['true'] });
      const copy = JSON.parse(JSON.stringify(h)) as RunnerHandle;
      expect((await finish(copy)).state).toBe('succeeded');
    });

    it('cancels a running job: cancelled, never failed; cancel is idempotent', async () => {
      const h = await submit({ name: 'long', argv: ['sleep', '300'] });
      await waitForState(runner, h, 'running', jobTimeout, interval);
      await runner.cancel(h);
      const s = await finish(h);
      expect(s.state).toBe('cancelled');
      await runner.cancel(h);
      const [again] = await runner.poll([h]);
      expect(again?.state).toBe('cancelled');
    });

    it('does not change a finished job when cancelled', async () => {
      const h = await submit({ name: 'done', argv: ['true'] });
      await finish(h);
      await runner.cancel(h);
      expect((await runner.poll([h]))[0]?.state).toBe('succeeded');
    });

    it('rejects an invalid spec with a typed error naming the field, and submits nothing', async () => {
      const key = testJobKey('bad');
      const bad = { name: 'bad', argv: ['true'], workdir: '../escape' } as JobSpec;
      await expect(runner.submit({ key, spec: bad })).rejects.toSatisfy(
        (e) => isCrystalMathError(e) && /workdir/.test((e as Error).message),
      );
      const badRes = { name: 'bad', argv: ['true'], resources: { memoryMb: -1 } } as JobSpec;
      await expect(runner.submit({ key, spec: badRes })).rejects.toSatisfy(
        (e) => isCrystalMathError(e, 'E_VALIDATION') && /memoryMb/.test((e as Error).message),
      );
      await expect(
        runner.submit({ key: 'bad key!', spec: { name: 'x', argv: ['true'] } }),
      ).rejects.toSatisfy((e) => isCrystalMathError(e));
      if (runner.find) expect(await runner.find(key)).toBeNull();
    });

    it('refuses a second submission under the same key', async () => {
      const key = testJobKey('dup');
      await submit({ name: 'dup', argv: ['true'] }, key);
      await expect(submit({ name: 'dup', argv: ['true'] }, key)).rejects.toSatisfy((e) =>
        isCrystalMathError(e),
      );
    });

    it('finds a job by key after submission, and nothing for an unknown key', async () => {
      if (!runner.find) return;
      const key = testJobKey('find');
      const h = await submit({ name: 'find', argv: ['true'] }, key);
      const found = await runner.find(key);
      expect(found?.jobKey).toBe(key);
      expect(found?.kind).toBe(runner.kind);
      expect((await finish(found as RunnerHandle)).state).toBe('succeeded');
      expect((await finish(h)).state).toBe('succeeded');
      expect(await runner.find(testJobKey('never'))).toBeNull();
    });

    it('tails output from an offset', async () => {
      if (!runner.tail) return;
      const h = await submit({ name: 'tail', argv: ['sh', '-c', 'echo first; echo second'] });
      await finish(h);
      const all = await runner.tail(h, { offset: 0 });
      expect(all.data).toBe('first\nsecond\n');
      const rest = await runner.tail(h, { offset: 6 });
      expect(rest.data).toBe('second\n');
      expect(rest.offset).toBe(all.offset);
    });

    it('cleans up a finished job', async () => {
      if (!runner.cleanup) return;
      const key = testJobKey('clean');
      const h = await submit({ name: 'clean', argv: ['true'] }, key);
      await finish(h);
      await runner.cleanup(h);
      if (runner.find) expect(await runner.find(key)).toBeNull();
    });

    it.runIf(options.walltime !== false)(
      'stops a job over its walltime and reports timeout',
      async () => {
        const h = await submit({
          name: 'slow',
          argv: ['sleep', String(minWall * 60 + 600)],
          resources: { walltimeSeconds: minWall },
        });
        const s = await waitForTerminal(runner, h, jobTimeout + minWall * 1000 * 3, interval);
        expect(s.state).toBe('timeout');
      },
    );
  });
}
