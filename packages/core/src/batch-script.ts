// biome-ignore-all lint/suspicious/noTemplateCurlyInString: this file writes shell text, where ${VAR} is shell syntax
// The part of a batch scheduler's job script that does not depend on the scheduler, written once
// for every batch runner (SLURM, Grid Engine, a custom one): the EXIT trap that records the exit
// code in a file, and the body that runs modules, env, workdir, pre, the command and post. Every
// user value is quoted on one line (`shQuoteOneLine`): schedulers read directives anywhere in a
// script, so a value must never start a line of its own.

import { ValidationError } from './errors.js';
import type { JobSpec } from './job.js';
import { SH_LINE_BREAK_VARS, shCommandOneLine, shExportsOneLine, shQuote } from './quote.js';
import { safeRelativePath } from './safe-path.js';

/** Options of `batchExitTrap`. */
export interface BatchExitTrapOptions {
  /**
   * The exit file, as shell text the runner controls (not a user value) that goes inside double
   * quotes, e.g. `$cm_dir/.cm/exit.$cm_id`: the trap writes `<exit code> <signal>` to `<file>.tmp` and
   * renames it into place, so a reader never sees half a record.
   */
  readonly exitFile: string;
  /** Further signals whose traps are reset in the EXIT handler (Grid Engine: `USR1 USR2`). */
  readonly resetSignals?: readonly string[];
}

/**
 * The lines that record a batch job's exit code and the signal that stopped it (TERM, INT) in an
 * exit file, so the result is known even when the scheduler's accounting is off or late.
 */
export function batchExitTrap(options: BatchExitTrapOptions): string[] {
  const reset = ['EXIT', 'TERM', 'INT', ...(options.resetSignals ?? [])].join(' ');
  const f = options.exitFile;
  return [
    'cm_sig=',
    'cm_finish() {',
    '  cm_rc=$?',
    `  trap - ${reset}`,
    `  printf '%s %s\\n' "$cm_rc" "$cm_sig" > "${f}.tmp" &&`,
    `    mv -f "${f}.tmp" "${f}"`,
    '  exit "$cm_rc"',
    '}',
    'trap cm_finish EXIT',
    "trap 'cm_sig=TERM; exit 143' TERM",
    "trap 'cm_sig=INT; exit 130' INT",
  ];
}

/** Options of `batchScriptBody`. */
export interface BatchScriptBodyOptions {
  /** The job; validated by the caller (`validateJobSpec`). */
  readonly spec: JobSpec;
  /** Where a `script` job's body is stored, as shell text, e.g. `"$cm_dir/.cm/script.sh"`. */
  readonly userScriptFile: string;
  /**
   * The scheduler's directive prefixes (`#SBATCH`, `#PBS`, `#$`): a body line starting with one
   * is refused with a ValidationError on `spec`. One-line quoting already makes that impossible;
   * this is the last guard, independent of it.
   */
  readonly directivePrefixes: readonly string[];
}

/**
 * The body of a batch script after the scheduler's own set-up: the `cm_nl`/`cm_cr` words,
 * modules, env, workdir, the pre commands (a failing one ends the job), the command (argv, or the
 * stored script under `/bin/sh`), the post commands (always), then the command's exit code.
 * Throws a ValidationError naming the field.
 */
export function batchScriptBody(options: BatchScriptBodyOptions): string[] {
  const { spec } = options;
  const lines = [...SH_LINE_BREAK_VARS];
  if (spec.modules !== undefined && spec.modules.length > 0) {
    lines.push(
      'if ! command -v module >/dev/null 2>&1 && [ -f /etc/profile.d/modules.sh ]; then . /etc/profile.d/modules.sh; fi',
    );
    spec.modules.forEach((m, i) => {
      lines.push(`module load ${shQuote(m, `spec.modules[${i}]`)} || exit $?`);
    });
  }
  if (spec.env !== undefined) lines.push(...shExportsOneLine(spec.env, 'spec.env'));
  if (spec.workdir !== undefined) {
    lines.push(`cd -- ${shQuote(safeRelativePath(spec.workdir, 'spec.workdir'))} || exit 120`);
  }
  // `command --` runs argv[0] as a command even when it looks like a keyword or an assignment.
  spec.pre?.forEach((argv, i) => {
    lines.push(`command -- ${shCommandOneLine(argv, `spec.pre[${i}]`)} || exit $?`);
  });
  if (spec.argv !== undefined) lines.push(`command -- ${shCommandOneLine(spec.argv, 'spec.argv')}`);
  else lines.push(`/bin/sh ${options.userScriptFile}`);
  lines.push('cm_main_rc=$?');
  spec.post?.forEach((argv, i) => {
    lines.push(`command -- ${shCommandOneLine(argv, `spec.post[${i}]`)}`);
  });
  lines.push('exit "$cm_main_rc"');
  for (const line of lines) {
    const trimmed = line.trimStart();
    if (options.directivePrefixes.some((p) => trimmed.startsWith(p))) {
      throw new ValidationError('spec', `would put a ${trimmed.split(' ')[0]} line in the script`);
    }
  }
  return lines;
}
