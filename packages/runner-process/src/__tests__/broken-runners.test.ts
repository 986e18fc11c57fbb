// The Runner conformance suite proven able to fail: runners derived from the process runner,
// each broken in one way an outside author could miss, each run through the whole suite and
// required to fail exactly the cases named for its defect, and only those.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CrystalMathError,
  type Runner,
  type RunnerCallOptions,
  type RunnerHandle,
  throwIfAborted,
} from '@crystalmath/core';
import { type RunnerCaseResult, runRunnerConformance } from '@crystalmath/core/testing';
import { describe, expect, it } from 'vitest';
import { LocalRunner } from '../index.js';
import { killHandle } from './helpers.js';

type Methods = Pick<Runner, 'submit' | 'poll' | 'cancel' | 'find' | 'collect' | 'cleanup' | 'tail'>;

/** The process runner, every method delegated, some replaced by `breakIt`. */
function derived(
  inner: LocalRunner,
  home: string,
  breakIt: (
    inner: LocalRunner,
    home: string,
  ) => Partial<Methods> & {
    capabilities?: Runner['capabilities'];
  },
): Runner {
  const broken = breakIt(inner, home);
  return {
    kind: inner.kind,
    capabilities: broken.capabilities ?? inner.capabilities,
    submit: broken.submit ?? ((j, o) => inner.submit(j, o)),
    poll: broken.poll ?? ((h, o) => inner.poll(h, o)),
    cancel: broken.cancel ?? ((h, o) => inner.cancel(h, o)),
    find: broken.find ?? ((k, o) => inner.find(k, o)),
    collect: broken.collect ?? ((h, d, o) => inner.collect(h, d, o)),
    cleanup: broken.cleanup ?? ((h, o) => inner.cleanup(h, o)),
    tail: broken.tail ?? ((h, o) => inner.tail(h, o)),
  };
}

/** A made-up handle for `key`, as a lying `find` would return. */
function fakeHandle(key: string, home: string): RunnerHandle {
  return {
    kind: 'process',
    jobKey: key,
    data: { v: 1, jobDir: join(home, 'jobs', key), name: key, submittedAt: 0 },
  };
}

const withoutOutputs = (h: RunnerHandle): RunnerHandle => {
  const { outputs: _dropped, ...data } = h.data as Record<string, unknown>;
  return { ...h, data: data as RunnerHandle['data'] };
};

const noSignal = (o?: RunnerCallOptions): RunnerCallOptions => {
  const { signal: _ignored, ...rest } = o ?? {};
  return rest;
};

/** Each broken runner, and the titles (ends of case names) it must fail, and only those. */
const BROKEN: ReadonlyArray<{
  readonly name: string;
  readonly fails: readonly string[];
  readonly breakIt: Parameters<typeof derived>[2];
}> = [
  {
    name: 'no atomic claim (a second submit replaces the job directory)',
    fails: [
      'refuses a second submission under the same key',
      "a refused second submission leaves the live job's files alone",
      'refuses a key again after its first job has finished',
    ],
    breakIt: (inner, home) => ({
      async submit(job, o) {
        await rm(join(home, 'jobs', job.key), { recursive: true, force: true });
        return inner.submit(job, o);
      },
    }),
  },
  {
    name: 'pre, post and modules ignored',
    fails: [
      'runs each command word as a program, never as an assignment or a reserved word',
      'runs pre, the main command and post in that order, post even after a failure',
      'loads modules: a module that cannot be loaded fails the job',
    ],
    breakIt: (inner) => ({
      submit: (job, o) => {
        const { pre: _p, post: _q, modules: _m, ...spec } = job.spec;
        return inner.submit({ ...job, spec }, o);
      },
    }),
  },
  {
    name: 'outputs not kept: collect without globs ignores spec.outputs',
    fails: [
      "collects the spec's outputs when no globs are given, from a handle that went through JSON",
    ],
    breakIt: (inner) => ({
      submit: async (job, o) => withoutOutputs(await inner.submit(job, o)),
      find: async (key, o) => {
        const h = await inner.find(key, o);
        return h === null ? null : withoutOutputs(h);
      },
    }),
  },
  {
    name: 'find always null',
    fails: ['finds a job by key after submission, and nothing for an unknown key'],
    breakIt: () => ({
      find: async (_key, o) => {
        throwIfAborted(o?.signal, 'find');
        return null;
      },
    }),
  },
  {
    name: 'find always a handle',
    fails: [
      'finds a job by key after submission, and nothing for an unknown key',
      'finds nothing for a key whose submission was refused, or whose job was cleaned up',
    ],
    breakIt: (_inner, home) => ({
      find: async (key, o) => {
        throwIfAborted(o?.signal, 'find');
        return fakeHandle(key, home);
      },
    }),
  },
  {
    name: 'cancel does nothing',
    fails: ['cancels a running job: cancelled, never failed; cancel is idempotent'],
    breakIt: () => ({
      cancel: async (h, o) => {
        throwIfAborted(o?.signal, 'cancel');
        if (h.kind !== 'process')
          throw new CrystalMathError('E_RUNNER_HANDLE', '[broken] not mine');
      },
    }),
  },
  {
    name: 'capabilities that do not match the methods (tail: false with a tail method)',
    fails: ['declares its kind, and each capability matches its method'],
    breakIt: (inner) => ({ capabilities: { ...inner.capabilities, tail: false } }),
  },
  {
    name: 'AbortSignal ignored',
    fails: ['honours an AbortSignal: an aborted call rejects with E_ABORTED and starts nothing'],
    breakIt: (inner) => ({
      submit: (j, o) => inner.submit(j, noSignal(o)),
      poll: (h, o) => inner.poll(h, noSignal(o)),
      cancel: (h, o) => inner.cancel(h, noSignal(o)),
      find: (k, o) => inner.find(k, noSignal(o)),
      collect: (h, d, o) => inner.collect(h, d, { ...o, ...noSignal(o) }),
      cleanup: (h, o) => inner.cleanup(h, noSignal(o)),
      tail: (h, o) => inner.tail(h, { ...o, ...noSignal(o) }),
    }),
  },
];

const title = (r: RunnerCaseResult): string => r.name.slice(r.rule.length + 2);

describe('the Runner conformance suite catches broken runners', () => {
  for (const b of BROKEN) {
    it(`${b.name}: fails exactly ${b.fails.length === 1 ? 'its case' : `its ${b.fails.length} cases`}`, {
      timeout: 180_000,
    }, async () => {
      const handles: RunnerHandle[] = [];
      const results = await runRunnerConformance(
        async () => {
          const home = await mkdtemp(join(tmpdir(), 'cm-rp-broken-'));
          const inner = new LocalRunner({ home, root: 'jobs', killGraceMs: 500 });
          const runner = derived(inner, home, b.breakIt);
          const submit = runner.submit.bind(runner);
          return {
            runner: {
              ...runner,
              submit: async (job, o) => {
                const h = await submit(job, o);
                handles.push(h);
                return h;
              },
            },
            cleanup: async () => {
              // A broken runner may leave jobs nobody can stop through it.
              for (const h of handles) killHandle(h);
              await rm(home, { recursive: true, force: true });
            },
          };
        },
        { jobTimeoutMs: 15_000, pollIntervalMs: 50, concurrency: 6 },
      );
      const failed = results.filter((r) => !r.passed);
      const report = failed
        .map((r) => `${r.name}\n    ${r.error?.message.split('\n')[0]}`)
        .join('\n');
      expect(failed.map(title).sort(), `failed cases:\n${report}`).toEqual([...b.fails].sort());
      for (const r of failed) {
        expect(r.error?.message, 'a failure names its rule').toContain(`[${r.rule}]`);
      }
      if (b.name.startsWith('capabilities')) {
        expect(failed[0]?.error?.message).toMatch(
          /capabilities\.tail is false but the runner has a tail\(\) method/,
        );
      }
    });
  }
});
