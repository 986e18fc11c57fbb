// Shell fragments shared by the wrapper and by the one-shot scripts the runner sends (launch,
// poll, cancel, cleanup). They are constants: user strings never reach them except as quoted
// words or as lines on standard input.

import { RUNNER_INTERNAL_DIR } from '@crystalmath/core';

/** The runners' reserved folder in a job directory (defined once in core). */
export const INTERNAL_DIR = RUNNER_INTERNAL_DIR;

/**
 * Sets `$cm_detach`, a command prefix that runs a command in a new session (so in its own
 * process group): `setsid`, or perl's POSIX::setsid where `setsid` is missing. Use it unquoted
 * as the first word of a simple command (`$cm_detach sh x.sh </dev/null >log 2>&1 &`): a simple
 * command in the background is forked once and exec'd, so `$!` is the new session's id and no
 * subshell lingers holding the caller's output (a shell function would do both wrong). Neither
 * setsid nor perl forks when the caller is not a group leader, which a background job of a
 * non-interactive sh never is. Empty when neither exists.
 */
export const DETACH_CMD = [
  'if command -v setsid >/dev/null 2>&1; then cm_detach=setsid',
  "elif command -v perl >/dev/null 2>&1; then cm_detach='perl -MPOSIX -e POSIX::setsid();exec(@ARGV);exit(127) --'",
  'else cm_detach=; fi',
].join('\n');

/**
 * Defines `cm_stat PID`: reads /proc/PID/stat without forking and sets `cm_st_state`,
 * `cm_st_pgid` and `cm_st_start` (field 22, start time in clock ticks since boot). The command
 * name (field 2) may hold spaces and parentheses, so fields are counted after the last `) `.
 */
export const STAT_FN = [
  'cm_stat() {',
  '  case "$1" in ""|-|*[!0-9]*) return 1 ;; esac',
  '  cm_l=',
  '  { IFS= read -r cm_l < "/proc/$1/stat"; } 2>/dev/null',
  '  [ -n "$cm_l" ] || return 1',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
  '  cm_l=${cm_l##*) }',
  '  set -f; set -- $cm_l; set +f',
  '  [ $# -ge 20 ] || return 1',
  '  cm_st_state=$1; cm_st_pgid=$3; shift 19; cm_st_start=$1',
  '}',
  // alive PID START BOOT: the process exists, is not a zombie, and is the same process
  // (same boot, same start time), so a reused PID never passes for the job.
  'cm_alive() {',
  '  [ "$3" = "$cm_boot" ] || return 1',
  '  cm_stat "$1" || return 1',
  '  case "$cm_st_state" in Z|X|x) return 1 ;; esac',
  '  [ "$cm_st_start" = "$2" ]',
  '}',
  'cm_boot=-',
  '[ -r /proc/sys/kernel/random/boot_id ] && IFS= read -r cm_boot < /proc/sys/kernel/random/boot_id',
].join('\n');
