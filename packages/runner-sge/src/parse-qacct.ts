// `qacct -j <id>` prints one record per job (or per array task), each after a line of `=`:
//   failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit
//   exit_status  137                  (Killed)
//   maxvmem      173.164MB
//   category     -l h_vmem=150M
// Only the fields the runner needs are kept.

/** One accounting record. */
export interface QacctRecord {
  readonly jobId: string;
  /** The array task id, absent for a plain job (`taskid undefined`). */
  readonly taskId?: string;
  readonly name: string;
  /** Grid Engine's `failed` code: 0 when the job ran to its own end. */
  readonly failed: number;
  /** Its text, e.g. `qmaster enforced h_rt, h_cpu, or h_vmem limit`. */
  readonly failedReason?: string;
  /** The job script's exit status; above 128 it is 128 + the signal that killed it. */
  readonly exitStatus: number;
  /** Peak virtual memory in bytes, where recorded. */
  readonly maxvmemBytes?: number;
  /** Requested h_rt in seconds and h_vmem in bytes, read from `category`. */
  readonly hRtSeconds?: number;
  readonly hVmemBytes?: number;
  readonly wallclockSeconds?: number;
  readonly startedAt?: number;
  readonly endedAt?: number;
}

const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  B: 1,
  K: 1024,
  KB: 1024,
  M: 1024 ** 2,
  MB: 1024 ** 2,
  G: 1024 ** 3,
  GB: 1024 ** 3,
  T: 1024 ** 4,
  TB: 1024 ** 4,
};

/** `173.164MB` → bytes; `100M` → bytes; `k`/`m`/`g` (powers of 1000) as Grid Engine reads them. */
export function parseSgeMemory(text: string): number | undefined {
  const m = /^([0-9]+(?:\.[0-9]+)?)([KMGTkmgt]?B?)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = m[2] ?? '';
  const lower = /^[kmgt]$/.test(unit);
  const factor = lower ? 1000 ** ('kmgt'.indexOf(unit) + 1) : UNITS[unit];
  return factor === undefined ? undefined : Number(m[1]) * factor;
}

/** `3600`, `1:00:00`, `0:0:5` → seconds. */
export function parseSgeTime(text: string): number | undefined {
  const parts = text.trim().split(':');
  if (parts.length > 3 || parts.some((p) => !/^\d+$/.test(p))) return undefined;
  return parts.reduce((acc, p) => acc * 60 + Number(p), 0);
}

function parseDate(text: string | undefined): number | undefined {
  if (text === undefined || text === '-/-') return undefined;
  const t = Date.parse(text);
  return Number.isFinite(t) ? t : undefined;
}

/**
 * The records of `qacct -j` output (several for an array job). Records without a job number
 * are skipped.
 */
export function parseQacct(text: string): QacctRecord[] {
  const out: QacctRecord[] = [];
  for (const chunk of text.split(/^=+\s*$/m)) {
    const fields = new Map<string, string>();
    for (const line of chunk.split('\n')) {
      const m = /^([a-z_]+)\s+(.*?)\s*$/.exec(line);
      if (m?.[1] !== undefined && !fields.has(m[1])) fields.set(m[1], m[2] ?? '');
    }
    const jobId = fields.get('jobnumber');
    if (jobId === undefined || !/^\d+$/.test(jobId)) continue;
    const failedText = fields.get('failed') ?? '0';
    const fm = /^(\d+)\s*(?::\s*(.*))?$/.exec(failedText);
    const rec: { -readonly [K in keyof QacctRecord]: QacctRecord[K] } = {
      jobId,
      name: fields.get('jobname') ?? '',
      failed: fm ? Number(fm[1]) : Number.NaN,
      exitStatus: Number(/^(\d+)/.exec(fields.get('exit_status') ?? '')?.[1] ?? Number.NaN),
    };
    if (fm?.[2]) rec.failedReason = fm[2].trim();
    const task = fields.get('taskid');
    if (task !== undefined && /^\d+$/.test(task)) rec.taskId = task;
    const maxvmem = parseSgeMemory(fields.get('maxvmem') ?? '');
    if (maxvmem !== undefined) rec.maxvmemBytes = maxvmem;
    const wall = /^(\d+(?:\.\d+)?)s?$/.exec(fields.get('ru_wallclock') ?? '');
    if (wall?.[1] !== undefined) rec.wallclockSeconds = Number(wall[1]);
    const category = fields.get('category') ?? '';
    const hrt = /(?:^|[\s,])h_rt=([0-9:]+)/.exec(category)?.[1];
    if (hrt !== undefined) {
      const s = parseSgeTime(hrt);
      if (s !== undefined) rec.hRtSeconds = s;
    }
    const hvmem = /(?:^|[\s,])h_vmem=([0-9.]+[KMGTkmgt]?)/.exec(category)?.[1];
    if (hvmem !== undefined) {
      const b = parseSgeMemory(hvmem);
      if (b !== undefined) rec.hVmemBytes = b;
    }
    const started = parseDate(fields.get('start_time'));
    if (started !== undefined) rec.startedAt = started;
    const ended = parseDate(fields.get('end_time'));
    if (ended !== undefined) rec.endedAt = ended;
    out.push(rec);
  }
  return out;
}
