// The error reasons of jobs in Grid Engine's error state (`Eqw`), from plain `qstat -j <ids>`:
//   job_number:                 16
//   error reason          1:      12/07/2026 15:16:45 [1001:30699]: error: can't chdir to /x: No such file or directory

/** Job id → the first error reason `qstat -j` printed for it (the text after the timestamp). */
export function parseQstatJErrors(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let job: string | undefined;
  for (const line of text.split('\n')) {
    const id = /^job_number:\s+(\d+)\s*$/.exec(line);
    if (id) {
      job = id[1];
      continue;
    }
    const err = /^error reason\s+\d+:\s+(.*)$/.exec(line);
    if (err && job !== undefined && !out.has(job)) {
      // Drop the `12/07/2026 15:16:45 [1001:30699]: ` prefix: time and uid:pid of the shepherd.
      out.set(job, (err[1] ?? '').replace(/^\S+ \S+ \[\d+:\d+\]:\s*/, '').trim());
    }
  }
  return out;
}
