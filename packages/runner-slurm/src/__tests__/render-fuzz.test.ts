// Property tests: random strings in every resource field give either a script whose only
// #SBATCH lines are the expected directives (and whose body is unchanged), or a typed
// validation error. Run counts: CM_FUZZ_RUNS (default 1500 per property).

import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderSlurmScript } from '../render-slurm-script.js';
import { isCrystalMathError, type JobSpec } from './helpers.js';

const RUNS = Number(process.env.CM_FUZZ_RUNS ?? 1500);
const EXEC_RUNS = Number(process.env.CM_FUZZ_EXEC_RUNS ?? 60);
const run = promisify(execFile);

const injections = [
  '\n#SBATCH --partition=evil',
  '\r\n#SBATCH --qos=x',
  ' --qos=high',
  '\ntouch /tmp/pwned',
  '; touch /tmp/pwned',
  '$(touch /tmp/pwned)',
  '`id`',
  "'",
  '"',
  '\\',
  '\0',
  '\u2028',
  '\u0085',
  ' ',
  '\t',
  '#',
];
/** Strings that are often almost valid: a plausible value with something appended or inserted. */
const nasty = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.string({
    unit: fc.constantFrom('a', '1', '-', ':', '_', ',', '%', '[', ']', '=', '\n', ' ', '$'),
  }),
  fc
    .tuple(
      fc.constantFrom('debug', 'gpu:2', '0-9', 'a100:1', 'afterok', '100'),
      fc.constantFrom(...injections),
      fc.string(),
    )
    .map(([a, b, c]) => a + b + c),
);
/**
 * A field that is usually absent or valid and sometimes random (about one time in 15), so that
 * a good share of the generated resource sets render and the rest exercise every validator.
 */
function field<T>(
  valid: fc.Arbitrary<T>,
  random: fc.Arbitrary<unknown> = nasty,
): fc.Arbitrary<unknown> {
  return fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 7 },
    { arbitrary: valid, weight: 7 },
    { arbitrary: random, weight: 1 },
  );
}
const count = field(
  fc.integer({ min: 1, max: 64 }),
  fc.oneof(fc.integer({ min: -5, max: 100_000 }), fc.double(), nasty),
);
const word = (...valid: string[]): fc.Arbitrary<unknown> => field(fc.constantFrom(...valid));

const resourcesArb = fc.record({
  nodes: count,
  tasks: count,
  tasksPerNode: count,
  cpusPerTask: count,
  memoryMb: count,
  memoryPerCpuMb: field(fc.constant(undefined), fc.oneof(fc.integer(), nasty)),
  gpus: field(fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constantFrom('a100:2', '1'))),
  walltimeSeconds: field(fc.integer({ min: 1, max: 365 * 86_400 }), fc.oneof(fc.double(), nasty)),
  partition: word('debug', 'gpu-a100'),
  account: word('proj-1', 'chem@site'),
  qos: word('normal', 'high'),
  constraint: word('skylake&ib', '[a*2|b*2]'),
  exclusive: field(fc.boolean()),
  array: word('0-9', '1,3,5-7%2'),
  gres: word('gpu:1', 'shard:2,gpu:a100:1'),
  extraDirectives: field(
    fc.array(fc.constantFrom('--requeue', '--mail-type=END', '--signal=B:USR1@60'), {
      maxLength: 3,
    }),
    fc.array(
      fc.oneof(
        nasty,
        nasty.map((x) => `--${x}`),
        fc.constant('--output=x'),
      ),
      { minLength: 1, maxLength: 3 },
    ),
  ),
  dependency: field(
    fc.array(
      fc.oneof(
        fc.record({
          type: fc.constantFrom('afterok', 'afterany'),
          jobIds: fc.constant(['12', '12_3']),
        }),
        fc.constant({ type: 'singleton' }),
      ),
      { maxLength: 2 },
    ),
    fc.array(
      fc.record({
        type: fc.oneof(fc.constant('afterok'), nasty),
        jobIds: fc.array(nasty, { maxLength: 3 }),
      }),
      {
        minLength: 1,
        maxLength: 2,
      },
    ),
  ),
  dependencyMode: word('all', 'any'),
});

const BASE: JobSpec = { name: 'fuzz', argv: ['true'] };
const baseline = renderSlurmScript({ key: 'fuzz-key', spec: BASE }).script;

/** sbatch reads #SBATCH lines until the first line that is neither blank nor a comment. */
function split(script: string): { header: string[]; body: string[] } {
  const lines = script.split('\n');
  let i = 1;
  while (i < lines.length && (lines[i]?.startsWith('#') || lines[i]?.trim() === '')) i++;
  return { header: lines.slice(0, i), body: lines.slice(i) };
}

function isTypedInputError(e: unknown): boolean {
  return isCrystalMathError(e, 'E_VALIDATION') || isCrystalMathError(e, 'E_PATH_UNSAFE');
}

describe('script generation under random input', () => {
  it('random resource fields: a valid script with exactly the expected #SBATCH lines, or a ValidationError', () => {
    const baseBody = split(baseline).body;
    let rendered = 0;
    fc.assert(
      fc.property(
        resourcesArb,
        field(fc.constant(undefined)) as fc.Arbitrary<string | undefined>,
        (resources, name) => {
          const clean = Object.fromEntries(
            Object.entries(resources).filter(([, v]) => v !== undefined),
          );
          const spec = { ...BASE, name: name ?? 'fuzz', resources: clean } as unknown as JobSpec;
          let script: string;
          let count: number;
          try {
            const r = renderSlurmScript({ key: 'fuzz-key', spec, skipDirectives: ['requeue'] });
            script = r.script;
            count = r.directives.length;
          } catch (e) {
            expect(isTypedInputError(e)).toBe(true);
            expect((e as { field?: string }).field).toMatch(/^(spec\.(resources|name)|job\.key)/);
            return;
          }
          rendered++;
          const { header, body } = split(script);
          const directives = header.filter((l) => /^\s*#\s*SBATCH/i.test(l));
          expect(directives).toHaveLength(count);
          for (const d of directives)
            expect(d).toMatch(/^#SBATCH --[a-z][a-z0-9-]*(=[^\s'"\\`$;<>]+)?$/);
          // The job's name (made safe) before the key: SLURM shows it, recovery finds the key.
          const names = directives.filter((d) => d.startsWith('#SBATCH --job-name='));
          expect(names).toHaveLength(1);
          expect(names[0]).toMatch(
            /^#SBATCH --job-name=(?:[A-Za-z0-9][A-Za-z0-9._+-]*\.)?fuzz-key$/,
          );
          expect(directives.filter((d) => /^#SBATCH --(output|error)=/.test(d))).toHaveLength(2);
          expect(directives.some((d) => d.startsWith('#SBATCH --requeue'))).toBe(false);
          // Resources never reach the body: it is the same as the baseline's, line for line.
          expect(body).toEqual(baseBody);
          expect(script.split('\n').filter((l) => l.includes('SBATCH'))).toHaveLength(count);
        },
      ),
      { numRuns: RUNS },
    );
    // Both outcomes must be common, or the property proves little.
    expect(rendered).toBeGreaterThan(RUNS * 0.05);
    expect(rendered).toBeLessThan(RUNS * 0.95);
    console.log(`[fuzz] ${rendered} of ${RUNS} random resource sets rendered, the rest rejected`);
  });

  it('random argv, env, module, pre and post values never change the #SBATCH header', () => {
    const baseHeader = split(baseline).header;
    fc.assert(
      fc.property(
        fc.array(nasty, { minLength: 1, maxLength: 4 }),
        fc.dictionary(fc.oneof(fc.constantFrom('A', 'CM_X', '_y'), nasty), nasty, { maxKeys: 3 }),
        fc.array(nasty, { maxLength: 2 }),
        fc.array(fc.array(nasty, { minLength: 1, maxLength: 2 }), { maxLength: 2 }),
        (argv, env, modules, pre) => {
          const spec = { ...BASE, argv, env, modules, pre, post: pre } as JobSpec;
          let script: string;
          try {
            script = renderSlurmScript({ key: 'fuzz-key', spec }).script;
          } catch (e) {
            expect(isTypedInputError(e)).toBe(true);
            return;
          }
          expect(split(script).header).toEqual(baseHeader);
          // sbatch refuses any script with CR LF in it: a CR in a value never reaches the text.
          expect(script.includes('\r')).toBe(false);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

// Executing the generated body is the real check that a value never becomes a command: the job
// prints its arguments and environment, and they must come back byte for byte, with no file
// created anywhere else.
describe('generated scripts executed by bash with random values', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cm-slurm-fuzz-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints exactly the random argv and env it was given', async () => {
    const printable = fc.string({ unit: 'binary', maxLength: 40 }).filter((s) => !s.includes('\0'));
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(printable, { minLength: 1, maxLength: 5 }),
        printable,
        async (args, value) => {
          const jobDir = join(dir, `j${n++}`);
          await mkdir(join(jobDir, '.cm'), { recursive: true });
          const spec: JobSpec = {
            name: 'exec',
            argv: [
              'sh',
              '-c',
              'printf "%s\\0" "$@" > out.bin; printf "%s" "$CM_V" > env.bin',
              'sh',
              ...args,
            ],
            env: { CM_V: value },
          };
          await writeFile(
            join(jobDir, '.cm', 'job.sbatch'),
            renderSlurmScript({ key: 'k', spec }).script,
          );
          await run('bash', [join(jobDir, '.cm', 'job.sbatch')], {
            cwd: jobDir,
            env: {
              PATH: process.env.PATH ?? '/usr/bin:/bin',
              SLURM_SUBMIT_DIR: jobDir,
              SLURM_JOB_ID: '1',
            },
          });
          const out = await readFile(join(jobDir, 'out.bin'), 'utf8');
          expect(out.split('\0').slice(0, -1)).toEqual(
            args.map((a) => Buffer.from(a, 'utf8').toString('utf8')),
          );
          expect(await readFile(join(jobDir, 'env.bin'), 'utf8')).toBe(
            Buffer.from(value, 'utf8').toString('utf8'),
          );
          const { readdir } = await import('node:fs/promises');
          expect((await readdir(jobDir)).sort()).toEqual(['.cm', 'env.bin', 'out.bin']);
        },
      ),
      { numRuns: EXEC_RUNS },
    );
  });
});
