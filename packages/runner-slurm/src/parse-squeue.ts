// Parser for the squeue output the runner asks for: `--noheader -o '%i|%T|%r'`, one job (or a
// pending array range) per line. Pure, so it is tested on recorded output without a cluster.

import { parseSlurmJobRef, type SlurmJobRef } from './parse-slurm-job-id.js';
import { clip, SlurmParseError } from './slurm-errors.js';

/** The squeue format string the parser reads: job id, state, reason. */
export const SQUEUE_FORMAT = '%i|%T|%r';

/** One line of squeue output. */
export interface SqueueEntry extends SlurmJobRef {
  /** Native state, e.g. `PENDING`, `CANCELLED`. */
  readonly state: string;
  /** Pending or end reason, e.g. `Dependency`, `NonZeroExitCode`; `None` becomes undefined. */
  readonly reason?: string;
}

/**
 * Parses squeue `%i|%T|%r` output. Blank lines are skipped; any other unexpected line throws
 * SlurmParseError, since a silently dropped job would later be reported lost.
 *
 * @example parseSqueue('8|PENDING|Resources\n') // => [{ raw: '8', baseId: '8', state: 'PENDING', reason: 'Resources' }]
 */
export function parseSqueue(text: string): SqueueEntry[] {
  const out: SqueueEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const [id = '', state = '', ...rest] = line.split('|');
    const ref = parseSlurmJobRef(id);
    if (ref === null || !/^[A-Z_]+$/.test(state.trim()) || rest.length === 0) {
      throw new SlurmParseError(`unexpected squeue line: ${clip(line, 200)}`, {
        details: { line: clip(line, 200) },
      });
    }
    const reason = rest.join('|').trim();
    out.push(
      reason === '' || reason === 'None' || reason === '(null)'
        ? { ...ref, state: state.trim() }
        : { ...ref, state: state.trim(), reason },
    );
  }
  return out;
}
