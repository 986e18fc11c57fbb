// A no-op implementation of core's Runner contract for the bench: `submit` is the moment a job
// is handed to user code (recorded in the DispatchLog) and returns a handle at once; `poll`
// reports every handle `succeeded`, and records when a job's completion is handed back.

/**
 * The bench's Runner. `log` may be swapped between phases (`runner.log = ...`); `null` means
 * "count nothing" (used while filling the table with finished jobs).
 */
export class NoopRunner {
  kind = 'noop';
  capabilities = {
    find: true,
    collect: false,
    cleanup: false,
    tail: false,
    minPollIntervalMs: 0,
  };

  constructor() {
    /** @type {import('../lib/stats.mjs').DispatchLog | null} */
    this.log = null;
    /** Handles by job key, so `find` answers like a real runner after a restart. */
    this.submitted = new Map();
    this.reported = new Set();
    this.submits = 0;
  }

  async submit(job) {
    // The spec name is `b-<tag>`: the tag ties this dispatch to the enqueue that produced it.
    const tag = job.spec.name.slice(2);
    this.submits += 1;
    this.log?.hit(tag);
    const handle = { kind: 'noop', jobKey: job.key, data: { tag } };
    this.submitted.set(job.key, handle);
    return handle;
  }

  async poll(handles) {
    const out = [];
    for (const h of handles) {
      if (!this.reported.has(h.jobKey)) {
        this.reported.add(h.jobKey);
        this.log?.done(String(h.data.tag));
      }
      out.push({ state: 'succeeded', exitCode: 0 });
    }
    return out;
  }

  async cancel() {}

  async find(jobKey) {
    return this.submitted.get(jobKey) ?? null;
  }
}
