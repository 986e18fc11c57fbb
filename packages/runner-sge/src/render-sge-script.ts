// biome-ignore-all lint/suspicious/noTemplateCurlyInString: this file writes shell text, where ${VAR} is shell syntax
// Turns a validated job into the text of a qsub script: `#$` lines from typed resources, then a
// fixed body that runs the command and records its exit code in a file. qsub reads `#$` lines
// anywhere in the script, even inside a quoted string, so no user value may put a line break in
// the script: core's `batchScriptBody` spells each LF (and CR) inside a value as the fixed word
// "$cm_nl" ("$cm_cr") between quoted pieces, and refuses a body line that starts with `#$`.

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
import {
  mergeSgeResources,
  parseSgeArray,
  type SgeDefaults,
  type SgeResources,
  slotsOf,
  validateSgeResources,
} from './sge-resources.js';

/** The runners' reserved folder in a job directory (defined once in core). */
export const INTERNAL_DIR = RUNNER_INTERNAL_DIR;
/** The generated job script, relative to the job directory. */
export const SCRIPT_FILE = `${INTERNAL_DIR}/job.sge`;
/** A `script` job's body, relative to the job directory. */
export const USER_SCRIPT_FILE = `${INTERNAL_DIR}/script.sh`;
/** The Grid Engine job id, written by the submit command right after `qsub` answers. */
export const JOBID_FILE = `${INTERNAL_DIR}/jobid`;
/** Prefix of the exit files: `.cm/exit.<jobid>` or `.cm/exit.<jobid>.<task>`. */
export const EXIT_FILE_PREFIX = `${INTERNAL_DIR}/exit.`;
/** Written by `cancel` before `qdel`: a job killed after it was asked to stop is `cancelled`. */
export const CANCEL_FILE = `${INTERNAL_DIR}/cancelled`;

/**
 * qsub options an extra directive may set (written `--name` or `--name=value`, core's form, for
 * `-name [value]`; a `-` in the name stands for Grid Engine's `_`: `--hold-jid=12`). Everything else is refused: the runner sets `-N -o -e -S -cwd -t -pe -q -P
 * -A -r` itself, and options such as `-v`/`-V` (environment), `-C` (directive prefix), `-@`
 * (options file), `-b`, `-sync` or `-terse` would change what the script is or how it is read.
 */
export const ALLOWED_EXTRA_OPTIONS: ReadonlySet<string> = new Set([
  'l', // resource requests: -l scratch=10G,arch=lx-amd64
  'm', // mail events
  'p', // priority
  'a', // earliest start time
  'dl', // deadline
  'h', // submit held
  'hold_jid', // wait for other jobs
  'hold_jid_ad', // array task dependencies
  'ac', // job context
  'js', // job share
  'ckpt', // checkpointing environment
  'binding', // core binding
  'notify', // SIGUSR1/SIGUSR2 before suspend/kill
  'soft',
  'hard',
]);

/** One `#$ -option [value]` line and the field it came from. */
export interface SgeDirective {
  readonly option: string;
  readonly value?: string;
  /** The spec field the directive was generated from, e.g. `spec.resources.partition`. */
  readonly field: string;
}

export interface RenderSgeScriptOptions {
  /** Runner job key: becomes the job name (`-N`). */
  readonly key: string;
  readonly spec: JobSpec;
  readonly defaults?: SgeDefaults;
}

export interface RenderedSgeScript {
  readonly script: string;
  /** The `#$` directives it contains, in order. */
  readonly directives: readonly SgeDirective[];
  /** For `script` jobs, the body to store at `USER_SCRIPT_FILE`. */
  readonly userScript?: string;
  /** Number of array tasks, for array jobs. */
  readonly arrayTasks?: number;
  /** First task id, for array jobs. */
  readonly arrayFirst?: number;
}

// A final guard on every emitted directive, independent of the validators: one option, an
// optional value without whitespace, quotes, backslashes or control characters. `$` is allowed
// only in the runner's own output-file names (Grid Engine expands $JOB_ID and $TASK_ID there).
const DIRECTIVE_LINE = /^#\$ -[A-Za-z][A-Za-z0-9_]{0,31}( [^\s'"\\`;<>|&\p{Cc}]{1,512})*$/u;

/**
 * The Grid Engine job name for a job key. Grid Engine refuses names starting with a digit;
 * those get a `_` in front, which no job key can start with, so names stay unique.
 */
export function sgeJobName(key: string): string {
  return /^[0-9]/.test(key) ? `_${key}` : key;
}

function extraDirectives(r: SgeResources, f: string): SgeDirective[] {
  return (r.extraDirectives ?? []).map((d, i) => {
    const field = `${f}.extraDirectives[${i}]`;
    if (typeof d !== 'string' || !DIRECTIVE_PATTERN.test(d)) {
      throw new ValidationError(
        field,
        'must be of the form --name or --name=value (for -name value)',
      );
    }
    const eq = d.indexOf('=');
    // Core's form has no `_` in names, Grid Engine's options no `-`: `--hold-jid` is `-hold_jid`.
    const option = (eq < 0 ? d.slice(2) : d.slice(2, eq)).replace(/-/g, '_');
    if (!ALLOWED_EXTRA_OPTIONS.has(option)) {
      throw new ValidationError(
        field,
        `-${option} is not an allowed extra option (allowed: ${[...ALLOWED_EXTRA_OPTIONS].map((o) => `-${o}`).join(' ')})`,
      );
    }
    return eq < 0 ? { option, field } : { option, value: d.slice(eq + 1), field };
  });
}

function resourceDirectives(r: SgeResources, f: string): SgeDirective[] {
  const out: SgeDirective[] = [];
  const add = (option: string, value: string | undefined, field: string): void => {
    if (value !== undefined) out.push({ option, value, field: `${f}.${field}` });
  };
  const slots = slotsOf(r);
  if (slots > 1) {
    if (r.parallelEnvironment === undefined) {
      throw new ValidationError(
        `${f}.parallelEnvironment`,
        `is required for ${slots} slots (tasks x cpusPerTask): name a parallel environment such as smp`,
      );
    }
    add('pe', `${r.parallelEnvironment} ${slots}`, r.tasks === undefined ? 'cpusPerTask' : 'tasks');
  }
  // h_vmem is per slot: the job's total memory is divided among its slots.
  if (r.memoryMb !== undefined) add('l', `h_vmem=${Math.ceil(r.memoryMb / slots)}M`, 'memoryMb');
  if (r.memoryPerCpuMb !== undefined) add('l', `h_vmem=${r.memoryPerCpuMb}M`, 'memoryPerCpuMb');
  if (r.walltimeSeconds !== undefined) add('l', `h_rt=${r.walltimeSeconds}`, 'walltimeSeconds');
  add('q', r.partition, 'partition');
  add('P', r.project, 'project');
  add('A', r.account, 'account');
  if (r.array !== undefined) {
    const a = parseSgeArray(r.array);
    if (a !== null) {
      add('t', `${a.first}-${a.last}:${a.step}`, 'array');
      if (a.limit !== undefined) add('tc', String(a.limit), 'array');
    }
  }
  return out;
}

function renderDirective(d: SgeDirective): string {
  const line = d.value === undefined ? `#$ -${d.option}` : `#$ -${d.option} ${d.value}`;
  if (!DIRECTIVE_LINE.test(line)) {
    throw new ValidationError(d.field, 'contains characters not allowed in a #$ line');
  }
  return line;
}

/**
 * Renders the qsub script for a job. Validates the spec and the Grid Engine-specific parts and
 * throws a ValidationError naming the field.
 *
 * @example
 * const { script } = renderSgeScript({ key: 'job-1-a1', spec: { name: 'hi', argv: ['echo', 'hi'] } });
 */
export function renderSgeScript(options: RenderSgeScriptOptions): RenderedSgeScript {
  const { key, spec } = options;
  if (!isValidJobKey(key)) {
    throw new ValidationError('job.key', 'must be letters, digits and ._- (at most 64)');
  }
  validateJobSpec(spec, 'spec');
  const f = 'spec.resources';
  validateSgeResources(spec.resources as SgeResources | undefined, f);
  const r = mergeSgeResources(options.defaults, spec.resources as SgeResources | undefined);
  const array = r.array === undefined ? null : parseSgeArray(r.array);
  const log = array === null ? 'sge-$JOB_ID' : 'sge-$JOB_ID.$TASK_ID';
  const directives: SgeDirective[] = [
    { option: 'N', value: sgeJobName(key), field: 'job.key' },
    { option: 'S', value: '/bin/bash', field: 'job.key' },
    { option: 'cwd', field: 'job.key' },
    { option: 'o', value: `${log}.out`, field: 'job.key' },
    { option: 'e', value: `${log}.err`, field: 'job.key' },
    // Never rerun on another host behind our back: a second run would overwrite the first's files.
    { option: 'r', value: 'n', field: 'job.key' },
    ...resourceDirectives(r, f),
    ...extraDirectives(r, f),
  ];

  const lines = ['#!/bin/bash', ...directives.map(renderDirective)];
  lines.push(
    '# Generated by @crystalmath/runner-sge. The EXIT trap records the exit code in',
    '# .cm/exit.<jobid>[.<task>] so the result is known before qacct has it.',
    'cm_dir=$PWD',
    'cm_id=${JOB_ID:-none}',
    'case "${SGE_TASK_ID:-undefined}" in undefined) ;; *) cm_id=$cm_id.$SGE_TASK_ID ;; esac',
    ...batchExitTrap({
      exitFile: `$cm_dir/${EXIT_FILE_PREFIX}$cm_id`,
      resetSignals: ['USR1', 'USR2'],
    }),
    ...batchScriptBody({
      spec,
      userScriptFile: `"$cm_dir/${USER_SCRIPT_FILE}"`,
      directivePrefixes: ['#$'],
    }),
    '',
  );
  const script = lines.join('\n');
  const extra =
    array === null
      ? {}
      : {
          arrayTasks: Math.floor((array.last - array.first) / array.step) + 1,
          arrayFirst: array.first,
        };
  return spec.script !== undefined
    ? { script, directives, userScript: spec.script, ...extra }
    : { script, directives, ...extra };
}
