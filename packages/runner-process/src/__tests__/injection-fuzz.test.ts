// Injection fuzz: job names, environment values, argv elements (main, pre, post), the workdir
// and input paths are drawn from a corpus of shell metacharacters and command payloads. None
// may run a command: the payloads all try to create one marker file, which must never appear,
// and every value must reach the job byte for byte.

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isCrystalMathError, type JobSpec } from '@crystalmath/core';
import { NASTY_STRINGS, testJobKey, waitForTerminal } from '@crystalmath/core/testing';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProcessRunner } from '../index.js';
import { type Scratch, scratch } from './helpers.js';

/** Property runs; CM_FUZZ_RUNS overrides. Each run submits and waits for one real job. */
const RUNS = Number(process.env.CM_FUZZ_RUNS ?? 40);

describe('injection fuzz', { timeout: 120_000 }, () => {
  let s: Scratch;
  let runner: ProcessRunner;
  let marker: string;

  beforeAll(async () => {
    s = await scratch('cm-rp-fuzz-');
    runner = s.runner();
    marker = join(s.home, 'PWNED');
  });
  afterAll(() => s.dispose());

  const payloads = (): string[] => [
    `$(touch ${marker})`,
    `\`touch ${marker}\``,
    `;touch ${marker}`,
    `'; touch ${marker}; '`,
    `"; touch ${marker}; "`,
    `\ntouch ${marker}\n`,
    `&& touch ${marker}`,
    `| touch ${marker}`,
    `$(IFS=_;cmd=touch_${marker};$cmd)`,
    '${PATH+$(touch ' + `${marker})}`,
    `\\'$(touch ${marker})`,
    `' "$(touch ${marker})" '`,
  ];
  const pieces = (): fc.Arbitrary<string> =>
    fc.oneof(
      fc.constantFrom(...payloads(), ...NASTY_STRINGS, '$', '`', "'", '"', '\\', '*', '~', '#'),
      fc.string({ maxLength: 6 }),
    );
  const nasty = (): fc.Arbitrary<string> =>
    fc
      .array(pieces(), { minLength: 1, maxLength: 4 })
      .map((parts) => parts.join('').replaceAll('\0', ''));
  const pathSegment = (): fc.Arbitrary<string> =>
    nasty().map((v) => v.replace(/[\r\n/\\]/g, '_').replace(/^\.+$/, 'dots') || 'empty');

  it('never runs a command from a name, env value, argument, workdir or input path', async () => {
    await fc.assert(
      fc.asyncProperty(
        nasty(),
        nasty(),
        fc.array(nasty(), { minLength: 1, maxLength: 4 }),
        pathSegment(),
        pathSegment(),
        async (name, value, args, workdir, input) => {
          const spec: JobSpec = {
            name,
            argv: [
              'sh',
              '-c',
              'printf "%s\\0" "$@" > argv.out; printf "%s" "$CM_FUZZ" > env.out; cat < "$CM_INPUT" > input.out',
              'sh',
              ...args,
            ],
            workdir,
            env: { CM_FUZZ: value, CM_INPUT: input },
            inputs: [{ content: value, to: `${workdir}/${input}` }],
            pre: [['printf', '%s', ...args]],
            post: [['printf', '%s', value]],
          };
          const key = testJobKey('fz');
          let h: Awaited<ReturnType<ProcessRunner['submit']>>;
          try {
            h = await runner.submit({
              key,
              spec,
            });
          } catch (e) {
            // Only a validation error naming the name is acceptable (names are restricted).
            expect(isCrystalMathError(e, 'E_VALIDATION')).toBe(true);
            expect((e as Error).message).toMatch(/spec\.name/);
            expect(existsSync(join(s.home, 'jobs', key))).toBe(false);
            h = await runner.submit({ key, spec: { ...spec, name: 'fuzz' } });
          }
          const st = await waitForTerminal(runner, h, 15_000, 20);
          expect(st.state).toBe('succeeded');
          const dir = join(s.home, 'jobs', key, workdir);
          const argv = (await readFile(join(dir, 'argv.out'), 'utf8')).split('\0').slice(0, -1);
          expect(argv).toEqual(args);
          expect(await readFile(join(dir, 'env.out'), 'utf8')).toBe(value);
          expect(await readFile(join(dir, 'input.out'), 'utf8')).toBe(value);
          expect(existsSync(marker)).toBe(false);
          await runner.cleanup(h);
        },
      ),
      { numRuns: RUNS },
    );
    expect(existsSync(marker)).toBe(false);
  });
});
