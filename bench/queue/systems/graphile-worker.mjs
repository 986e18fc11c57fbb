// graphile-worker 0.17 (0.18 needs Node 22) on a scratch PostgreSQL database per session. It
// wakes workers with LISTEN/NOTIFY, so no poll interval stands between enqueue and dispatch; it
// deletes a job when it completes and has no dependencies.

export const graphileWorker = {
  id: 'graphile-worker',
  label: 'graphile-worker',
  group: 'postgres',
  features: {
    bulk: true,
    dependencies: 'n/a (no dependencies)',
    keepsFinished: 'n/a (deletes finished jobs)',
    producers: true,
    schedulers: true,
  },
  settings: '',

  async prepare(env) {
    try {
      this.mod = await import('graphile-worker');
    } catch (error) {
      return { skip: `does not load: ${error.message.split('\n')[0]}` };
    }
    if (!env.postgres) return { skip: `no PostgreSQL: ${env.postgresReason}` };
    this.settings = `run() concurrency ${env.cfg.concurrency}, LISTEN/NOTIFY wake-up`;
    return { ok: true };
  },

  async open(env, _session) {
    const { run, makeWorkerUtils, Logger } = this.mod;
    const logger = new Logger(() => (level, message) => {
      if (level === 'error') env.warn(`graphile-worker: ${message}`);
    });
    const connectionString = await env.postgres.create('cm_bench_graphile');
    const utils = await makeWorkerUtils({ connectionString, logger });
    await utils.migrate();
    let runner = null;
    return {
      async enqueue(tag) {
        await utils.addJob('bench', { tag });
      },
      async enqueueBulk(tags) {
        await utils.addJobs(tags.map((tag) => ({ identifier: 'bench', payload: { tag } })));
      },
      async startWorker(log) {
        runner = await run({
          connectionString,
          concurrency: env.cfg.concurrency,
          noHandleSignals: true,
          logger,
          taskList: {
            bench: async (payload) => {
              log.hit(payload.tag);
            },
          },
        });
      },
      async stopWorker() {
        if (!runner) return;
        await runner.stop();
        runner = null;
      },
      async settle() {},
      async close() {
        await utils.release();
      },
    };
  },
};
