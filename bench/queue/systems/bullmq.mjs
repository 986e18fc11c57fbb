// BullMQ against a private loopback redis-server started by the bench. Each session uses its own
// key prefix. Dependencies are BullMQ flows: the dependent is the flow's parent, its
// prerequisite the flow's child.

const QUEUE = 'bench';

export const bullmq = {
  id: 'bullmq',
  label: 'BullMQ (redis)',
  group: 'sqlite',
  features: {
    bulk: true,
    dependencies: true,
    keepsFinished: true,
    producers: true,
    schedulers: 'n/a (PostgreSQL-class figure)',
  },
  settings: '',

  async prepare(env) {
    try {
      this.mod = await import('bullmq');
    } catch (error) {
      return { skip: `does not load: ${error.message.split('\n')[0]}` };
    }
    const redis = await env.redis();
    if (redis.error) return { skip: redis.error };
    this.port = redis.port;
    this.settings = `Worker concurrency ${env.cfg.concurrency}, redis-server on 127.0.0.1:${redis.port} (no persistence)`;
    return { ok: true };
  },

  async open(env, session) {
    const { Queue, Worker, FlowProducer } = this.mod;
    const connection = { host: '127.0.0.1', port: this.port, maxRetriesPerRequest: null };
    const prefix = `bench${env.runId ?? process.pid}s${session}`;
    const queue = new Queue(QUEUE, { connection, prefix });
    const flows = new FlowProducer({ connection, prefix });
    await queue.waitUntilReady();
    let worker = null;
    const startWorker = async (log, concurrency) => {
      worker = new Worker(
        QUEUE,
        async (job) => {
          log?.hit(job.data.tag);
          // Just before the prerequisite's processor returns: its completion is handed back.
          if (job.data.prereq) log?.done(job.data.tag);
        },
        { connection, prefix, concurrency },
      );
      worker.on('error', (error) => env.warn(`BullMQ worker: ${error.message}`));
      await worker.waitUntilReady();
    };
    const stopWorker = async () => {
      if (!worker) return;
      await worker.close();
      worker = null;
    };
    return {
      async enqueue(tag) {
        await queue.add('job', { tag });
      },
      async enqueueBulk(tags) {
        await queue.addBulk(tags.map((tag) => ({ name: 'job', data: { tag } })));
      },
      async enqueueDependent(tag) {
        await flows.add({
          name: 'dependent',
          queueName: QUEUE,
          data: { tag: `${tag}c` },
          children: [{ name: 'prerequisite', queueName: QUEUE, data: { tag, prereq: true } }],
        });
      },
      startWorker: (log) => startWorker(log, env.cfg.concurrency),
      stopWorker,
      async settle(timeoutMs) {
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
          const counts = await queue.getJobCounts('waiting', 'active', 'prioritized');
          if (counts.waiting + counts.active + counts.prioritized === 0) return;
          await new Promise((r) => setTimeout(r, 20));
        }
      },
      async fillFinished(n, batch) {
        const before = await queue.getCompletedCount();
        for (let i = 0; i < n; i += batch) {
          const count = Math.min(batch, n - i);
          await queue.addBulk(
            Array.from({ length: count }, (_, j) => ({ name: 'job', data: { tag: `f${i + j}` } })),
          );
        }
        await startWorker(null, Math.max(env.cfg.concurrency, 200));
        const deadline = Date.now() + env.cfg.fillTimeoutMs;
        let completed = 0;
        while (Date.now() < deadline) {
          completed = await queue.getCompletedCount();
          if (completed >= before + n) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        await stopWorker();
        return completed;
      },
      async close() {
        await stopWorker();
        await flows.close();
        await queue.close();
      },
    };
  },
};
