// Parser for `sacct -P` / `sacct -c -P` output with the fields the runner asks for:
// `JobID|State|ExitCode`, optionally followed by more columns. Step lines (`123.batch`) are
// dropped: the allocation line carries the job's result.

import { parseSlurmJobRef, type SlurmJobRef } from './parse-slurm-job-id.js';
import { clip, SlurmParseError } from './slurm-errors.js';

/** The sacct fields the parser reads, in order. */
export const SACCT_FIELDS = 'JobID,State,ExitCode';

/** One job line of sacct output. */
export interface SacctEntry extends SlurmJobRef {
  /** Native state; `CANCELLED by 1000` is kept as printed. */
  readonly state: string;
  /** Exit code of the batch script (`3` of `3:0`). */
  readonly exitCode?: number;
  /** Signal number that ended it (`9` of `0:9`), when non-zero. */
  readonly signal?: number;
}

/** Parses SLURM's `code:signal` exit code notation. */
export function parseExitCodePair(text: string): { exitCode?: number; signal?: number } {
  const m = /^(\d+):(\d+)$/.exec(text.trim());
  if (!m) return {};
  const signal = Number(m[2]);
  return signal === 0 ? { exitCode: Number(m[1]) } : { exitCode: Number(m[1]), signal };
}

/**
 * Parses `sacct -P --noheader -o JobID,State,ExitCode` output (also `sacct -c`).
 *
 * @example parseSacct('3|FAILED|3:0\n3.batch|FAILED|3:0\n') // => [{ raw: '3', baseId: '3', state: 'FAILED', exitCode: 3 }]
 */
export function parseSacct(text: string): SacctEntry[] {
  const out: SacctEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const [id = '', state = '', exit = ''] = line.split('|');
    const ref = parseSlurmJobRef(id);
    if (ref === null || !/^[A-Z_]+\+?( by \d+)?$/.test(state.trim())) {
      throw new SlurmParseError(`unexpected sacct line: ${clip(line, 200)}`, {
        details: { line: clip(line, 200) },
      });
    }
    if (ref.step !== undefined) continue;
    out.push({ ...ref, state: state.trim(), ...parseExitCodePair(exit) });
  }
  return out;
}
