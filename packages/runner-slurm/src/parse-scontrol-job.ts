// Parser for `scontrol show job -o` (one job per line of `Key=Value` pairs). The runner does
// not need it to poll; it is here for callers who want a job's full record (ExitCode of a
// running array task, TimeLimit, NodeList) and is tested on recorded output.

/** One job's fields as printed by `scontrol show job -o`. */
export type ScontrolJob = Readonly<Record<string, string>>;

/**
 * Parses `scontrol show job -o` output. Values run to the next ` Key=`; a value may contain
 * `=` (e.g. `TRES=cpu=1,node=1`) or spaces only where scontrol prints them before a key.
 *
 * @example parseScontrolJobs('JobId=1 JobName=wrap JobState=FAILED ExitCode=3:0')[0]?.ExitCode // => '3:0'
 */
export function parseScontrolJobs(text: string): ScontrolJob[] {
  const jobs: ScontrolJob[] = [];
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (!trimmed.startsWith('JobId=')) continue;
    const job: Record<string, string> = {};
    // Keys are words (with `/`, `:` and `.` as in `AllocNode:Sid` or `CPUs/Task`) followed by `=`.
    const key = /(?:^| )([A-Za-z][A-Za-z0-9_/:.]*)=/g;
    const marks: { name: string; start: number; valueStart: number }[] = [];
    for (let m = key.exec(trimmed); m !== null; m = key.exec(trimmed)) {
      marks.push({ name: m[1] as string, start: m.index, valueStart: m.index + m[0].length });
    }
    marks.forEach((mark, i) => {
      const end = marks[i + 1]?.start ?? trimmed.length;
      job[mark.name] = trimmed.slice(mark.valueStart, end).trim();
    });
    jobs.push(job);
  }
  return jobs;
}
