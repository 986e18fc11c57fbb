// The suite every Runner implementation must pass: submit, poll in one batch, cancel, find,
// exact argv/env delivery, validation that changes nothing, handles that survive JSON. Each case
// names the rule of the contract it checks (docs/writing-a-runner.md), and the cases can be
// enumerated and run without vitest's runner (`runRunnerConformance`), so a project can prove
// that a deliberately broken runner fails exactly the cases named for its defect.

import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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

/**
 * The rules of the Runner contract the suite checks, numbered as in docs/writing-a-runner.md.
 * Every case's name starts with its rule, and a failure message repeats it.
 */
export const RUNNER_RULES = {
  validate: 'rule 1 (validate first, change nothing on bad input)',
  atMostOnce: 'rule 2 (a key is submitted at most once, claimed atomically)',
  stateless: 'rule 3 (stateless between calls: the handle and the target hold everything)',
  find: 'rule 4 (find(jobKey) tells the truth)',
  poll: 'rule 5 (one poll answers for every handle, in order)',
  status: 'rule 6 (statuses cannot lie)',
  command: 'rule 7 (the job runs exactly what the spec says: argv, env, pre, post, modules)',
  files: 'rule 8 (files are staged in and collected inside the job directory)',
  cancel: 'rule 9 (cancel stops a job; it is idempotent and never makes it failed)',
  errors: 'rule 11 (errors are typed: a handle of another kind is E_RUNNER_HANDLE)',
  signal: 'rule 12 (every call honours its AbortSignal)',
  capabilities: 'rule 13 (capabilities match the methods)',
} as const;

/** What a case gets to work with. */
export interface RunnerCaseContext {
  readonly runner: Runner;
  /** A local scratch directory, removed after the suite. */
  readonly local: string;
  readonly jobTimeoutMs: number;
  readonly pollIntervalMs: number;
  submit(spec: JobSpec, key?: string): Promise<RunnerHandle>;
  /** Polls until the job is terminal. */
  finish(handle: RunnerHandle): Promise<RunnerStatus>;
  /** A file of the job, read through `collect` (explicit glob). */
  output(handle: RunnerHandle, file?: string): Promise<string>;
}

/** One case of the suite: `name` starts with its rule. */
export interface RunnerConformanceCase {
  readonly name: string;
  readonly rule: string;
  readonly timeoutMs: number;
  run(ctx: RunnerCaseContext): Promise<void>;
}

/** The outcome of one case run by `runRunnerConformance`. */
export interface RunnerCaseResult {
  readonly name: string;
  readonly rule: string;
  readonly passed: boolean;
  readonly error?: Error;
}

/** Rethrows a case's failure with its rule in front, so the message says which rule broke. */
async function underRule(rule: string, run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    if (!e.message.startsWith(`[${rule}]`)) e.message = `[${rule}] ${e.message}`;
    throw e;
  }
}

const isHandleError = (e: unknown): boolean => isCrystalMathError(e, 'E_RUNNER_HANDLE');
const isAborted = (e: unknown): boolean => isCrystalMathError(e, 'E_ABORTED');

/** Expects `promise` to reject with an error `accept` takes; `what` names the call. */
async function rejects(
  promise: Promise<unknown>,
  accept: (e: unknown) => boolean,
  what: string,
): Promise<void> {
  let outcome: { error: unknown } | { value: unknown };
  try {
    outcome = { value: await promise };
  } catch (error) {
    outcome = { error };
  }
  if ('value' in outcome) throw new Error(`${what}: resolved, expected a rejection`);
  if (!accept(outcome.error)) {
    throw new Error(`${what}: rejected with the wrong error: ${String(outcome.error)}`, {
      cause: outcome.error,
    });
  }
}

/** The suite's cases, in order, for a runner with these options. */
export function runnerConformanceCases(
  options: RunnerConformanceOptions = {},
): RunnerConformanceCase[] {
  const jobTimeout = options.jobTimeoutMs ?? 60_000;
  const minWall = options.minWalltimeSeconds ?? 1;
  const R = RUNNER_RULES;
  const cases: RunnerConformanceCase[] = [];
  const add = (
    rule: string,
    title: string,
    run: (ctx: RunnerCaseContext) => Promise<void>,
    timeoutMs = jobTimeout + 30_000,
  ): void => {
    cases.push({ name: `${rule}: ${title}`, rule, timeoutMs, run });
  };

  add(
    R.capabilities,
    'declares its kind, and each capability matches its method',
    async ({ runner }) => {
      expect(typeof runner.kind, 'runner.kind').toBe('string');
      expect(
        runner.capabilities.minPollIntervalMs,
        'capabilities.minPollIntervalMs',
      ).toBeGreaterThanOrEqual(0);
      // The queue trusts the declared capabilities (e.g. find-based recovery): each must match
      // the method being there (an optional capability left out counts as false).
      for (const cap of ['find', 'collect', 'cleanup', 'tail', 'validate'] as const) {
        const has = typeof runner[cap] === 'function';
        expect(
          runner.capabilities[cap] === true,
          `capabilities.${cap} is ${String(runner.capabilities[cap])} but the runner ${has ? 'has' : 'lacks'} a ${cap}() method`,
        ).toBe(has);
      }
    },
  );

  add(R.status, 'runs a job to success with exit code 0', async ({ runner, submit, finish }) => {
    const h = await submit({ name: 'ok', argv: ['true'] });
    expect(h.kind, 'handle.kind').toBe(runner.kind);
    const s = await finish(h);
    expect(s.state).toBe('succeeded');
    expect(s.exitCode).toBe(0);
  });

  add(
    R.status,
    'reports a non-zero exit as failed with its exit code',
    async ({ submit, finish }) => {
      const s = await finish(await submit({ name: 'fail3', argv: ['sh', '-c', 'exit 3'] }));
      expect(s.state).toBe('failed');
      expect(s.exitCode).toBe(3);
    },
  );

  add(
    R.command,
    'delivers argv and env values byte for byte',
    async ({ runner, submit, finish, output }) => {
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
    },
  );

  add(
    R.command,
    'runs each command word as a program, never as an assignment or a reserved word',
    async ({ submit, finish }) => {
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
    },
  );

  add(
    R.command,
    'runs pre, the main command and post in that order, post even after a failure',
    async ({ runner, submit, finish, output }) => {
      const step = (name: string): string[] => ['sh', '-c', `echo ${name} >> order.txt`];
      const ok = await submit({
        name: 'order',
        pre: [step('pre1'), step('pre2')],
        argv: step('main'),
        post: [step('post1'), step('post2')],
      });
      const bad = await submit({
        name: 'order-fail',
        argv: ['sh', '-c', 'echo main >> order.txt; exit 5'],
        post: [step('post')],
      });
      const preFails = await submit({
        name: 'pre-fails',
        pre: [['sh', '-c', 'exit 4']],
        argv: step('main'),
      });
      const [sOk, sBad, sPre] = await Promise.all([finish(ok), finish(bad), finish(preFails)]);
      expect(sOk.state, 'a job with pre and post commands that all succeed').toBe('succeeded');
      expect(sBad, "post commands keep the main command's exit code").toMatchObject({
        state: 'failed',
        exitCode: 5,
      });
      expect(sPre.state, 'a failing pre command fails the job').toBe('failed');
      if (!runner.collect) return;
      expect(await output(ok, 'order.txt'), 'pre, main and post ran in order').toBe(
        'pre1\npre2\nmain\npost1\npost2\n',
      );
      expect(await output(bad, 'order.txt'), 'post ran after a failed main command').toBe(
        'main\npost\n',
      );
      await expect(
        output(preFails, 'order.txt'),
        'the main command must not run after a failed pre',
      ).rejects.toThrow();
    },
  );

  add(
    R.command,
    'loads modules: a module that cannot be loaded fails the job',
    async ({ submit, finish }) => {
      const s = await finish(
        await submit({
          name: 'module',
          argv: ['true'],
          modules: ['cm-conformance-no-such-module/0.0'],
        }),
      );
      expect(s.state, 'spec.modules must not be ignored').toBe('failed');
    },
  );

  add(
    R.files,
    'runs a script job in its workdir with staged inputs',
    async ({ runner, submit, finish, output }) => {
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
    },
  );

  add(
    R.files,
    'stages a local folder recursively and a large local file',
    async ({ runner, local, submit, finish, output }) => {
      const src = await mkdtemp(join(local, 'inputs-'));
      await mkdir(join(src, 'tree', 'sub'), { recursive: true });
      await writeFile(join(src, 'tree', 'a.txt'), 'a\n');
      await writeFile(join(src, 'tree', 'sub', 'b.txt'), 'b\n');
      // Larger than what a runner may hold in memory to batch small files (runner-slurm: 4 MiB).
      const bigBytes = 5 * 1024 * 1024 + 7;
      await writeFile(join(src, 'big.bin'), Buffer.alloc(bigBytes, 0x5a));
      const h = await submit({
        name: 'folder-input',
        argv: [
          'sh',
          '-c',
          'cat in/tree/a.txt in/tree/sub/b.txt > out.txt; wc -c < big.bin >> out.txt',
        ],
        inputs: [
          { from: join(src, 'tree'), to: 'in/tree' },
          { from: join(src, 'big.bin'), to: 'big.bin' },
        ],
      });
      expect((await finish(h)).state, 'a folder input must be staged, not refused').toBe(
        'succeeded',
      );
      if (!runner.collect) return;
      const out = await output(h, 'out.txt');
      expect(out.split(/\s+/).filter(Boolean)).toEqual(['a', 'b', String(bigBytes)]);
    },
  );

  add(
    R.stateless,
    "collects the spec's outputs when no globs are given, from a handle that went through JSON",
    async ({ runner, local, submit, finish }) => {
      if (!runner.collect) return;
      const h = await submit({
        name: 'outputs',
        argv: ['sh', '-c', 'mkdir -p res; echo kept > res/kept.txt; echo other > other.txt'],
        outputs: ['res/*.txt'],
      });
      const copy = JSON.parse(JSON.stringify(h)) as RunnerHandle;
      expect((await finish(copy)).state).toBe('succeeded');
      const dest = await mkdtemp(join(local, 'outputs-'));
      const r = await runner.collect(copy, dest);
      expect(
        r.files,
        'collect() without globs must use spec.outputs, which a stateless runner persists in the handle or on the target',
      ).toEqual(['res/kept.txt']);
      expect(await readFile(join(dest, 'res/kept.txt'), 'utf8')).toBe('kept\n');
    },
  );

  add(
    R.poll,
    'polls many handles in order, and an empty batch',
    async ({ runner, submit, finish }) => {
      expect(await runner.poll([])).toEqual([]);
      const a = await submit({ name: 'a', argv: ['sh', '-c', 'exit 0'] });
      const b = await submit({ name: 'b', argv: ['sh', '-c', 'exit 5'] });
      await finish(a);
      await finish(b);
      const [sa, sb, sa2] = await runner.poll([a, b, a]);
      expect([sa?.state, sb?.state, sa2?.state]).toEqual(['succeeded', 'failed', 'succeeded']);
      expect(sb?.exitCode).toBe(5);
    },
  );

  add(R.stateless, 'accepts a handle that went through JSON', async ({ submit, finish }) => {
    const h = await submit({ name: 'json', argv: ['true'] });
    const copy = JSON.parse(JSON.stringify(h)) as RunnerHandle;
    expect((await finish(copy)).state).toBe('succeeded');
  });

  add(
    R.cancel,
    'cancels a running job: cancelled, never failed; cancel is idempotent',
    async (ctx) => {
      const { runner, submit, finish } = ctx;
      const h = await submit({ name: 'long', argv: ['sleep', '300'] });
      await waitForState(runner, h, 'running', ctx.jobTimeoutMs, ctx.pollIntervalMs);
      await runner.cancel(h);
      const s = await finish(h);
      expect(s.state, 'state after cancel').toBe('cancelled');
      await runner.cancel(h);
      const [again] = await runner.poll([h]);
      expect(again?.state, 'state after a second cancel').toBe('cancelled');
    },
  );

  add(
    R.cancel,
    'does not change a finished job when cancelled',
    async ({ runner, submit, finish }) => {
      const h = await submit({ name: 'done', argv: ['true'] });
      await finish(h);
      await runner.cancel(h);
      expect((await runner.poll([h]))[0]?.state).toBe('succeeded');
    },
  );

  add(
    R.validate,
    'rejects an invalid spec with a typed error naming the field',
    async ({ runner }) => {
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
    },
  );

  add(R.atMostOnce, 'refuses a second submission under the same key', async ({ submit }) => {
    const key = testJobKey('dup');
    await submit({ name: 'dup', argv: ['true'] }, key);
    await expect(
      submit({ name: 'dup', argv: ['true'] }, key),
      'a second submit of a key',
    ).rejects.toSatisfy((e) => isCrystalMathError(e));
  });

  add(
    R.atMostOnce,
    "a refused second submission leaves the live job's files alone",
    async ({ runner, submit, finish, output }) => {
      const key = testJobKey('claim');
      // The live job waits (at most 10 s) for go/now, which only the intruder's inputs create.
      const wait = 'i=0; while [ ! -e go/now ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done';
      const live = await submit(
        {
          name: 'live',
          argv: ['sh', '-c', `${wait}; [ -e go/now ] && cat in.txt > who.txt; exit 0`],
          inputs: [{ content: 'first\n', to: 'in.txt' }],
        },
        key,
      );
      await waitForState(runner, live, 'running');
      const intruder: JobSpec = {
        name: 'intruder',
        argv: ['sh', '-c', 'echo intruder > who.txt'],
        inputs: [
          { content: 'second\n', to: 'in.txt' },
          { content: '', to: 'go/now' },
        ],
      };
      await expect(submit(intruder, key), 'a second submit of a live key').rejects.toSatisfy((e) =>
        isCrystalMathError(e),
      );
      if (runner.collect) {
        expect(
          await output(live, 'in.txt'),
          "the live job's staged input after a refused submit",
        ).toBe('first\n');
        await expect(
          output(live, 'go/now'),
          'the refused submission staged no file',
        ).rejects.toThrow();
      }
      // Cancel is rule 9's business: here it only shortens the wait, whatever it does.
      await runner.cancel(live).catch(() => undefined);
      await finish(live);
    },
  );

  add(
    R.atMostOnce,
    'refuses a key again after its first job has finished',
    async ({ submit, finish }) => {
      const key = testJobKey('again');
      const first = await submit({ name: 'first', argv: ['true'] }, key);
      expect((await finish(first)).state).toBe('succeeded');
      await expect(
        submit({ name: 'again', argv: ['true'] }, key),
        'a submit of a finished key',
      ).rejects.toSatisfy((e) => isCrystalMathError(e));
      expect((await finish(first)).state, 'the finished job stays as it ended').toBe('succeeded');
    },
  );

  add(
    R.find,
    'finds a job by key after submission, and nothing for an unknown key',
    async ({ runner, submit, finish }) => {
      if (!runner.find) return;
      const key = testJobKey('find');
      const h = await submit({ name: 'find', argv: ['true'] }, key);
      const found = await runner.find(key);
      expect(found?.jobKey, 'find(key) of a submitted job').toBe(key);
      expect(found?.kind).toBe(runner.kind);
      expect((await finish(found as RunnerHandle)).state).toBe('succeeded');
      expect((await finish(h)).state).toBe('succeeded');
      expect(
        await runner.find(testJobKey('never')),
        'find(key) of a key never submitted',
      ).toBeNull();
    },
  );

  add(
    R.find,
    'finds nothing for a key whose submission was refused, or whose job was cleaned up',
    async ({ runner, submit, finish }) => {
      if (!runner.find) return;
      const key = testJobKey('bad');
      const bad = { name: 'bad', argv: ['true'], workdir: '../escape' } as JobSpec;
      await expect(runner.submit({ key, spec: bad })).rejects.toSatisfy((e) =>
        isCrystalMathError(e),
      );
      expect(await runner.find(key), 'find(key) after a refused submission').toBeNull();
      if (!runner.cleanup) return;
      const clean = testJobKey('clean');
      const h = await submit({ name: 'clean', argv: ['true'] }, clean);
      await finish(h);
      await runner.cleanup(h);
      expect(await runner.find(clean), 'find(key) after cleanup').toBeNull();
    },
  );

  add(
    R.errors,
    'refuses a handle of another runner kind with E_RUNNER_HANDLE',
    async ({ runner }) => {
      const foreign: RunnerHandle = {
        kind: `not-${runner.kind}`,
        jobKey: testJobKey('foreign'),
        data: {},
      };
      await rejects(runner.poll([foreign]), isHandleError, 'poll([foreign handle])');
      await rejects(runner.cancel(foreign), isHandleError, 'cancel(foreign handle)');
      if (runner.collect)
        await rejects(
          runner.collect(foreign, '/nonexistent-cm-dest'),
          isHandleError,
          'collect(foreign handle)',
        );
      if (runner.tail) await rejects(runner.tail(foreign), isHandleError, 'tail(foreign handle)');
      if (runner.cleanup)
        await rejects(runner.cleanup(foreign), isHandleError, 'cleanup(foreign handle)');
    },
  );

  add(
    R.signal,
    'honours an AbortSignal: an aborted call rejects with E_ABORTED and starts nothing',
    async ({ runner, submit, finish }) => {
      const aborted = { signal: AbortSignal.abort() };
      const key = testJobKey('abort');
      await rejects(
        runner.submit({ key, spec: { name: 'abort', argv: ['true'] } }, aborted),
        isAborted,
        'submit with an aborted signal',
      );
      const h = await submit({ name: 'abort-after', argv: ['true'] }, key);
      expect((await finish(h)).state, 'the key is still free after an aborted submit').toBe(
        'succeeded',
      );
      await rejects(runner.poll([h], aborted), isAborted, 'poll with an aborted signal');
      await rejects(runner.cancel(h, aborted), isAborted, 'cancel with an aborted signal');
      if (runner.find)
        await rejects(runner.find(key, aborted), isAborted, 'find with an aborted signal');
      if (runner.tail)
        await rejects(runner.tail(h, aborted), isAborted, 'tail with an aborted signal');
    },
  );

  add(R.files, 'tails output from an offset', async ({ runner, submit, finish }) => {
    if (!runner.tail) return;
    const h = await submit({ name: 'tail', argv: ['sh', '-c', 'echo first; echo second'] });
    await finish(h);
    const all = await runner.tail(h, { offset: 0 });
    expect(all.data).toBe('first\nsecond\n');
    const rest = await runner.tail(h, { offset: 6 });
    expect(rest.data).toBe('second\n');
    expect(rest.offset).toBe(all.offset);
  });

  add(R.files, 'cleans up a finished job', async ({ runner, submit, finish }) => {
    if (!runner.cleanup) return;
    const h = await submit({ name: 'clean', argv: ['true'] });
    await finish(h);
    await runner.cleanup(h);
    await runner.cleanup(h);
  });

  if (options.walltime !== false) {
    add(
      R.status,
      'stops a job over its walltime and reports timeout',
      async ({ runner, submit, pollIntervalMs }) => {
        const h = await submit({
          name: 'slow',
          argv: ['sleep', String(minWall * 60 + 600)],
          resources: { walltimeSeconds: minWall },
        });
        const s = await waitForTerminal(runner, h, jobTimeout + minWall * 1000 * 3, pollIntervalMs);
        expect(s.state).toBe('timeout');
      },
      jobTimeout + minWall * 3000 + 30_000,
    );
  }
  return cases;
}

/** The context cases run in: a runner and a local scratch directory. */
function caseContext(
  runner: Runner,
  local: string,
  options: RunnerConformanceOptions,
): RunnerCaseContext {
  const jobTimeoutMs = options.jobTimeoutMs ?? 60_000;
  const pollIntervalMs = options.pollIntervalMs ?? 200;
  return {
    runner,
    local,
    jobTimeoutMs,
    pollIntervalMs,
    submit: (spec, key = testJobKey()) => runner.submit({ key, spec }),
    finish: (h) => waitForTerminal(runner, h, jobTimeoutMs, pollIntervalMs),
    async output(h, file = 'out.txt') {
      if (!runner.collect) throw new Error('runner has no collect: cannot read job output');
      const dest = await mkdtemp(join(local, 'collect-'));
      await runner.collect(h, dest, { globs: [file] });
      return readFile(join(dest, file), 'utf8');
    },
  };
}

/** Registers the Runner conformance suite under `describe(name)`. */
export function runnerConformance(
  name: string,
  makeFixture: () => Promise<RunnerFixture>,
  options: RunnerConformanceOptions = {},
): void {
  const cases = runnerConformanceCases(options);
  describe(`Runner conformance: ${name}`, () => {
    let fx: RunnerFixture | undefined;
    let ctx: RunnerCaseContext;
    let local: string;
    beforeAll(async () => {
      fx = await makeFixture();
      local = await mkdtemp(join(tmpdir(), 'cm-runner-conf-'));
      ctx = caseContext(fx.runner, local, options);
    }, 60_000);
    afterAll(async () => {
      await fx?.cleanup?.();
      if (local) await rm(local, { recursive: true, force: true });
    }, 60_000);
    for (const c of cases) {
      it(c.name, { timeout: c.timeoutMs }, () => underRule(c.rule, () => c.run(ctx)));
    }
  });
}

/**
 * Runs the suite's cases (all, or those `only` keeps) against a fresh fixture outside vitest's
 * test collection, and reports each case: for proving that a broken runner fails exactly the
 * cases named for its defect. Cases run concurrently when `concurrency` > 1.
 */
export async function runRunnerConformance(
  makeFixture: () => Promise<RunnerFixture>,
  options: RunnerConformanceOptions & {
    readonly only?: (c: RunnerConformanceCase) => boolean;
    readonly concurrency?: number;
  } = {},
): Promise<RunnerCaseResult[]> {
  const cases = runnerConformanceCases(options).filter(options.only ?? (() => true));
  const fx = await makeFixture();
  const local = await mkdtemp(join(tmpdir(), 'cm-runner-conf-'));
  const ctx = caseContext(fx.runner, local, options);
  const results: RunnerCaseResult[] = new Array(cases.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      const c = cases[i];
      if (c === undefined) return;
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          underRule(c.rule, () => c.run(ctx)),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`[${c.rule}] timed out after ${c.timeoutMs} ms`)),
              c.timeoutMs,
            );
          }),
        ]);
        results[i] = { name: c.name, rule: c.rule, passed: true };
      } catch (err) {
        results[i] = { name: c.name, rule: c.rule, passed: false, error: err as Error };
      } finally {
        clearTimeout(timer);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 1) }, worker));
  } finally {
    await fx.cleanup?.();
    await rm(local, { recursive: true, force: true });
  }
  return results;
}
