// pg-boss 10 (the last major that runs on Node 20; 11+ need Node 22) on a scratch PostgreSQL
// database per session. Its workers poll, at most every 0.5 s; after a full batch the handler
// calls `notifyWorker` so a backlog drains without waiting for the next poll.

const QUEUE = 'bench';

export const pgBoss = {
  id: 'pg-boss',
  label: 'pg-boss',
  group: 'postgres',
  features: {
    bulk: true,
    dependencies: 'n/a (no dependencies)',
    keepsFinished: true,
    producers: true,
    schedulers: true,
  },
  settings: '',

  async prepare(env) {
    try {
      const mod = await import('pg-boss');
      this.PgBoss = mod.default ?? mod.PgBoss;
    } catch (error) {
      return { skip: `does not load: ${error.message.split('\n')[0]}` };
    }
    if (!env.postgres) return { skip: `no PostgreSQL: ${env.postgresReason}` };
    this.settings = `work() batchSize ${env.cfg.concurrency}, pollingIntervalSeconds 0.5 (its minimum), notifyWorker after a full batch`;
    return { ok: true };
  },

  async open(env, _session) {
    const url = await env.postgres.create('cm_bench_pgboss');
    const boss = new this.PgBoss({
      connectionString: url,
      schedule: false,
      supervise: false,
      max: 4,
    });
    boss.on('error', (error) => env.warn(`pg-boss: ${error.message}`));
    await boss.start();
    await boss.createQueue(QUEUE);
    let working = false;
    return {
      async enqueue(tag) {
        await boss.send(QUEUE, { tag });
      },
      async enqueueBulk(tags) {
        await boss.insert(tags.map((tag) => ({ name: QUEUE, data: { tag } })));
      },
      async startWorker(log) {
        const batchSize = env.cfg.concurrency;
        let id = null;
        id = await boss.work(QUEUE, { batchSize, pollingIntervalSeconds: 0.5 }, async (jobs) => {
          for (const job of jobs) log.hit(job.data.tag);
          if (jobs.length === batchSize && id) boss.notifyWorker(id);
        });
        working = true;
      },
      async stopWorker() {
        if (!working) return;
        working = false;
        await boss.offWork(QUEUE);
      },
      async settle() {},
      async fillFinished(n, batch) {
        for (let i = 0; i < n; i += batch) {
          const count = Math.min(batch, n - i);
          await boss.insert(
            Array.from({ length: count }, (_, j) => ({ name: QUEUE, data: { tag: `f${i + j}` } })),
          );
        }
        // Its own fetch and complete calls, without a polling worker around them.
        let done = 0;
        for (;;) {
          const jobs = await boss.fetch(QUEUE, { batchSize: 5 * batch });
          if (!jobs || jobs.length === 0) break;
          await boss.complete(
            QUEUE,
            jobs.map((j) => j.id),
          );
          done += jobs.length;
        }
        return done;
      },
      async close() {
        await boss.stop({ graceful: false, wait: true, close: true, timeout: 2000 });
      },
    };
  },
};
