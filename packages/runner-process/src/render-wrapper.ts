// Renders the POSIX sh wrapper written to `<job dir>/.cm/wrapper.sh`. One file, four modes:
// the supervisor (records identity, starts the job in its own session, enforces the walltime,
// writes the exit record atomically on every path), the job itself (setup, pre, main, post),
// the walltime watchdog, and the cancel helper. Every user string goes through core's quoting.

import {
  type JobSpec,
  safeRelativePath,
  shCommand,
  shExports,
  shQuote,
  ValidationError,
} from '@crystalmath/core';
import { DETACH_CMD, INTERNAL_DIR, STAT_FN } from './shell-snippets.js';

export interface RenderWrapperOptions {
  readonly key: string;
  readonly spec: JobSpec;
  /** Grace between SIGTERM and SIGKILL, in ms. */
  readonly killGraceMs: number;
  /** Shell that runs the wrapper and script jobs, e.g. `/bin/sh`. */
  readonly shell: string;
}

export interface RenderedWrapper {
  /** The wrapper script (`.cm/wrapper.sh`). */
  readonly wrapper: string;
  /** The user's script body for script jobs (`.cm/script.sh`), written verbatim. */
  readonly userScript?: string;
}

/** Names the wrapper keeps for itself inside the job's shell. */
const RESERVED_ENV = /^cm(_|$)/;

/** `sleep` argument for a duration in ms: whole or decimal seconds. */
export function sleepSeconds(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  return Number.isInteger(s) ? String(s) : s.toFixed(3).replace(/0+$/, '');
}

function jobBody(options: RenderWrapperOptions): string[] {
  const { spec, shell } = options;
  const lines: string[] = [
    'cm_job() {',
    // A setup failure leaves its reason in .cm/setup; the supervisor reports it as failed.
    `  cm_fail() { printf '%s\\n' "$2" > "$cm/setup.tmp" && mv -f "$cm/setup.tmp" "$cm/setup"; exit "$1"; }`,
  ];
  if (spec.workdir !== undefined) {
    const wd = safeRelativePath(spec.workdir, 'spec.workdir');
    lines.push(
      `  mkdir -p -- ${shQuote(wd)} 2>/dev/null && cd -- ${shQuote(wd)} || cm_fail 1 ${shQuote(`cannot enter workdir ${wd}`)}`,
    );
  }
  if (spec.modules !== undefined && spec.modules.length > 0) {
    lines.push(
      '  if ! command -v module >/dev/null 2>&1; then',
      '    for cm_f in /etc/profile.d/modules.sh /etc/profile.d/lmod.sh; do',
      '      [ -r "$cm_f" ] && . "$cm_f" && break',
      '    done',
      '  fi',
      `  command -v module >/dev/null 2>&1 || cm_fail 127 'environment modules are not available on this host (no module command)'`,
    );
    spec.modules.forEach((m, i) => {
      lines.push(
        `  module load ${shQuote(m, `spec.modules[${i}]`)} || cm_fail 1 ${shQuote(`module load ${m} failed`)}`,
      );
    });
  }
  const env: Record<string, string> = {
    CM_JOB_KEY: options.key,
    CM_JOB_NAME: spec.name,
  };
  const cpus = spec.resources?.cpusPerTask;
  if (cpus !== undefined) env.OMP_NUM_THREADS = String(cpus);
  for (const [name, value] of Object.entries(spec.env ?? {})) {
    if (RESERVED_ENV.test(name)) {
      throw new ValidationError(`spec.env.${name}`, 'is reserved by the process runner (cm, cm_*)');
    }
    env[name] = value;
  }
  lines.push('  CM_JOB_DIR=$cm_dir; export CM_JOB_DIR');
  // Not indented: a quoted value may span lines, and its bytes must stay as given.
  lines.push(shExports(env, 'spec.env'));
  (spec.pre ?? []).forEach((argv, i) => {
    lines.push(
      `  ${shCommand(argv, `spec.pre[${i}]`)} || { cm_rc=$?; cm_fail "$cm_rc" ${shQuote(`pre[${i}] exited with status `)}"$cm_rc"; }`,
    );
  });
  const main =
    spec.argv !== undefined
      ? shCommand(spec.argv, 'spec.argv')
      : `${shQuote(shell, 'shell')} "$cm/script.sh"`;
  const post = spec.post ?? [];
  if (post.length === 0) {
    lines.push(`  exec ${main}`);
  } else {
    lines.push(`  ${main}`, '  cm_rc=$?');
    post.forEach((argv, i) => {
      lines.push(`  ${shCommand(argv, `spec.post[${i}]`)} || :`);
    });
    lines.push('  exit "$cm_rc"');
  }
  lines.push('}');
  return lines;
}

/**
 * Renders the wrapper for one job. Throws ValidationError for input the wrapper cannot carry
 * (reserved environment names); run `validateJobSpec` first for everything else.
 */
export function renderWrapper(options: RenderWrapperOptions): RenderedWrapper {
  const { spec } = options;
  const walltime = spec.resources?.walltimeSeconds;
  const shell = shQuote(options.shell, 'shell');
  const script = [
    '#!/bin/sh',
    `# CrystalMath process-runner wrapper for job ${shQuote(options.key)} (generated, do not edit).`,
    '# Modes: no argument = supervisor; job; watchdog PGID; kill [GRACE].',
    'cm_dir=$(pwd -P) || exit 70',
    `cm=$cm_dir/${INTERNAL_DIR}`,
    `cm_sh=${shell}`,
    `cm_grace=${sleepSeconds(options.killGraceMs)}`,
    `cm_walltime=${walltime === undefined ? '' : String(walltime)}`,
    DETACH_CMD,
    STAT_FN,
    '',
    // Signals group $2. Between fork and setsid() a new leader exists before its group does:
    // retry while the leader is alive, so a signal sent in that window is not lost.
    'cm_signal_group() {',
    '  cm_k=0',
    '  until kill "-$1" "-$2" 2>/dev/null; do',
    '    kill -0 "$2" 2>/dev/null || return 1',
    '    cm_k=$((cm_k + 1))',
    '    [ "$cm_k" -le 100 ] || return 1',
    '    sleep 0.01 2>/dev/null || sleep 1',
    '  done',
    '}',
    '',
    // TERM to the whole group, KILL after the grace period if anything is left.
    'cm_kill_group() {',
    '  cm_signal_group TERM "$1" || return 0',
    '  sleep "$2" 2>/dev/null || sleep 1',
    '  kill -KILL "-$1" 2>/dev/null',
    '  return 0',
    '}',
    '',
    'cm_watchdog() {',
    '  sleep "$cm_walltime"',
    '  kill -0 "-$1" 2>/dev/null || exit 0',
    '  : > "$cm/timeout"',
    '  cm_kill_group "$1" "$cm_grace"',
    '}',
    '',
    // Cancel helper: only signals the group while its leader is still the job we started.
    'cm_cancel() {',
    '  cm_p=; cm_g=; cm_s=',
    '  [ -f "$cm/job" ] && read -r cm_p cm_g cm_s < "$cm/job"',
    '  cm_b=-',
    '  [ -f "$cm/wrapper" ] && read -r cm_x cm_x cm_x cm_b cm_x < "$cm/wrapper"',
    '  cm_alive "$cm_p" "$cm_s" "$cm_b" || exit 0',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
    '  cm_kill_group "$cm_g" "${1:-$cm_grace}"',
    '}',
    '',
    'cm_written=0',
    'cm_finish() {',
    '  [ "$cm_written" = 1 ] && return 0',
    '  cm_written=1',
    `  cm_r=$(printf '%s' "$3" | tr '\\n\\r\\t' '   ')`,
    `  printf 'v1 %s %s %s %s %s\\n' "$1" "$2" "$cm_started" "$(date +%s)" "$cm_r" > "$cm/exit.tmp" &&`,
    '    mv -f "$cm/exit.tmp" "$cm/exit"',
    '}',
    '',
    'cm_on_signal() {',
    '  cm_sig=$1',
    '  if [ -z "$cm_jpid" ]; then',
    '    cm_finish failed - "the wrapper received SIG$1 before the job started"',
    '    exit 0',
    '  fi',
    '  kill -TERM "-$cm_jpid" 2>/dev/null',
    '}',
    '',
    'cm_supervise() {',
    '  cm_started=$(date +%s)',
    '  cm_st_pgid=-; cm_st_start=-',
    '  cm_stat $$',
    `  printf '%s %s %s %s %s\\n' "$$" "$cm_st_pgid" "$cm_st_start" "$cm_boot" "$cm_started" > "$cm/wrapper.tmp" &&`,
    '    mv -f "$cm/wrapper.tmp" "$cm/wrapper"',
    '  cm_sig=; cm_jpid=; cm_wd=',
    `  trap 'cm_finish failed - "the wrapper exited unexpectedly"' EXIT`,
    `  trap 'cm_on_signal TERM' TERM`,
    `  trap 'cm_on_signal INT' INT`,
    `  trap 'cm_on_signal HUP' HUP`,
    '  if [ -f "$cm/cancelled" ]; then cm_finish cancelled - "cancelled before it started"; exit 0; fi',
    '  $cm_detach "$cm_sh" "$cm/wrapper.sh" job </dev/null >>"$cm/stdout" 2>>"$cm/stderr" &',
    '  cm_jpid=$!',
    // The job leads its own group only once setsid ran in it: until then a kill of the group
    // the handle names finds nothing. Wait for it (or for the job's end) before .cm/job.
    '  cm_i=0',
    '  while cm_stat "$cm_jpid" && [ "$cm_st_pgid" != "$cm_jpid" ] && [ "$cm_i" -lt 1000 ]; do',
    '    sleep 0.01 2>/dev/null || sleep 1',
    '    cm_i=$((cm_i + 1))',
    '  done',
    '  cm_st_start=-',
    '  cm_stat "$cm_jpid"',
    `  printf '%s %s %s\\n' "$cm_jpid" "$cm_jpid" "$cm_st_start" > "$cm/job.tmp" && mv -f "$cm/job.tmp" "$cm/job"`,
    // A cancel that came between the check above and .cm/job could not see the group: do it here.
    '  if [ -f "$cm/cancelled" ]; then cm_kill_group "$cm_jpid" 0 & fi',
    '  if [ -n "$cm_walltime" ]; then',
    '    $cm_detach "$cm_sh" "$cm/wrapper.sh" watchdog "$cm_jpid" </dev/null >/dev/null 2>&1 &',
    '    cm_wd=$!',
    '  fi',
    '  while :; do',
    '    wait "$cm_jpid"',
    '    cm_rc=$?',
    // wait returns early when a trapped signal arrives; the job may still run.
    '    kill -0 "$cm_jpid" 2>/dev/null || break',
    '  done',
    '  [ -n "$cm_wd" ] && cm_signal_group TERM "$cm_wd"',
    // The job is over: nothing it left in its process group may outlive it.
    '  kill -KILL "-$cm_jpid" 2>/dev/null',
    '  if [ -f "$cm/cancelled" ]; then cm_finish cancelled "$cm_rc" "cancelled"',
    '  elif [ -f "$cm/timeout" ]; then cm_finish timeout "$cm_rc" "walltime of $cm_walltime s exceeded"',
    '  elif [ -f "$cm/setup" ]; then',
    '    cm_why=; IFS= read -r cm_why < "$cm/setup"',
    '    cm_finish failed "$cm_rc" "setup failed: $cm_why"',
    '  elif [ -n "$cm_sig" ]; then cm_finish failed "$cm_rc" "the wrapper received SIG$cm_sig"',
    '  elif [ "$cm_rc" = 0 ]; then cm_finish succeeded 0 ""',
    // The exit code is the whole story: a reason would only repeat it ("failed (exit 3): exit status 3").
    '  else cm_finish failed "$cm_rc" ""',
    '  fi',
    '  exit 0',
    '}',
    '',
    ...jobBody(options),
    '',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
    'case "${1-}" in',
    '  job) cm_job ;;',
    '  watchdog) cm_watchdog "$2" ;;',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
    '  kill) cm_cancel "${2-}" ;;',
    '  *) cm_supervise ;;',
    'esac',
    '',
  ].join('\n');
  return spec.script === undefined
    ? { wrapper: script }
    : { wrapper: script, userScript: spec.script };
}
