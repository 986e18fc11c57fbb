import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatWalltime, parseSlurmDuration } from '../format-walltime.js';
import { renderSlurmScript } from '../render-slurm-script.js';
import type { SlurmDefaults, SlurmResources } from '../slurm-resources.js';
import { isCrystalMathError, type JobSpec, NASTY_STRINGS_FOR_TESTS } from './helpers.js';

const run = promisify(execFile);
const GOLDEN = join(import.meta.dirname, 'fixtures', 'golden');

async function golden(name: string, text: string): Promise<void> {
  const file = join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) await writeFile(file, text);
  expect(text).toBe(await readFile(file, 'utf8'));
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('renderSlurmScript golden files', () => {
  it('renders a minimal argv job', async () => {
    const { script } = renderSlurmScript({
      key: 'job-1-a1',
      spec: { name: 'hello', argv: ['echo', 'hi there'] },
    });
    await golden('minimal.sbatch', script);
  });

  it('renders every resource field, env, modules, pre and post', async () => {
    const resources: SlurmResources = {
      nodes: 2,
      tasks: 8,
      tasksPerNode: 4,
      cpusPerTask: 2,
      memoryPerCpuMb: 1900,
      gpus: 'a100:2',
      walltimeSeconds: 90_061,
      partition: 'gpu',
      account: 'proj-42',
      qos: 'normal',
      constraint: 'skylake&ib',
      exclusive: true,
      dependency: [
        { type: 'afterok', jobIds: ['100', '101_3'] },
        { type: 'afterany', jobIds: ['102'] },
      ],
      extraDirectives: ['--mail-type=END', '--requeue'],
    };
    const { script } = renderSlurmScript({
      key: 'job-2-a1',
      spec: {
        name: 'scf+relax',
        argv: ['pw.x', '-in', "scf's.in"],
        workdir: 'calc/01',
        env: { OMP_PLACES: 'cores', WEIRD: 'a $b `c`\nd' },
        modules: ['quantum-espresso/7.2', 'intel-mpi'],
        pre: [['cp', '../pseudo.upf', '.']],
        post: [['gzip', '-9', 'out.xml']],
        resources,
      },
    });
    await golden('full.sbatch', script);
  });

  it('renders a script job as a separate file, with site defaults and gres GPUs', async () => {
    const defaults: SlurmDefaults = {
      partition: 'debug',
      cpusPerTask: 1,
      memoryMb: 500,
      gpuDirective: 'gres',
    };
    const r = renderSlurmScript({
      key: 'job-3-a1',
      spec: {
        name: 'arr',
        script: '#SBATCH --partition=evil\necho $SLURM_ARRAY_TASK_ID\n',
        resources: {
          array: '0-9%2',
          gpus: 1,
          gres: 'shard:2',
          memoryPerCpuMb: 100,
        } as SlurmResources,
      },
      defaults,
      skipDirectives: ['--qos', 'comment'],
    });
    await golden('array-defaults.sbatch', r.script);
    expect(r.userScript).toBe('#SBATCH --partition=evil\necho $SLURM_ARRAY_TASK_ID\n');
    // The job's memory replaces both memory defaults: SLURM refuses --mem with --mem-per-cpu.
    expect(r.script).toContain('#SBATCH --mem-per-cpu=100M');
    expect(r.script).not.toContain('--mem=');
    expect(r.script).not.toContain('--comment');
  });
});

describe('renderSlurmScript validation', () => {
  const base: JobSpec = { name: 'x', argv: ['true'] };
  const cases: [string, Record<string, unknown>][] = [
    ['spec.resources.partition', { partition: 'debug\n#SBATCH --qos=high' }],
    ['spec.resources.partition', { partition: 'a b' }],
    ['spec.resources.account', { account: 'x;rm -rf /' }],
    ['spec.resources.qos', { qos: '$(id)' }],
    ['spec.resources.constraint', { constraint: 'a b' }],
    ['spec.resources.memoryMb', { memoryMb: 1.5 }],
    ['spec.resources.gpus', { gpus: 'a100:2\n' }],
    ['spec.resources.array', { array: '0-9\n' }],
    ['spec.resources.walltimeSeconds', { walltimeSeconds: 0 }],
    ['spec.resources.extraDirectives[0]', { extraDirectives: ['--mail-type=END\n#SBATCH --x'] }],
    ['spec.resources.extraDirectives[0]', { extraDirectives: ['--output=/etc/passwd'] }],
    ['spec.resources.extraDirectives[0]', { extraDirectives: ['--out=/tmp/x'] }],
    ['spec.resources.extraDirectives[1]', { extraDirectives: ['--requeue', '--job-name=other'] }],
    [
      'spec.resources.dependency[0].jobIds[0]',
      { dependency: [{ type: 'afterok', jobIds: ['1;2'] }] },
    ],
    ['spec.resources.dependency[0].type', { dependency: [{ type: 'before', jobIds: ['1'] }] }],
    ['spec.resources.gres', { gres: 'gpu:1 --x' }],
    ['spec.resources.dependencyMode', { dependencyMode: 'some' }],
  ];
  it.each(cases)('rejects a bad value with a ValidationError naming %s', (field, resources) => {
    const e = thrown(() =>
      renderSlurmScript({ key: 'k', spec: { ...base, resources: resources as SlurmResources } }),
    );
    expect(isCrystalMathError(e, 'E_VALIDATION')).toBe(true);
    expect((e as { field: string }).field).toBe(field);
  });

  it('rejects a bad key, an unskippable skip entry and bad defaults', () => {
    expect(
      (thrown(() => renderSlurmScript({ key: 'a b', spec: base })) as { field: string }).field,
    ).toBe('job.key');
    expect(
      (
        thrown(() => renderSlurmScript({ key: 'k', spec: base, skipDirectives: ['--output'] })) as {
          field: string;
        }
      ).field,
    ).toBe('skipDirectives[0]');
    expect(
      (
        thrown(() => renderSlurmScript({ key: 'k', spec: base, skipDirectives: ['mem\n'] })) as {
          field: string;
        }
      ).field,
    ).toBe('skipDirectives[0]');
  });

  it('keeps every user value on one line, so none can become a #PBS or #SBATCH directive', () => {
    // sbatch obeys #PBS lines anywhere in the script, even inside a quoted string.
    const evil = 'x\n#PBS -N injected\n#SBATCH --x\r\n';
    const base = { name: 'evil', argv: ['echo', evil, ...NASTY_STRINGS_FOR_TESTS] };
    const { script } = renderSlurmScript({
      key: 'k',
      spec: { ...base, env: { CM_EVIL: evil }, pre: [['true', evil]], post: [['true', evil]] },
    });
    const directiveLines = (text: string): string[] =>
      text.split('\n').filter((l) => /^\s*#(PBS|SBATCH)/.test(l));
    const plain = renderSlurmScript({ key: 'k', spec: { name: 'evil', argv: ['true'] } });
    expect(directiveLines(script)).toEqual(directiveLines(plain.script));
    expect(script).not.toMatch(/[\r]/);
  });

  it('drops skipped directives, including abbreviated extras', () => {
    const { script } = renderSlurmScript({
      key: 'k',
      spec: {
        ...base,
        resources: { memoryMb: 10, extraDirectives: ['--mem-per-g=1', '--requeue'] },
      },
      skipDirectives: ['mem', '--mem-per-gpu'],
    });
    expect(script).not.toMatch(/--mem/);
    expect(script).toContain('#SBATCH --requeue');
  });
});

describe('formatWalltime', () => {
  it.each([
    [1, '0-00:01:00'],
    [60, '0-00:01:00'],
    [61, '0-00:02:00'],
    [3_600, '0-01:00:00'],
    [86_399, '1-00:00:00'],
    [90_061, '1-01:02:00'],
    [365 * 86_400, '365-00:00:00'],
  ])('formats %i s as %s, rounding up to whole minutes', (s, text) => {
    expect(formatWalltime(s)).toBe(text);
    expect(parseSlurmDuration(text)).toBe(Math.ceil(s / 60) * 60);
  });

  it('parses the other SLURM duration forms', () => {
    expect(parseSlurmDuration('5')).toBe(300);
    expect(parseSlurmDuration('05:30')).toBe(330);
    expect(parseSlurmDuration('1:00:00')).toBe(3_600);
    expect(parseSlurmDuration('2-12')).toBe(2 * 86_400 + 12 * 3_600);
    expect(parseSlurmDuration('UNLIMITED')).toBeNull();
  });

  it('rejects non-positive or fractional seconds', () => {
    expect(
      isCrystalMathError(
        thrown(() => formatWalltime(0)),
        'E_VALIDATION',
      ),
    ).toBe(true);
    expect(
      isCrystalMathError(
        thrown(() => formatWalltime(1.5)),
        'E_VALIDATION',
      ),
    ).toBe(true);
  });
});

// The generated body runs under bash exactly as SLURM would start it: these tests execute it
// with the variables slurmd sets, no cluster needed.
describe('generated script body under bash', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cm-slurm-body-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function execute(
    spec: JobSpec,
    env: Record<string, string> = {},
  ): Promise<{ code: number; jobDir: string }> {
    const jobDir = await mkdtemp(join(dir, 'job-'));
    await mkdir(join(jobDir, '.cm'));
    const r = renderSlurmScript({ key: 'k', spec });
    await writeFile(join(jobDir, '.cm', 'job.sbatch'), r.script);
    if (r.userScript !== undefined) await writeFile(join(jobDir, '.cm', 'script.sh'), r.userScript);
    if (spec.workdir) await mkdir(join(jobDir, spec.workdir), { recursive: true });
    const code = await run('bash', [join(jobDir, '.cm', 'job.sbatch')], {
      cwd: '/',
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        SLURM_SUBMIT_DIR: jobDir,
        SLURM_JOB_ID: '77',
        ...env,
      },
    }).then(
      () => 0,
      (e: { code: number }) => e.code,
    );
    return { code, jobDir };
  }

  it('writes the exit code atomically to .cm/exit.<jobid>', async () => {
    const { code, jobDir } = await execute({ name: 'f', argv: ['sh', '-c', 'exit 3'] });
    expect(code).toBe(3);
    expect(await readFile(join(jobDir, '.cm', 'exit.77'), 'utf8')).toBe('3 \n');
    expect(existsSync(join(jobDir, '.cm', 'exit.77.tmp'))).toBe(false);
  });

  it('names the exit file after the array task', async () => {
    const { jobDir } = await execute(
      { name: 'a', argv: ['true'] },
      { SLURM_ARRAY_JOB_ID: '70', SLURM_ARRAY_TASK_ID: '4' },
    );
    expect(await readFile(join(jobDir, '.cm', 'exit.70_4'), 'utf8')).toBe('0 \n');
  });

  it('records TERM in the exit file when the job is terminated', async () => {
    const { code, jobDir } = await execute({
      name: 't',
      argv: ['sh', '-c', 'kill -TERM $PPID $$; sleep 5'],
    });
    expect(code).toBe(143);
    expect(await readFile(join(jobDir, '.cm', 'exit.77'), 'utf8')).toBe('143 TERM\n');
  });

  it('delivers argv and env byte for byte, in the workdir, with pre, post and a failing pre', async () => {
    const { code, jobDir } = await execute({
      name: 'argv',
      argv: [
        'sh',
        '-c',
        'printf "%s\\0" "$@" > out.bin; printf "%s" "$CM_V" > env.txt',
        'sh',
        ...NASTY_STRINGS_FOR_TESTS,
      ],
      env: { CM_V: 'a\'b "c" $(x) `y` \n z ✓' },
      workdir: 'w/d',
      pre: [['sh', '-c', 'echo pre > pre.txt']],
      post: [['sh', '-c', 'echo post > post.txt; exit 9']],
    });
    expect(code).toBe(0); // post's failure does not change the job's result
    const out = await readFile(join(jobDir, 'w/d/out.bin'), 'utf8');
    expect(out.split('\0').slice(0, -1)).toEqual(NASTY_STRINGS_FOR_TESTS);
    expect(await readFile(join(jobDir, 'w/d/env.txt'), 'utf8')).toBe('a\'b "c" $(x) `y` \n z ✓');
    expect(await readFile(join(jobDir, 'w/d/pre.txt'), 'utf8')).toBe('pre\n');
    expect(await readFile(join(jobDir, 'w/d/post.txt'), 'utf8')).toBe('post\n');
    const failed = await execute({
      name: 'p',
      argv: ['touch', 'main-ran'],
      pre: [['sh', '-c', 'exit 4']],
    });
    expect(failed.code).toBe(4);
    expect(existsSync(join(failed.jobDir, 'main-ran'))).toBe(false);
  });

  it('runs argv[0] as a command even when it looks like a keyword or an assignment', async () => {
    expect((await execute({ name: 'kw', argv: ['if'] })).code).toBe(127);
    expect((await execute({ name: 'as', argv: ['A=1'] })).code).toBe(127);
  });

  it('runs a script job with /bin/sh from its file', async () => {
    const { code, jobDir } = await execute({
      name: 's',
      script: 'echo "$0" > which.txt\nexit 6\n',
    });
    expect(code).toBe(6);
    expect((await readFile(join(jobDir, 'which.txt'), 'utf8')).trim()).toBe(
      join(jobDir, '.cm', 'script.sh'),
    );
  });
});
