// What a job is, independent of where it runs: the command, its files, its environment and
// typed resources. Runners translate this into their own terms (a wrapper script, an sbatch
// script); `validateJobSpec` rejects bad input before anything is written anywhere.

import { ValidationError } from './errors.js';
import { type OutputSpec, validateOutputs } from './outputs.js';
import { assertEnvName } from './quote.js';
import { safeRelativePath } from './safe-path.js';

/** Typed resource requests. Runners honour what makes sense for them and ignore the rest. */
export interface Resources {
  /** Number of nodes (SLURM `--nodes`). */
  readonly nodes?: number;
  /** Number of tasks, e.g. MPI ranks (SLURM `--ntasks`). */
  readonly tasks?: number;
  /** Tasks per node (SLURM `--ntasks-per-node`). */
  readonly tasksPerNode?: number;
  /** CPUs per task (SLURM `--cpus-per-task`; exported as `OMP_NUM_THREADS` by the process runner). */
  readonly cpusPerTask?: number;
  /** Total memory per node in MiB (SLURM `--mem`). */
  readonly memoryMb?: number;
  /** Memory per CPU in MiB (SLURM `--mem-per-cpu`); exclusive with `memoryMb`. */
  readonly memoryPerCpuMb?: number;
  /** GPUs: a count, or `type:count` such as `a100:2`. */
  readonly gpus?: number | string;
  /** Wall-clock limit in seconds; the job is stopped and reported `timeout` past it. */
  readonly walltimeSeconds?: number;
  readonly partition?: string;
  readonly account?: string;
  readonly qos?: string;
  /** Node feature constraint (SLURM `--constraint`). */
  readonly constraint?: string;
  /** Whole nodes for this job (SLURM `--exclusive`). */
  readonly exclusive?: boolean;
  /** Array job index spec such as `0-9` or `1,3,5-7%2` (SLURM `--array`). */
  readonly array?: string;
  /** Extra scheduler directives such as `--mail-type=END`, checked against a strict pattern. */
  readonly extraDirectives?: readonly string[];
}

/**
 * The kind of value a resource field holds, for code that builds a schema or a form from the
 * resource fields instead of restating them (the CLI's configuration schema does):
 * `count` a positive integer, `count-or-text` a positive integer or a string (`gpus`), `text` a
 * string, `flag` a boolean, `text-list` an array of strings, `structured` anything else (checked
 * only by its runner's validator).
 */
export type ResourceFieldKind =
  | 'count'
  | 'count-or-text'
  | 'text'
  | 'flag'
  | 'text-list'
  | 'structured';

/**
 * Every field of `Resources` and the kind of its value: the one list of resource fields. A
 * runner that extends `Resources` lists its own fields the same way (runner-slurm's
 * `SLURM_RESOURCE_FIELDS`, runner-sge's `SGE_RESOURCE_FIELDS`). Typed so that a field added to
 * `Resources` and not here fails to compile.
 */
export const RESOURCE_FIELDS: { readonly [K in keyof Required<Resources>]: ResourceFieldKind } = {
  nodes: 'count',
  tasks: 'count',
  tasksPerNode: 'count',
  cpusPerTask: 'count',
  memoryMb: 'count',
  memoryPerCpuMb: 'count',
  gpus: 'count-or-text',
  walltimeSeconds: 'count',
  partition: 'text',
  account: 'text',
  qos: 'text',
  constraint: 'text',
  exclusive: 'flag',
  array: 'text',
  extraDirectives: 'text-list',
};

/**
 * A job's resources on top of a target's defaults: each field the job sets wins; memory given
 * either way by the job replaces both memory defaults (`memoryMb` and `memoryPerCpuMb` exclude
 * each other). Every runner that takes `defaults` merges with this, so defaults mean the same on
 * every target type.
 *
 * @example mergeResources({ partition: 'debug', memoryMb: 4000 }, { memoryPerCpuMb: 500 }) // => { partition: 'debug', memoryPerCpuMb: 500 }
 */
export function mergeResources<R extends Resources>(
  defaults: R | undefined,
  job: R | undefined,
): R {
  const merged: Record<string, unknown> = { ...defaults };
  if (job?.memoryMb !== undefined || job?.memoryPerCpuMb !== undefined) {
    delete merged.memoryMb;
    delete merged.memoryPerCpuMb;
  }
  for (const [k, v] of Object.entries(job ?? {})) if (v !== undefined) merged[k] = v;
  return merged as R;
}

/** A file to put in the job directory before the job starts. */
export type StageIn =
  /** Copy a file (or a folder, recursively) from the submitting machine. */
  | { readonly from: string; readonly to: string }
  /** Write these bytes. */
  | { readonly content: string | Uint8Array; readonly to: string }
  /**
   * Copy what another job produced (its collected artifacts): `path` a file, a folder or a
   * glob of that job's outputs; `fromJob` its id (`enqueue`) or workflow key
   * (`submitWorkflow`). Implies the dependency (`afterok`). The queue resolves it before the
   * runner sees the job; a runner never receives one.
   */
  | { readonly fromJob: string; readonly path: string; readonly to: string };

/** A job, independent of where it runs. Exactly one of `argv` and `script` is given. */
export interface JobSpec {
  /** Human-readable name: letters, digits, `._-+`, at most 128 characters. */
  readonly name: string;
  /** The command as an argv vector: run without a shell, each element one argument. */
  readonly argv?: readonly string[];
  /** A POSIX shell script body, run by `/bin/sh`. */
  readonly script?: string;
  /** Working directory relative to the job directory; confined, no `..`. */
  readonly workdir?: string;
  /** Files placed in the job directory before start. */
  readonly inputs?: readonly StageIn[];
  /**
   * Outputs collected after the job ends: globs relative to the job directory, or
   * `{ glob, required?, when? }` declarations (see `OutputSpec`).
   */
  readonly outputs?: readonly OutputSpec[];
  /** Environment variables added to the job's environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Environment modules to load first (`module load <name>`), where the target has them. */
  readonly modules?: readonly string[];
  /** Commands (argv vectors) run before the main command; a failing one fails the job. */
  readonly pre?: readonly (readonly string[])[];
  /** Commands (argv vectors) run after the main command, whatever its outcome. */
  readonly post?: readonly (readonly string[])[];
  readonly resources?: Resources;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
/** Scheduler-safe word: what a partition, account, qos or module name may contain. */
const WORD = /^[A-Za-z0-9][A-Za-z0-9_.:+/@-]{0,127}$/;
const CONSTRAINT = /^[A-Za-z0-9_.:+&|!()[\]*,-]{1,256}$/;
const ARRAY = /^[0-9]+(-[0-9]+(:[0-9]+)?)?(,[0-9]+(-[0-9]+(:[0-9]+)?)?)*(%[0-9]+)?$/;
const GPUS = /^([A-Za-z0-9_.-]{1,64}:)?[1-9][0-9]{0,3}$/;
/** `--option` or `--option=value` with a conservative value alphabet: no spaces, quotes or `$`. */
export const DIRECTIVE_PATTERN = /^--[a-z][a-z0-9-]{0,63}(=[A-Za-z0-9_.,:@%+/=-]{1,256})?$/;

function positiveInt(value: unknown, field: string, max = 2 ** 31 - 1): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new ValidationError(field, `must be an integer from 1 to ${max}`);
  }
}

function matches(value: unknown, pattern: RegExp, field: string, what: string): void {
  if (value === undefined) return;
  if (typeof value !== 'string' || !pattern.test(value)) {
    throw new ValidationError(field, `must be ${what}`);
  }
}

function argvField(argv: unknown, field: string): void {
  if (!Array.isArray(argv) || argv.length === 0) {
    throw new ValidationError(field, 'must be a non-empty array of strings');
  }
  argv.forEach((arg, i) => {
    if (typeof arg !== 'string') throw new ValidationError(`${field}[${i}]`, 'must be a string');
    if (arg.includes('\0')) throw new ValidationError(`${field}[${i}]`, 'must not contain NUL');
  });
}

/** Validates resources; throws ValidationError naming the field (`resources.memoryMb`, ...). */
export function validateResources(r: Resources | undefined, field = 'resources'): void {
  if (r === undefined) return;
  if (typeof r !== 'object' || r === null) throw new ValidationError(field, 'must be an object');
  positiveInt(r.nodes, `${field}.nodes`, 100_000);
  positiveInt(r.tasks, `${field}.tasks`, 10_000_000);
  positiveInt(r.tasksPerNode, `${field}.tasksPerNode`, 100_000);
  positiveInt(r.cpusPerTask, `${field}.cpusPerTask`, 100_000);
  positiveInt(r.memoryMb, `${field}.memoryMb`, 2 ** 40);
  positiveInt(r.memoryPerCpuMb, `${field}.memoryPerCpuMb`, 2 ** 40);
  positiveInt(r.walltimeSeconds, `${field}.walltimeSeconds`, 365 * 24 * 3600);
  if (r.memoryMb !== undefined && r.memoryPerCpuMb !== undefined) {
    throw new ValidationError(`${field}.memoryPerCpuMb`, 'cannot be combined with memoryMb');
  }
  if (typeof r.gpus === 'number') positiveInt(r.gpus, `${field}.gpus`, 10_000);
  else matches(r.gpus, GPUS, `${field}.gpus`, 'a count or "type:count"');
  matches(r.partition, WORD, `${field}.partition`, 'a partition name (letters, digits, _.:+/@-)');
  matches(r.account, WORD, `${field}.account`, 'an account name (letters, digits, _.:+/@-)');
  matches(r.qos, WORD, `${field}.qos`, 'a QOS name (letters, digits, _.:+/@-)');
  matches(r.constraint, CONSTRAINT, `${field}.constraint`, 'a feature expression');
  matches(r.array, ARRAY, `${field}.array`, 'an array spec such as 0-9 or 1,3,5-7%2');
  if (r.exclusive !== undefined && typeof r.exclusive !== 'boolean') {
    throw new ValidationError(`${field}.exclusive`, 'must be a boolean');
  }
  if (r.extraDirectives !== undefined) {
    if (!Array.isArray(r.extraDirectives)) {
      throw new ValidationError(`${field}.extraDirectives`, 'must be an array of strings');
    }
    for (const [i, d] of r.extraDirectives.entries()) {
      const f = `${field}.extraDirectives[${i}]`;
      matches(d, DIRECTIVE_PATTERN, f, 'of the form --name or --name=value');
    }
  }
}

/**
 * Validates a job spec and throws a ValidationError (or UnsafePathError) naming the first bad
 * field. Call it before writing anything: a rejected spec changes nothing.
 */
export function validateJobSpec(spec: JobSpec, field = 'spec'): void {
  if (typeof spec !== 'object' || spec === null)
    throw new ValidationError(field, 'must be an object');
  matches(
    spec.name,
    NAME,
    `${field}.name`,
    'letters, digits and ._+- (at most 128, starting alphanumeric)',
  );
  if (spec.name === undefined) throw new ValidationError(`${field}.name`, 'is required');
  const hasArgv = spec.argv !== undefined;
  const hasScript = spec.script !== undefined;
  if (hasArgv === hasScript) {
    throw new ValidationError(`${field}.argv`, 'exactly one of argv and script is required');
  }
  if (hasArgv) argvField(spec.argv, `${field}.argv`);
  if (hasScript) {
    if (typeof spec.script !== 'string' || spec.script.trim() === '') {
      throw new ValidationError(`${field}.script`, 'must be a non-empty string');
    }
    if (spec.script.includes('\0'))
      throw new ValidationError(`${field}.script`, 'must not contain NUL');
  }
  if (spec.workdir !== undefined) safeRelativePath(spec.workdir, `${field}.workdir`);
  spec.inputs?.forEach((input, i) => {
    const f = `${field}.inputs[${i}]`;
    safeRelativePath(input.to, `${f}.to`);
    if ('fromJob' in input) {
      if (typeof input.fromJob !== 'string' || input.fromJob === '')
        throw new ValidationError(`${f}.fromJob`, 'must be a job id or workflow key');
      safeRelativePath(input.path, `${f}.path`);
    } else if ('from' in input) {
      if (typeof input.from !== 'string' || input.from === '') {
        throw new ValidationError(`${f}.from`, 'must be a path');
      }
    } else if (typeof input.content !== 'string' && !(input.content instanceof Uint8Array)) {
      throw new ValidationError(`${f}.content`, 'must be a string or bytes');
    }
  });
  validateOutputs(spec.outputs, `${field}.outputs`);
  if (spec.env !== undefined) {
    for (const [name, value] of Object.entries(spec.env)) {
      assertEnvName(name, `${field}.env`);
      if (typeof value !== 'string' || value.includes('\0')) {
        throw new ValidationError(`${field}.env.${name}`, 'must be a string without NUL');
      }
    }
  }
  for (const [i, m] of (spec.modules ?? []).entries()) {
    matches(m, WORD, `${field}.modules[${i}]`, 'a module name');
  }
  for (const [i, argv] of (spec.pre ?? []).entries()) argvField(argv, `${field}.pre[${i}]`);
  for (const [i, argv] of (spec.post ?? []).entries()) argvField(argv, `${field}.post[${i}]`);
  validateResources(spec.resources, `${field}.resources`);
}
