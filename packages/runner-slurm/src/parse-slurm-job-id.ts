// SLURM job identifiers as the commands print them: `123`, array tasks `123_4`, pending array
// ranges `123_[5-9%2]`, and step ids `123.batch`. Pure functions, shared by every parser.

/** A parsed job identifier. */
export interface SlurmJobRef {
  /** The job id as printed. */
  readonly raw: string;
  /** The job id, or the array's master job id. */
  readonly baseId: string;
  /** The array task index (`4` in `123_4`). */
  readonly taskId?: string;
  /** For a pending array range (`123_[5-9]`): how many tasks it stands for. */
  readonly pendingTasks?: number;
  /** The step name (`batch` in `123.batch`); steps are not jobs. */
  readonly step?: string;
}

const JOB_REF = /^(\d+)(?:_(\d+)|_\[([0-9,:%-]+)\])?(?:\.([A-Za-z0-9_+-]+))?$/;

/** Parses a job identifier, or returns null when it is not one. */
export function parseSlurmJobRef(text: string): SlurmJobRef | null {
  const raw = text.trim();
  const m = JOB_REF.exec(raw);
  if (!m) return null;
  const [, baseId = '', taskId, range, step] = m;
  const ref: { -readonly [K in keyof SlurmJobRef]: SlurmJobRef[K] } = { raw, baseId };
  if (taskId !== undefined) ref.taskId = taskId;
  if (range !== undefined) ref.pendingTasks = countArrayTasks(range) ?? 1;
  if (step !== undefined) ref.step = step;
  return ref;
}

/**
 * Counts the tasks of an array spec (`0-9`, `1,3,5-7`, `0-15:4%2`), or null when it is not
 * one. The `%N` throttle does not change the count.
 *
 * @example countArrayTasks('0-9:2%3') // => 5
 */
export function countArrayTasks(spec: string): number | null {
  const body = spec.split('%')[0] ?? '';
  if (body === '') return null;
  let total = 0;
  for (const part of body.split(',')) {
    const m = /^(\d+)(?:-(\d+)(?::(\d+))?)?$/.exec(part);
    if (!m) return null;
    const start = Number(m[1]);
    const end = m[2] === undefined ? start : Number(m[2]);
    const step = m[3] === undefined ? 1 : Number(m[3]);
    if (end < start || step < 1) return null;
    total += Math.floor((end - start) / step) + 1;
  }
  return total;
}

/** The first index of an array spec (`3` for `3-9,1`... the first written), or null. */
export function firstArrayTask(spec: string): string | null {
  const m = /^(\d+)/.exec(spec);
  return m?.[1] ?? null;
}

/** Parses `sbatch --parsable` output (`1234` or `1234;cluster`) into the job id. */
export function parseSbatchParsable(stdout: string): string | null {
  const lines = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const last = lines.at(-1);
  if (last === undefined) return null;
  const m = /^(\d+)(?:;[A-Za-z0-9_.-]+)?$/.exec(last);
  return m?.[1] ?? null;
}
