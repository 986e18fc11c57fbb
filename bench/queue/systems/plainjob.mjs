// plainjob (SQLite through better-sqlite3): a temp file per session. Its worker takes one job at
// a time and polls when idle; the poll interval is the bench's `--pollMs`.

import { join } from 'node:path';
import Database from 'better-sqlite3';

const TYPE = 'bench';
const silent = { error() {}, warn() {}, info() {}, debug() {} };

export const plainjob = {
  id: 'plainjob',
  label: 'plainjob',
  group: 'sqlite',
  features: {
    bulk: true,
    dependencies: 'n/a (no dependencies)',
    keepsFinished: true,
    producers: true,
    schedulers: 'n/a (PostgreSQL-class figure)',
  },
  settings: '',

  async prepare(env) {
    try {
      this.mod = await import('plainjob');
    } catch (error) {
      return { skip: `does not load: ${error.message.split('\n')[0]}` };
    }
    this.settings = `one worker (one job at a time: no concurrency option), pollIntervall ${env.cfg.pollMs} ms`;
    return { ok: true };
  },

  async open(env, session) {
    const { better, defineQueue, defineWorker, JobStatus } = this.mod;
    const db = new Database(join(env.tmpDir, `plainjob-${session}.db`));
    const queue = defineQueue({ connection: better(db), logger: silent });
    let worker = null;
    let running = null;
    return {
      async enqueue(tag) {
        queue.add(TYPE, { tag });
      },
      async enqueueBulk(tags) {
        queue.addMany(
          TYPE,
          tags.map((tag) => ({ tag })),
        );
      },
      async startWorker(log) {
        let handled = 0;
        worker = defineWorker(
          TYPE,
          async (job) => {
            log.hit(JSON.parse(job.data).tag);
            // plainjob's worker loop only yields to microtasks while jobs remain, so a long
            // backlog (or one the producers keep filling) would starve the event loop: the
            // bench's timeouts, IPC and watchdog heartbeat. A macrotask every 64 jobs.
            if (++handled % 64 === 0) await new Promise((r) => setImmediate(r));
          },
          { queue, pollIntervall: env.cfg.pollMs, logger: silent },
        );
        running = worker.start();
      },
      async stopWorker() {
        if (!worker) return;
        await worker.stop();
        await running;
        worker = null;
      },
      async settle() {},
      async fillFinished(n, batch) {
        for (let i = 0; i < n; i += batch) {
          const count = Math.min(batch, n - i);
          queue.addMany(
            TYPE,
            Array.from({ length: count }, (_, j) => ({ tag: `f${i + j}` })),
          );
          await new Promise((r) => setImmediate(r));
        }
        // The worker's own claim and completion calls, without a worker loop around them. They
        // are synchronous: yield now and then so the bench's timers (and watchdog) keep running.
        for (let k = 1; ; k++) {
          const claimed = queue.getAndMarkJobAsProcessing(TYPE);
          if (!claimed) break;
          queue.markJobAsDone(claimed.id);
          if (k % batch === 0) await new Promise((r) => setImmediate(r));
        }
        return queue.countJobs({ type: TYPE, status: JobStatus.Done });
      },
      async close() {
        queue.close();
      },
    };
  },
};
