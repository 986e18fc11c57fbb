// biome-ignore-all lint/suspicious/noTemplateCurlyInString: this file writes shell text, where ${VAR} is shell syntax
// Turns a validated job into the text of an sbatch script: `#SBATCH` lines from typed
// resources, then a fixed body that runs the command and records its exit code in a file.
// No user string reaches the body except through core's one-line quoting (`shQuoteOneLine`):
// sbatch obeys `#PBS` lines anywhere in the script (even inside a quoted string) and rejects
// any script containing CR LF, so each LF and CR inside a value is spelt as the fixed word
// "$cm_nl" / "$cm_cr" between quoted pieces and no value ever starts a line of its own.

import {
  batchExitTrap,
  batchScriptBody,
  DIRECTIVE_PATTERN,
  isValidJobKey,
  type JobSpec,
  RUNNER_INTERNAL_DIR,
  ValidationError,
  validateJobSpec,
} from '@crystalmath/core';
import { formatWalltime } from './format-walltime.js';
import {
  mergeResources,
  type SlurmDefaults,
  type SlurmResources,
  validateSlurmDefaults,
  validateSlurmResources,
} from './slurm-resources.js';

/** The runners' reserved folder in a job directory (defined once in core). */
export const INTERNAL_DIR = RUNNER_INTERNAL_DIR;
/** The generated batch script, relative to the job directory. */
export const SCRIPT_FILE = `${INTERNAL_DIR}/job.sbatch`;
/** A `script` job's body, relative to the job directory. */
export const USER_SCRIPT_FILE = `${INTERNAL_DIR}/script.sh`;
/** The SLURM job id, written by the submit command right after `sbatch` answers. */
export const JOBID_FILE = `${INTERNAL_DIR}/jobid`;
/** Prefix of the exit files: `.cm/exit.<jobid>` or `.cm/exit.<jobid>_<task>`. */
export const EXIT_FILE_PREFIX = `${INTERNAL_DIR}/exit.`;

/** Options that the runner sets itself; an extra directive may not set them (nor abbreviate them). */
export const RESERVED_DIRECTIVES: readonly string[] = [
  'output',
  'error',
  'input',
  'job-name',
  'comment',
  'chdir',
  'wrap',
  'parsable',
  'test-only',
  'array',
];
/** Directives a site may not skip: the runner depends on them. */
const UNSKIPPABLE: ReadonlySet<string> = new Set(['output', 'error', 'job-name']);

/** One `#SBATCH --option[=value]` line and the field it came from. */
export interface SlurmDirective {
  readonly option: string;
  readonly value?: string;
  /** The spec field the directive was generated from, e.g. `spec.resources.partition`. */
  readonly field: string;
}

export interface RenderSlurmScriptOptions {
  /** Runner job key: ends `--job-name` (see `slurmJobName`) and is part of `--comment`. */
  readonly key: string;
  readonly spec: JobSpec;
  readonly defaults?: SlurmDefaults;
  /** Option names (`mem` or `--mem`) that this site rejects; they are left out. */
  readonly skipDirectives?: readonly string[];
}

export interface RenderedSlurmScript {
  /** The sbatch script text. */
  readonly script: string;
  /** The `#SBATCH` directives it contains, in order. */
  readonly directives: readonly SlurmDirective[];
  /** For `script` jobs, the body to store at `USER_SCRIPT_FILE`. */
  readonly userScript?: string;
}

// A final guard on every emitted line, independent of the field validators: one option, an
// optional value without whitespace, quotes, backslashes or control characters.
const DIRECTIVE_LINE = /^#SBATCH --[a-z][a-z0-9-]{0,63}(=[^\s'"\\`$;<>\p{Cc}]{1,512})?$/u;
const SKIP_ENTRY = /^(--)?[a-z][a-z0-9-]{0,63}$/;

/** Normalises and validates a site's `skipDirectives` list (`--mem` and `mem` are the same). */
export function normaliseSkipDirectives(
  skip: readonly string[] | undefined,
  field = 'skipDirectives',
): ReadonlySet<string> {
  const out = new Set<string>();
  if (skip === undefined) return out;
  if (!Array.isArray(skip)) throw new ValidationError(field, 'must be an array of option names');
  skip.forEach((s: unknown, i: number) => {
    if (typeof s !== 'string' || !SKIP_ENTRY.test(s)) {
      throw new ValidationError(`${field}[${i}]`, 'must be an option name such as --mem');
    }
    const name = s.replace(/^--/, '');
    if (UNSKIPPABLE.has(name)) {
      throw new ValidationError(`${field}[${i}]`, `--${name} is required by the runner`);
    }
    out.add(name);
  });
  return out;
}

function directiveName(d: string): string {
  const eq = d.indexOf('=');
  return (eq < 0 ? d : d.slice(0, eq)).slice(2);
}

/** The `#SBATCH` directives for a job, before skipping. Assumes validated resources. */
function resourceDirectives(
  r: SlurmResources,
  gpuDirective: 'gpus' | 'gres',
  f: string,
): SlurmDirective[] {
  const out: SlurmDirective[] = [];
  const add = (option: string, value: string | number | undefined, field: string): void => {
    if (value === undefined) return;
    out.push({ option, value: String(value), field: `${f}.${field}` });
  };
  add('nodes', r.nodes, 'nodes');
  add('ntasks', r.tasks, 'tasks');
  add('ntasks-per-node', r.tasksPerNode, 'tasksPerNode');
  add('cpus-per-task', r.cpusPerTask, 'cpusPerTask');
  add('mem', r.memoryMb === undefined ? undefined : `${r.memoryMb}M`, 'memoryMb');
  add(
    'mem-per-cpu',
    r.memoryPerCpuMb === undefined ? undefined : `${r.memoryPerCpuMb}M`,
    'memoryPerCpuMb',
  );
  const gres: string[] = [];
  if (r.gpus !== undefined) {
    if (gpuDirective === 'gpus') add('gpus', r.gpus, 'gpus');
    else gres.push(`gpu:${r.gpus}`);
  }
  if (r.gres !== undefined) gres.push(r.gres);
  if (gres.length > 0) add('gres', gres.join(','), r.gres === undefined ? 'gpus' : 'gres');
  if (r.walltimeSeconds !== undefined) {
    add('time', formatWalltime(r.walltimeSeconds, `${f}.walltimeSeconds`), 'walltimeSeconds');
  }
  add('partition', r.partition, 'partition');
  add('account', r.account, 'account');
  add('qos', r.qos, 'qos');
  add('constraint', r.constraint, 'constraint');
  if (r.exclusive === true) out.push({ option: 'exclusive', field: `${f}.exclusive` });
  add('array', r.array, 'array');
  if (r.dependency !== undefined && r.dependency.length > 0) {
    const parts = r.dependency.map((d) =>
      d.type === 'singleton' ? 'singleton' : `${d.type}:${d.jobIds.join(':')}`,
    );
    add('dependency', parts.join(r.dependencyMode === 'any' ? '?' : ','), 'dependency');
  }
  return out;
}

/** Validates `extraDirectives` beyond core's pattern: no reserved option, not even abbreviated. */
function extraDirectives(r: SlurmResources, f: string): SlurmDirective[] {
  return (r.extraDirectives ?? []).map((d, i) => {
    const field = `${f}.extraDirectives[${i}]`;
    if (!DIRECTIVE_PATTERN.test(d)) {
      throw new ValidationError(field, 'must be of the form --name or --name=value');
    }
    const name = directiveName(d);
    // sbatch accepts unambiguous prefixes (`--out` is `--output`), so a prefix is reserved too.
    if (RESERVED_DIRECTIVES.some((reserved) => reserved.startsWith(name))) {
      throw new ValidationError(field, `--${name} is set by the runner and cannot be overridden`);
    }
    const eq = d.indexOf('=');
    return eq < 0 ? { option: name, field } : { option: name, value: d.slice(eq + 1), field };
  });
}

/** A SLURM target's site options, as `SlurmRunnerOptions` and the CLI configuration give them. */
export interface SlurmTargetOptions {
  readonly defaults?: SlurmDefaults | undefined;
  readonly skipDirectives?: readonly string[] | undefined;
}

/**
 * Validates a target's `defaults` with every rule a job's resources get (including the
 * `extraDirectives` that would override an option the runner sets, such as `--output`) and
 * its `skipDirectives`. Throws a ValidationError naming the field, prefixed by `field`
 * (`targets.hpc` gives `targets.hpc.defaults.extraDirectives[0]`).
 */
export function validateSlurmTargetOptions(options: SlurmTargetOptions, field = ''): void {
  const prefix = field === '' ? '' : `${field}.`;
  const defaults = options.defaults;
  validateSlurmDefaults(defaults, `${prefix}defaults`);
  if (defaults !== undefined) {
    extraDirectives(defaults, `${prefix}defaults`).forEach((d) => {
      renderDirective(d);
    });
  }
  normaliseSkipDirectives(options.skipDirectives, `${prefix}skipDirectives`);
}

function renderDirective(d: SlurmDirective): string {
  const line = d.value === undefined ? `#SBATCH --${d.option}` : `#SBATCH --${d.option}=${d.value}`;
  if (!DIRECTIVE_LINE.test(line)) {
    throw new ValidationError(d.field, 'contains characters not allowed in an #SBATCH line');
  }
  return line;
}

function isSkipped(option: string, skip: ReadonlySet<string>): boolean {
  if (skip.has(option)) return true;
  // An abbreviated extra (`--mem-p`) is skipped when it abbreviates a skipped option.
  for (const s of skip) if (s.startsWith(option)) return true;
  return false;
}

/**
 * The SLURM job name of a job: its spec name (cut to letters, digits and `._+-`, 40 at most)
 * then `.` and the runner's key, e.g. `relax-si.cm-84f693-12-a1`, so `squeue` can be matched
 * by eye (its default column shows the first 8 characters) while recovery still finds the job
 * by its key (`jobNameHasKey`).
 */
export function slurmJobName(key: string, name: string): string {
  const safe = name
    .replace(/[^A-Za-z0-9._+-]+/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 40)
    .replace(/[.-]+$/, '');
  return safe ? `${safe}.${key}` : key;
}

/** Whether a SLURM job name is the one `slurmJobName` gives for `key` (or the bare key). */
export function jobNameHasKey(jobName: string, key: string): boolean {
  return jobName === key || jobName.endsWith(`.${key}`);
}

/**
 * Renders the sbatch script for a job. Call `validateJobSpec` first; this validates the
 * SLURM-specific parts and every directive again, and throws a ValidationError naming the
 * field.
 *
 * @example
 * const { script } = renderSlurmScript({ key: 'job-1-a1', spec: { name: 'hi', argv: ['echo', 'hi'] } });
 */
export function renderSlurmScript(options: RenderSlurmScriptOptions): RenderedSlurmScript {
  const { key, spec } = options;
  if (!isValidJobKey(key)) {
    throw new ValidationError('job.key', 'must be letters, digits and ._- (at most 64)');
  }
  validateJobSpec(spec, 'spec');
  const f = 'spec.resources';
  validateSlurmResources(spec.resources as SlurmResources | undefined, f);
  const resources = mergeResources(options.defaults, spec.resources as SlurmResources | undefined);
  const skip = normaliseSkipDirectives(options.skipDirectives);
  const array = resources.array !== undefined;
  const log = array ? 'slurm-%A_%a' : 'slurm-%j';
  const directives: SlurmDirective[] = [
    { option: 'job-name', value: slurmJobName(key, spec.name), field: 'job.key' },
    { option: 'comment', value: `crystalmath:${key}:${spec.name}`, field: 'spec.name' },
    { option: 'output', value: `${log}.out`, field: 'job.key' },
    { option: 'error', value: `${log}.err`, field: 'job.key' },
    ...resourceDirectives(resources, options.defaults?.gpuDirective ?? 'gpus', f),
    ...extraDirectives(resources, f),
  ].filter((d) => !isSkipped(d.option, skip));

  const lines = ['#!/bin/bash', ...directives.map(renderDirective)];
  lines.push(
    '# Generated by @crystalmath/runner-slurm. The EXIT trap records the exit code in',
    '# .cm/exit.<jobid> so the result is known even when SLURM accounting is disabled.',
    'cm_dir=${SLURM_SUBMIT_DIR:-$PWD}',
    'cd "$cm_dir" || exit 120',
    'cm_id=${SLURM_JOB_ID:-none}',
    'if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then cm_id=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}; fi',
    ...batchExitTrap({ exitFile: `$cm_dir/${EXIT_FILE_PREFIX}$cm_id` }),
    ...batchScriptBody({
      spec,
      userScriptFile: `"$cm_dir/${USER_SCRIPT_FILE}"`,
      // sbatch reads #PBS lines anywhere in the script, #SBATCH ones before the first command.
      directivePrefixes: ['#SBATCH', '#PBS'],
    }),
    '',
  );
  const script = lines.join('\n');
  return spec.script !== undefined
    ? { script, directives, userScript: spec.script }
    : { script, directives };
}
