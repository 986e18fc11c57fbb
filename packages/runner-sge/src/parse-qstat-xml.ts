// `qstat -xml` lists the user's jobs: running ones under <queue_info>, pending ones under
// <job_info>, one <job_list> each. An array job appears once per running task (<tasks>3</tasks>)
// and once for its pending tasks (<tasks>2-4:1</tasks>). The format is flat and fixed, so a few
// regular expressions read it; no XML library is needed.

/** One <job_list> entry of `qstat -xml`. */
export interface QstatEntry {
  readonly jobId: string;
  readonly name: string;
  /** Grid Engine's state letters: `qw`, `hqw`, `r`, `t`, `s`, `Eqw`, `dr`, ... */
  readonly state: string;
  /** The task id of a running array task, or the task range of pending ones (`2-4:1`). */
  readonly tasks?: string;
  /** `all.q@host` for running jobs. */
  readonly queue?: string;
  readonly slots?: number;
  /** `JAT_start_time` (running) as epoch ms, read as local time like qstat prints it. */
  readonly startedAt?: number;
}

const ENTITIES: Readonly<Record<string, string>> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
};

function decode(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|apos);/g, (_, e: string) => ENTITIES[e] ?? '');
}

function tag(block: string, name: string): string | undefined {
  const m = new RegExp(`<${name}>([^<]*)</${name}>`).exec(block);
  return m?.[1] === undefined ? undefined : decode(m[1]);
}

/** True when `text` looks like `qstat -xml` output (possibly listing no job). */
export function isQstatXml(text: string): boolean {
  return /<job_info[\s>]/.test(text) && /<\/job_info>\s*$/.test(text.trimEnd());
}

/**
 * The <job_list> entries of `qstat -xml` output.
 *
 * @example parseQstatXml(xml) // => [{ jobId: '3', name: 'job-1-a1', state: 'r', queue: 'all.q@vm', slots: 1, ... }]
 */
export function parseQstatXml(text: string): QstatEntry[] {
  const out: QstatEntry[] = [];
  for (const m of text.matchAll(/<job_list\b[^>]*>([\s\S]*?)<\/job_list>/g)) {
    const block = m[1] ?? '';
    const jobId = tag(block, 'JB_job_number');
    const state = tag(block, 'state');
    if (jobId === undefined || !/^\d+$/.test(jobId) || state === undefined) continue;
    const entry: {
      -readonly [K in keyof QstatEntry]: QstatEntry[K];
    } = { jobId, name: tag(block, 'JB_name') ?? '', state: state.trim() };
    const tasks = tag(block, 'tasks');
    if (tasks !== undefined && tasks !== '') entry.tasks = tasks;
    const queue = tag(block, 'queue_name');
    if (queue !== undefined && queue !== '') entry.queue = queue;
    const slots = Number(tag(block, 'slots'));
    if (Number.isInteger(slots) && slots > 0) entry.slots = slots;
    const start = tag(block, 'JAT_start_time');
    if (start !== undefined) {
      const t = Date.parse(start);
      if (Number.isFinite(t)) entry.startedAt = t;
    }
    out.push(entry);
  }
  return out;
}
