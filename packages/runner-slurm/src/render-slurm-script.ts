// biome-ignore-all lint/suspicious/noTemplateCurlyInString: this file writes shell text, where ${VAR} is shell syntax
// Turns a validated job into the text of an sbatch script: `#SBATCH` lines from typed
// resources, then a fixed body that runs the command and records its exit code in a file.
// No user string reaches the body except through `shQuote`/`shJoin`/`shExports`. Carriage
// returns are the one exception to plain quoting: sbatch rejects any script containing CR LF,
// so a CR inside a value is spelt as the fixed word "$cm_cr" between quoted pieces.

import {
  assertEnvName,
  DIRECTIVE_PATTERN,
  isValidJobKey,
  type JobSpec,
  RUNNER_INTERNAL_DIR,
  safeRelativePath,
  shExports,
  shQuote,
  shQuoteCommand,
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

/** Folder inside each job directory holding the runner's own files. */
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
  /** Runner job key: becomes `--job-name` and part of `--comment`. */
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

/**
 * One shell word for `value`, like `quote` (core's `shQuote` by default), but with each CR as
 * `"$cm_cr"` (see above).
 */
function shWord(value: string, field: string, quote = shQuote): string {
  if (!value.includes('\r')) return quote(value, field);
  return value
    .split('\r')
    .map((piece, i) => (i === 0 ? quote(piece, field) : shQuote(piece, field)))
    .join('"$cm_cr"');
}

/** A command like core's `shCommand` (its first word always read as a program), CR-safe. */
function shCommandWords(argv: readonly string[], field: string): string {
  if (argv.length === 0) throw new ValidationError(field, 'must not be empty');
  return argv
    .map((arg, i) =>
      i === 0 ? shWord(arg, `${field}[0]`, shQuoteCommand) : shWord(arg, `${field}[${i}]`),
    )
    .join(' ');
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
    { option: 'job-name', value: key, field: 'job.key' },
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
    'cm_sig=',
    'cm_finish() {',
    '  cm_rc=$?',
    '  trap - EXIT TERM INT',
    `  printf '%s %s\\n' "$cm_rc" "$cm_sig" > "$cm_dir/${EXIT_FILE_PREFIX}$cm_id.tmp" &&`,
    `    mv -f "$cm_dir/${EXIT_FILE_PREFIX}$cm_id.tmp" "$cm_dir/${EXIT_FILE_PREFIX}$cm_id"`,
    '  exit "$cm_rc"',
    '}',
    'trap cm_finish EXIT',
    "trap 'cm_sig=TERM; exit 143' TERM",
    "trap 'cm_sig=INT; exit 130' INT",
    "cm_cr=$(printf '\\r')",
  );
  if (spec.modules !== undefined && spec.modules.length > 0) {
    lines.push(
      'if ! command -v module >/dev/null 2>&1 && [ -f /etc/profile.d/modules.sh ]; then . /etc/profile.d/modules.sh; fi',
    );
    spec.modules.forEach((m, i) => {
      lines.push(`module load ${shQuote(m, `spec.modules[${i}]`)} || exit $?`);
    });
  }
  if (spec.env !== undefined && Object.keys(spec.env).length > 0) {
    const plain: Record<string, string> = {};
    for (const [name, value] of Object.entries(spec.env)) {
      if (!value.includes('\r')) plain[name] = value;
    }
    if (Object.keys(plain).length > 0) lines.push(shExports(plain, 'spec.env'));
    for (const [name, value] of Object.entries(spec.env)) {
      if (!value.includes('\r')) continue;
      assertEnvName(name, 'spec.env');
      lines.push(`export ${name}=${shWord(value, `spec.env.${name}`)}`);
    }
  }
  if (spec.workdir !== undefined) {
    lines.push(`cd -- ${shQuote(safeRelativePath(spec.workdir, 'spec.workdir'))} || exit 120`);
  }
  // `command --` runs argv[0] as a command even when it looks like a keyword or an assignment.
  spec.pre?.forEach((argv, i) => {
    lines.push(`command -- ${shCommandWords(argv, `spec.pre[${i}]`)} || exit $?`);
  });
  if (spec.argv !== undefined) lines.push(`command -- ${shCommandWords(spec.argv, 'spec.argv')}`);
  else lines.push(`/bin/sh "$cm_dir/${USER_SCRIPT_FILE}"`);
  lines.push('cm_main_rc=$?');
  spec.post?.forEach((argv, i) => {
    lines.push(`command -- ${shCommandWords(argv, `spec.post[${i}]`)}`);
  });
  lines.push('exit "$cm_main_rc"', '');
  const script = lines.join('\n');
  return spec.script !== undefined
    ? { script, directives, userScript: spec.script }
    : { script, directives };
}
