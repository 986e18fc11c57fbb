// liteque (SQLite through better-sqlite3 and drizzle): a temp file per session. It has no bulk
// enqueue and no dependencies, and deletes a job when it completes.

import { join } from 'node:path';

export const liteque = {
  id: 'liteque',
  label: 'liteque',
  group: 'sqlite',
  features: {
    bulk: 'n/a (no bulk enqueue API)',
    dependencies: 'n/a (no dependencies)',
    keepsFinished: 'n/a (deletes finished jobs)',
    producers: true,
    schedulers: 'n/a (PostgreSQL-class figure)',
  },
  settings: '',

  async prepare(env) {
    try {
      this.mod = await import('liteque');
    } catch (error) {
      return { skip: `does not load: ${error.message.split('\n')[0]}` };
    }
    const probe = await this.probe(env);
    if (probe) return { skip: probe };
    this.settings = `Runner concurrency ${env.cfg.concurrency}, pollIntervalMs ${env.cfg.pollMs}`;
    return { ok: true };
  },

  /**
   * Enqueues and dequeues one job on a scratch file: liteque 0.8 dequeues inside an async
   * drizzle transaction, which better-sqlite3 12 refuses. Returns a reason, or null if it works.
   */
  async probe(env) {
    const { buildDBClient, SqliteQueue } = this.mod;
    const db = buildDBClient(join(env.tmpDir, 'liteque-probe.db'), { runMigrations: true });
    try {
      const queue = new SqliteQueue('probe', db, {
        defaultJobArgs: { numRetries: 0 },
        keepFailedJobs: false,
      });
      await queue.enqueue({ tag: 'probe' });
      const job = await queue.attemptDequeue({ timeoutSecs: 5 });
      return job ? null : 'its dequeue returned no job for an enqueued one';
    } catch (error) {
      return `its worker cannot take a job here: dequeue throws "${error.message}" (liteque runs an async drizzle transaction, which better-sqlite3 ${env.betterSqliteVersion} rejects)`;
    } finally {
      db.$client?.close();
    }
  },

  async open(env, session) {
    const { buildDBClient, SqliteQueue, Runner } = this.mod;
    const db = buildDBClient(join(env.tmpDir, `liteque-${session}.db`), { runMigrations: true });
    const queue = new SqliteQueue('bench', db, {
      defaultJobArgs: { numRetries: 0 },
      keepFailedJobs: false,
    });
    let runner = null;
    let running = null;
    return {
      async enqueue(tag) {
        await queue.enqueue({ tag });
      },
      enqueueBulk: undefined,
      async startWorker(log) {
        runner = new Runner(
          queue,
          {
            run: async (job) => {
              log.hit(job.data.tag);
            },
          },
          { pollIntervalMs: env.cfg.pollMs, timeoutSecs: 60, concurrency: env.cfg.concurrency },
        );
        running = runner.run();
      },
      async stopWorker() {
        if (!runner) return;
        runner.stop();
        await running;
        runner = null;
      },
      async settle() {},
      async close() {
        db.$client?.close();
      },
    };
  },
};
