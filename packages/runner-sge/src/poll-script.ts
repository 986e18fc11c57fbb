// biome-ignore-all lint/suspicious/noTemplateCurlyInString: this file writes shell text, where ${VAR} is shell syntax
// The single shell script one `poll` runs on the target: ONE `qstat -xml` for every tracked job;
// for jobs in error state one `qstat -j` (their reasons) and, by default, one `qdel`; for each
// job qstat no longer lists and whose exit file does not already tell its end, a `qacct -j`;
// then the exit files and cancel markers of every job directory. Its output is split into
// marked sections and parsed by pure functions.

import { shQuote } from '@crystalmath/core';
import { CANCEL_FILE, EXIT_FILE_PREFIX } from './render-sge-script.js';
import { SgeParseError } from './sge-errors.js';

/** Paths (or names on PATH) of the Grid Engine commands. */
export interface SgeCommands {
  readonly qsub: string;
  readonly qstat: string;
  readonly qacct: string;
  readonly qdel: string;
}

export interface PollScriptInput {
  readonly jobs: readonly {
    readonly jobId: string;
    readonly jobDir: string;
    readonly arrayTasks?: number;
  }[];
  readonly commands: SgeCommands;
  /** qdel jobs found in error state (`Eqw`): they would otherwise wait for an administrator. */
  readonly deleteErrorJobs: boolean;
}

/** Marker that starts a section of the poll script's output. Job data never starts with `@`. */
const MARK = '@@cm:';

/** Builds the poll script; run it with `sh -s` and the script on stdin (any number of jobs). */
export function buildPollScript(input: PollScriptInput): string {
  for (const j of input.jobs) {
    if (!/^\d+$/.test(j.jobId)) throw new SgeParseError(`invalid job id in handle: ${j.jobId}`);
  }
  const c = input.commands;
  const ids = [...new Set(input.jobs.map((j) => j.jobId))];
  const lines = [
    `cm_out=$(${shQuote(c.qstat)} -xml)`,
    'cm_rc=$?',
    `printf '${MARK}qstat %s\\n' "$cm_rc"`,
    `[ -n "$cm_out" ] && printf '%s\\n' "$cm_out"`,
    '[ "$cm_rc" -eq 0 ] || exit 0',
    // Our jobs in error state: the <state> line follows its <JB_job_number> in each <job_list>.
    // The tracked ids live in a shell variable, not in an argument: thousands of them would
    // pass the kernel's 128 KiB limit on one argument.
    `cm_ids=' ${ids.join(' ')} '`,
    'cm_err=',
    `for cm_id in $(printf '%s\\n' "$cm_out" | awk '/<JB_job_number>/ { id = $0; gsub(/[^0-9]/, "", id) } /<state>[^<]*E/ { print id }' | sort -u); do`,
    '  case "$cm_ids" in *" $cm_id "*) cm_err="${cm_err}${cm_err:+,}$cm_id" ;; esac',
    'done',
    'if [ -n "$cm_err" ]; then',
    `  printf '${MARK}errors\\n'`,
    `  ${shQuote(c.qstat)} -j "$cm_err" 2>/dev/null`,
  ];
  if (input.deleteErrorJobs) {
    lines.push(
      `  ${shQuote(c.qdel)} "$cm_err" >/dev/null 2>&1`,
      `  printf '${MARK}deleted %s\\n' "$cm_err"`,
    );
  }
  lines.push(
    'fi',
    // cm_job ID DIR ARRAY: accounting for a job qstat no longer lists, unless its exit file
    // already says how it ended (accounting files grow large: each qacct reads all of it).
    'cm_job() {',
    '  case "$cm_out" in *"<JB_job_number>$1</JB_job_number>"*) return 0 ;; esac',
    `  if [ "$3" = 1 ] || [ ! -f "$2/${EXIT_FILE_PREFIX}$1" ] || [ -f "$2/${CANCEL_FILE}" ]; then`,
    `    printf '${MARK}qacct %s\\n' "$1"`,
    `    ${shQuote(c.qacct)} -j "$1" 2>/dev/null`,
    '  fi',
    '}',
  );
  const seen = new Set<string>();
  for (const j of input.jobs) {
    if (seen.has(j.jobId)) continue;
    seen.add(j.jobId);
    lines.push(
      `cm_job ${j.jobId} ${shQuote(j.jobDir, 'handle.data.jobDir')} ${j.arrayTasks === undefined ? 0 : 1}`,
    );
  }
  // Exit files and cancel markers of every tracked job, read with shell builtins only.
  const dirs = [...new Set(input.jobs.map((j) => j.jobDir))];
  lines.push(
    `printf '${MARK}files\\n'`,
    `for cm_d in ${dirs.map((d) => shQuote(d, 'handle.data.jobDir')).join(' ')}; do`,
    `  for cm_f in "$cm_d"/${EXIT_FILE_PREFIX}*; do`,
    '    case "$cm_f" in *.tmp) continue ;; esac',
    '    [ -f "$cm_f" ] || continue',
    '    cm_line=; IFS= read -r cm_line < "$cm_f"',
    `    printf 'exit %s %s\\n' "\${cm_f##*/exit.}" "$cm_line"`,
    '  done',
    `  if [ -f "$cm_d/${CANCEL_FILE}" ]; then`,
    `    cm_line=; IFS= read -r cm_line < "$cm_d/${CANCEL_FILE}"`,
    `    printf 'cancel %s\\n' "$cm_line"`,
    '  fi',
    'done',
    `printf '${MARK}end\\n'`,
  );
  return `${lines.join('\n')}\n`;
}

/** The poll script's output, split by section. */
export interface PollOutput {
  readonly qstatExit: number;
  readonly qstat: string;
  /** `qstat -j` of the jobs in error state. */
  readonly errors: string;
  /** Ids deleted because they were in error state. */
  readonly deleted: readonly string[];
  /** Concatenated `qacct -j` outputs. */
  readonly qacct: string;
  /** `exit <id>[.<task>] <code> [SIGNAL]` and `cancel <id>` lines. */
  readonly files: string;
  /** The script ran to its end (false when qstat failed). */
  readonly complete: boolean;
}

/** Splits the poll script's output into its sections. */
export function parsePollOutput(stdout: string): PollOutput {
  let qstatExit: number | undefined;
  const bodies = new Map<string, string[]>();
  const deleted: string[] = [];
  let complete = false;
  let current: string[] | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith(MARK)) {
      const rest = line.slice(MARK.length);
      const sp = rest.indexOf(' ');
      const tag = sp < 0 ? rest : rest.slice(0, sp);
      const arg = sp < 0 ? '' : rest.slice(sp + 1);
      if (tag === 'qstat') qstatExit = Number(arg);
      if (tag === 'deleted') deleted.push(...arg.split(',').filter((x) => /^\d+$/.test(x)));
      if (tag === 'end') complete = true;
      current = bodies.get(tag) ?? [];
      bodies.set(tag, current);
    } else {
      current?.push(line);
    }
  }
  if (qstatExit === undefined) throw new SgeParseError('poll output lacks the qstat section');
  return {
    qstatExit,
    qstat: bodies.get('qstat')?.join('\n') ?? '',
    errors: bodies.get('errors')?.join('\n') ?? '',
    deleted,
    qacct: bodies.get('qacct')?.join('\n') ?? '',
    files: bodies.get('files')?.join('\n') ?? '',
    complete,
  };
}

/** Parses the files section: exit records by `<id>[.<task>]` and the cancelled job ids. */
export function parseJobFiles(text: string): {
  exits: Map<string, { exitCode: number; signal?: string }>;
  cancelled: Set<string>;
} {
  const exits = new Map<string, { exitCode: number; signal?: string }>();
  const cancelled = new Set<string>();
  for (const line of text.split('\n')) {
    const e = /^exit (\d+(?:\.\d+)?) (\d+)(?: ([A-Z]+))?\s*$/.exec(line);
    if (e) {
      const [, id = '', code = '', signal] = e;
      exits.set(
        id,
        signal === undefined
          ? { exitCode: Number(code) }
          : { exitCode: Number(code), signal: `SIG${signal}` },
      );
      continue;
    }
    const c = /^cancel (\d+)\s*$/.exec(line);
    if (c?.[1] !== undefined) cancelled.add(c[1]);
  }
  return { exits, cancelled };
}
