// biome-ignore-all lint/suspicious/noTemplateCurlyInString: this file writes shell text, where ${VAR} is shell syntax
// The single shell script one `poll` runs on the target: ONE squeue call for every tracked
// job, then, only for the jobs squeue no longer shows, ONE accounting call (`sacct -P`, or
// `sacct -c` when accounting storage is disabled), and the exit files the job scripts wrote.
// Its output is split into marked sections and parsed by pure functions.

import { shQuote } from '@crystalmath/core';
import { SACCT_FIELDS } from './parse-sacct.js';
import { SQUEUE_FORMAT } from './parse-squeue.js';
import { EXIT_FILE_PREFIX } from './render-slurm-script.js';
import { SlurmParseError } from './slurm-errors.js';

/** Where job results come from once squeue has forgotten a job. */
export type AccountingMode = 'auto' | 'sacct' | 'jobcomp' | 'none';

/** Paths (or names on PATH) of the SLURM commands. */
export interface SlurmCommands {
  readonly sbatch: string;
  readonly squeue: string;
  readonly sacct: string;
  readonly scancel: string;
}

export interface PollScriptInput {
  /** Job ids (digits only), each with its job directory. */
  readonly jobs: readonly { readonly jobId: string; readonly jobDir: string }[];
  readonly commands: SlurmCommands;
  readonly accounting: AccountingMode;
}

/** Marker that starts a section of the poll script's output. Job data never starts with `@`. */
const MARK = '@@cm:';

/**
 * Builds the poll script. Job ids must already be validated as digits. Run it with
 * `sh -s` and the script on stdin: a single argv element is limited to 128 KiB on Linux, and
 * thousands of tracked jobs make a longer script.
 */
export function buildPollScript(input: PollScriptInput): string {
  const ids = [...new Set(input.jobs.map((j) => j.jobId))];
  for (const id of ids) {
    if (!/^\d+$/.test(id)) throw new SlurmParseError(`invalid job id in handle: ${id}`);
  }
  // With a single id, squeue asks the controller for that job alone and fails when it was
  // purged; a list (even the same id twice) is filtered instead, so a purged id is just absent.
  const list = ids.length === 1 ? `${ids[0]},${ids[0]}` : ids.join(',');
  const c = input.commands;
  const lines = [
    `cm_out=$(${shQuote(c.squeue)} --noheader --states=all --jobs=${list} --format=${shQuote(SQUEUE_FORMAT)})`,
    'cm_rc=$?',
    `printf '${MARK}squeue %s\\n' "$cm_rc"`,
    `[ -n "$cm_out" ] && printf '%s\\n' "$cm_out"`,
    `[ "$cm_rc" -eq 0 ] || exit 0`,
    'cm_missing=',
    "cm_nl='",
    "'",
    `for cm_id in ${ids.join(' ')}; do`,
    '  case "$cm_nl$cm_out" in',
    '  *"$cm_nl$cm_id|"* | *"$cm_nl${cm_id}_"*) ;;',
    '  *) cm_missing="${cm_missing}${cm_missing:+,}$cm_id" ;;',
    '  esac',
    'done',
    `printf '${MARK}missing %s\\n' "$cm_missing"`,
    'if [ -n "$cm_missing" ]; then',
  ];
  const sacct = `${shQuote(c.sacct)} --parsable2 --noheader --allocations --jobs="$cm_missing" --format=${SACCT_FIELDS}`;
  const jobcomp = `${shQuote(c.sacct)} --completion --parsable2 --noheader --jobs="$cm_missing" --format=${SACCT_FIELDS}`;
  if (input.accounting === 'auto' || input.accounting === 'sacct') {
    lines.push(
      `  if cm_acct=$(${sacct} 2>/dev/null); then`,
      `    printf '${MARK}acct sacct\\n'; [ -n "$cm_acct" ] && printf '%s\\n' "$cm_acct"`,
    );
    if (input.accounting === 'auto') {
      lines.push(
        `  elif cm_acct=$(${jobcomp} 2>/dev/null); then`,
        `    printf '${MARK}acct jobcomp\\n'; [ -n "$cm_acct" ] && printf '%s\\n' "$cm_acct"`,
      );
    }
    lines.push(`  else printf '${MARK}acct none\\n'`, '  fi');
  } else if (input.accounting === 'jobcomp') {
    lines.push(
      `  if cm_acct=$(${jobcomp} 2>/dev/null); then`,
      `    printf '${MARK}acct jobcomp\\n'; [ -n "$cm_acct" ] && printf '%s\\n' "$cm_acct"`,
      `  else printf '${MARK}acct none\\n'`,
      '  fi',
    );
  }
  if (input.accounting === 'none') lines.push(`  printf '${MARK}acct none\\n'`);
  lines.push('fi', `printf '${MARK}exit\\n'`);
  // Exit files of every tracked job: read with shell builtins only, no process per job.
  const dirs = [...new Set(input.jobs.map((j) => j.jobDir))];
  lines.push(
    `for cm_d in ${dirs.map((d) => shQuote(d, 'handle.data.jobDir')).join(' ')}; do`,
    `  for cm_f in "$cm_d"/${EXIT_FILE_PREFIX}*; do`,
    '    case "$cm_f" in *.tmp) continue ;; esac',
    '    [ -f "$cm_f" ] || continue',
    '    cm_line=; IFS= read -r cm_line < "$cm_f"',
    `    printf '%s %s\\n' "\${cm_f##*/exit.}" "$cm_line"`,
    '  done',
    'done',
  );
  lines.push(`printf '${MARK}end\\n'`);
  return `${lines.join('\n')}\n`;
}

/** The poll script's output, split by section. */
export interface PollOutput {
  /** squeue's exit status. */
  readonly squeueExit: number;
  readonly squeue: string;
  /** Jobs squeue did not show. */
  readonly missing: readonly string[];
  /** Which accounting source answered for the missing jobs, if any was asked. */
  readonly accounting?: 'sacct' | 'jobcomp' | 'none';
  readonly acct: string;
  /** `<jobid>[_<task>] <exit code> [signal]` lines from the exit files. */
  readonly exitFiles: string;
  /** The script ran to its end (false when squeue failed). */
  readonly complete: boolean;
}

/** Splits the poll script's output into its sections. */
export function parsePollOutput(stdout: string): PollOutput {
  const sections = new Map<string, { arg: string; body: string[] }>();
  let current: string[] | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith(MARK)) {
      const rest = line.slice(MARK.length);
      const sp = rest.indexOf(' ');
      const tag = sp < 0 ? rest : rest.slice(0, sp);
      const arg = sp < 0 ? '' : rest.slice(sp + 1);
      const section = { arg, body: [] as string[] };
      sections.set(tag, section);
      current = section.body;
    } else if (current !== undefined) {
      current.push(line);
    }
  }
  const sq = sections.get('squeue');
  if (sq === undefined) throw new SlurmParseError('poll output lacks the squeue section');
  const acct = sections.get('acct');
  const accounting =
    acct?.arg === 'sacct' || acct?.arg === 'jobcomp' || acct?.arg === 'none' ? acct.arg : undefined;
  const missing = sections.get('missing')?.arg ?? '';
  return {
    squeueExit: Number(sq.arg),
    squeue: sq.body.join('\n'),
    missing: missing === '' ? [] : missing.split(','),
    ...(accounting === undefined ? {} : { accounting }),
    acct: acct?.body.join('\n') ?? '',
    exitFiles: sections.get('exit')?.body.join('\n') ?? '',
    complete: sections.has('end'),
  };
}

/** One exit file: the job script's exit code and, when it was terminated, the signal name. */
export interface ExitRecord {
  readonly exitCode: number;
  readonly signal?: string;
}

/** Parses the exit-file section into `jobid[_task]` → record. Malformed lines are skipped. */
export function parseExitFiles(text: string): Map<string, ExitRecord> {
  const out = new Map<string, ExitRecord>();
  for (const line of text.split('\n')) {
    const m = /^(\d+(?:_\d+)?) (\d+)(?: ([A-Z]+))?\s*$/.exec(line);
    if (!m) continue;
    const [, id = '', code = '', signal] = m;
    out.set(
      id,
      signal === undefined
        ? { exitCode: Number(code) }
        : { exitCode: Number(code), signal: `SIG${signal}` },
    );
  }
  return out;
}
