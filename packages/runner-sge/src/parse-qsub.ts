// `qsub -terse` answers with the job id alone: `123` for a job, `123.1-10:1` for an array job.
// Anything else (a warning on stdout, two ids) is not a job id: the caller keeps the job
// directory so that `find` can still recover the job.

/**
 * The job id in `qsub -terse` output, or null when the output is not exactly one id.
 *
 * @example parseQsubTerse('4.1-3:1\n') // => '4'
 */
export function parseQsubTerse(stdout: string): string | null {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  if (lines.length !== 1) return null;
  const m = /^\s*([1-9][0-9]{0,11})(?:\.[0-9]+-[0-9]+:[0-9]+)?\s*$/.exec(lines[0] as string);
  return m?.[1] ?? null;
}
