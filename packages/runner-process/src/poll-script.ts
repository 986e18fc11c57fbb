// The poll: one fixed sh program, sent with one `exec`, that reads two lines per job on its
// standard input (the identities to check, then the job directory) and prints one line per job.
// Job directories never appear in the program text, so no quoting is involved and the batch
// size is not limited by the argument length of the target.

import { constants } from 'node:os';
import type { RunnerStatus } from '@crystalmath/core';
import { INTERNAL_DIR, STAT_FN } from './shell-snippets.js';

/** What the poll needs to know about one job. `-` where a value is not known. */
export interface PollTarget {
  readonly jobDir: string;
  readonly wrapperPid: number | undefined;
  readonly wrapperStartTime: number | undefined;
  readonly pid: number | undefined;
  readonly startTime: number | undefined;
  readonly bootId: string | undefined;
  readonly startedAt: number | undefined;
}

const X = INTERNAL_DIR;

/**
 * Per job: the exit record if there is one; otherwise whether the wrapper or the job's leader is
 * still the process we started (same boot id and start time); otherwise look again for the
 * exit record (the wrapper may have written it between the two checks), then report what the
 * dead job left behind: markers and the setup failure reason.
 */
export const POLL_SCRIPT = [
  STAT_FN,
  'cm_exit() {',
  '  cm_e=',
  `  IFS= read -r cm_e < "$cm_x/exit" || [ -n "$cm_e" ]`,
  `  printf '%s exit %s\\n' "$cm_i" "$cm_e"`,
  '}',
  'cm_i=0',
  'while IFS= read -r cm_ids && IFS= read -r cm_d; do',
  '  set -f; set -- $cm_ids; set +f',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
  '  cm_wp=${1:--}; cm_ws=${2:--}; cm_jp=${3:--}; cm_js=${4:--}; cm_b=${5:--}',
  `  cm_x=$cm_d/${X}`,
  '  if [ -f "$cm_x/exit" ]; then cm_exit',
  `  elif [ ! -d "$cm_x" ]; then echo "$cm_i nodir"`,
  '  else',
  '    if [ "$cm_wp" = - ] && [ -f "$cm_x/wrapper" ]; then',
  '      read -r cm_wp cm_y cm_ws cm_b cm_y < "$cm_x/wrapper"',
  '    fi',
  '    if [ "$cm_jp" = - ] && [ -f "$cm_x/job" ]; then',
  '      read -r cm_jp cm_y cm_js < "$cm_x/job"',
  '    fi',
  '    if cm_alive "$cm_wp" "$cm_ws" "$cm_b"; then echo "$cm_i running wrapper"',
  '    elif cm_alive "$cm_jp" "$cm_js" "$cm_b"; then echo "$cm_i running job"',
  '    elif [ -f "$cm_x/exit" ]; then cm_exit',
  '    else',
  '      cm_c=0; [ -f "$cm_x/cancelled" ] && cm_c=1',
  '      cm_t=0; [ -f "$cm_x/timeout" ] && cm_t=1',
  '      cm_l=0; [ -e "$cm_x/launched" ] && cm_l=1',
  '      cm_w=0; [ -f "$cm_x/wrapper" ] && cm_w=1',
  '      cm_s=; [ -f "$cm_x/setup" ] && IFS= read -r cm_s < "$cm_x/setup"',
  `      printf '%s dead %s %s %s %s %s\\n' "$cm_i" "$cm_c" "$cm_t" "$cm_l" "$cm_w" "$cm_s"`,
  '    fi',
  '  fi',
  '  cm_i=$((cm_i + 1))',
  'done',
  'echo "@@cm:end $cm_i"',
  '',
].join('\n');

const word = (v: number | string | undefined): string =>
  v === undefined || v === '' ? '-' : String(v);

/** The poll script's standard input for these jobs. */
export function pollInput(targets: readonly PollTarget[]): string {
  let out = '';
  for (const t of targets) {
    out += `${word(t.wrapperPid)} ${word(t.wrapperStartTime)} ${word(t.pid)} ${word(t.startTime)} ${word(t.bootId)}\n`;
    out += `${t.jobDir}\n`;
  }
  return out;
}

const SIGNAL_NAMES = new Map<number, string>(
  Object.entries(constants.signals).map(([name, n]) => [n, name]),
);

/** The status an exit record (`v1 state code started ended reason`) describes. */
export function parseExitRecord(line: string): RunnerStatus | null {
  const m = /^v1 (succeeded|failed|cancelled|timeout) (-|\d+) (\d+|-) (\d+|-) ?(.*)$/.exec(line);
  if (m === null) return null;
  const [, state, code, started, ended, reason] = m;
  const status: { -readonly [K in keyof RunnerStatus]: RunnerStatus[K] } = {
    state: state as RunnerStatus['state'],
    nativeState: 'exited',
  };
  if (code !== undefined && code !== '-') {
    const n = Number(code);
    status.exitCode = n;
    // A shell reports death by signal N as 128+N; a program exiting with such a status on its
    // own is rare, and the reason keeps the raw status either way.
    const sig = n > 128 ? SIGNAL_NAMES.get(n - 128) : undefined;
    if (sig !== undefined && state !== 'succeeded') status.signal = sig;
  }
  if (started !== undefined && started !== '-') status.startedAt = Number(started) * 1000;
  if (ended !== undefined && ended !== '-') status.endedAt = Number(ended) * 1000;
  if (reason !== undefined && reason.trim() !== '') status.reason = reason.trim();
  return status;
}

/** Turns the poll script's output into one status per target, in order. */
export function parsePollOutput(
  stdout: string,
  targets: readonly PollTarget[],
): RunnerStatus[] | null {
  const lines = stdout.split('\n');
  const end = lines.findIndex((l) => l.startsWith('@@cm:end '));
  if (end < 0 || Number(lines[end]?.slice(9)) !== targets.length) return null;
  const out: (RunnerStatus | undefined)[] = new Array(targets.length);
  for (const line of lines.slice(0, end)) {
    const m = /^(\d+) (exit|running|nodir|dead) ?(.*)$/.exec(line);
    if (m === null) continue;
    const i = Number(m[1]);
    const t = targets[i];
    if (t === undefined) continue;
    const rest = m[3] ?? '';
    out[i] = statusOf(m[2] as 'exit' | 'running' | 'nodir' | 'dead', rest, t);
  }
  if (out.some((s) => s === undefined)) return null;
  return out as RunnerStatus[];
}

function statusOf(
  kind: 'exit' | 'running' | 'nodir' | 'dead',
  rest: string,
  t: PollTarget,
): RunnerStatus {
  const started = t.startedAt === undefined ? {} : { startedAt: t.startedAt };
  switch (kind) {
    case 'exit':
      return (
        parseExitRecord(rest) ?? {
          state: 'lost',
          nativeState: 'bad-exit-record',
          reason: `the exit record in ${t.jobDir}/${X}/exit is unreadable`,
        }
      );
    case 'running':
      return {
        state: 'running',
        nativeState: rest === 'job' ? 'running-without-wrapper' : 'running',
        ...started,
        ...(rest === 'job'
          ? { reason: 'the wrapper is gone; the job still runs but its exit status will be lost' }
          : {}),
      };
    case 'nodir':
      return {
        state: 'lost',
        nativeState: 'no-directory',
        reason: `the job directory ${t.jobDir} is gone`,
      };
    case 'dead': {
      const [c, tm, launched, wrapper, ...why] = rest.split(' ');
      const setup = why.join(' ').trim();
      const after = 'the wrapper was gone before it could write the exit record';
      if (c === '1')
        return {
          state: 'cancelled',
          nativeState: 'dead',
          reason: `cancelled; ${after}`,
          ...started,
        };
      if (tm === '1')
        return {
          state: 'timeout',
          nativeState: 'dead',
          reason: `walltime exceeded; ${after}`,
          ...started,
        };
      if (setup !== '')
        return {
          state: 'failed',
          nativeState: 'dead',
          reason: `setup failed: ${setup}; ${after}`,
          ...started,
        };
      if (launched !== '1') {
        return {
          state: 'lost',
          nativeState: 'never-launched',
          reason: 'the submission stopped before the job was started',
        };
      }
      if (wrapper !== '1') {
        return {
          state: 'lost',
          nativeState: 'no-wrapper',
          reason: `the wrapper never started (see ${t.jobDir}/${X}/wrapper.log)`,
        };
      }
      return {
        state: 'lost',
        nativeState: 'dead',
        reason: `the wrapper${t.wrapperPid === undefined ? '' : ` (pid ${t.wrapperPid})`} and the job are gone and left no exit record (killed, host rebooted, or the PID now belongs to another process)`,
        ...started,
      };
    }
  }
}
