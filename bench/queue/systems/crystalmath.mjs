// @crystalmath/queue under the bench: the SQLite store (a temp file per session) and, when the
// package exports `postgresStore` and the testbed's PostgreSQL answers, the PostgreSQL store
// (a scratch database per session). Jobs reach "user code" through the no-op Runner.

import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { NoopRunner } from './noop-runner.mjs';

const TARGET = 'bench';
const spec = (tag) => ({ name: `b-${tag}`, argv: ['true'] });

// CM_BENCH_QUEUE_MODULE benches another build of the queue (a path or URL to its dist/index.js),
// e.g. to compare two branches on the same machine.
async function loadQueue() {
  const specifier = process.env.CM_BENCH_QUEUE_MODULE
    ? pathToFileURL(resolve(process.env.CM_BENCH_QUEUE_MODULE)).href
    : '@crystalmath/queue';
  try {
    return { mod: await import(specifier) };
  } catch (error) {
    return {
      error: `@crystalmath/queue does not load (build it: pnpm --filter @crystalmath/queue build): ${error.message.split('\n')[0]}`,
    };
  }
}

function makeSystem(dialect) {
  const label =
    dialect === 'sqlite' ? '@crystalmath/queue (sqlite)' : '@crystalmath/queue (postgres)';
  return {
    id: dialect === 'sqlite' ? 'crystalmath-sqlite' : 'crystalmath-postgres',
    label,
    group: dialect,
    ours: true,
    features: {
      bulk: true,
      dependencies: true,
      keepsFinished: true,
      producers: true,
      schedulers: dialect === 'postgres' ? true : 'n/a (PostgreSQL-class figure)',
    },
    settings: '',

    async prepare(env) {
      const { mod, error } = await loadQueue();
      if (error) return { skip: error };
      if (typeof mod.openQueue !== 'function') {
        return { skip: '@crystalmath/queue has no openQueue export yet' };
      }
      if (dialect === 'sqlite' && typeof mod.sqliteStore !== 'function') {
        return { skip: '@crystalmath/queue has no sqliteStore export yet' };
      }
      if (dialect === 'postgres') {
        if (typeof mod.postgresStore !== 'function') {
          return { skip: '@crystalmath/queue does not export postgresStore (yet)' };
        }
        if (!env.postgres) return { skip: `no PostgreSQL: ${env.postgresReason}` };
      }
      this.settings =
        `submitConcurrency ${env.cfg.concurrency}, pollIntervalMs ${env.cfg.pollMs}, ` +
        'target without limit, wakes on enqueue';
      this.mod = mod;
      return { ok: true };
    },

    async open(env, session) {
      const { openQueue, sqliteStore, postgresStore } = this.mod;
      const store =
        dialect === 'sqlite'
          ? sqliteStore({ path: join(env.tmpDir, `crystalmath-${session}.db`) })
          : postgresStore({ connectionString: await env.postgres.create('cm_bench_cm') });
      const runner = new NoopRunner();
      const queue = await openQueue({
        store,
        targets: { [TARGET]: { runner } },
        scheduler: {
          pollIntervalMs: env.cfg.pollMs,
          submitConcurrency: env.cfg.concurrency,
          ownerId: `bench-${process.pid}-${session}`,
        },
      });
      queue.on('error', ({ error, context }) => env.warn(`${label}: ${context}: ${error.message}`));
      let started = false;
      return {
        async enqueue(tag) {
          await queue.enqueue(spec(tag), { target: TARGET });
        },
        async enqueueBulk(tags) {
          await queue.enqueueMany(tags.map((tag) => ({ spec: spec(tag), target: TARGET })));
        },
        async enqueueDependent(tag) {
          await queue.submitWorkflow({
            name: `w-${tag}`,
            target: TARGET,
            jobs: { p: { spec: spec(tag) }, c: { spec: spec(`${tag}c`), dependsOn: ['p'] } },
          });
        },
        async startWorker(log) {
          runner.log = log;
          started = true;
          await queue.start();
        },
        async stopWorker() {
          if (!started) return;
          started = false;
          await queue.stop();
          runner.log = null;
        },
        async settle(timeoutMs) {
          // Lets the scheduler record the no-op jobs' success before the next phase.
          await queue.drain({ timeoutMs });
        },
        async fillFinished(n, batch) {
          runner.log = null;
          for (let i = 0; i < n; i += batch) {
            const tags = [];
            for (let j = i; j < Math.min(n, i + batch); j++) tags.push(`f${j}`);
            await queue.enqueueMany(tags.map((tag) => ({ spec: spec(tag), target: TARGET })));
          }
          await queue.start();
          // A drain that runs out of time is reported by the caller as "only N of M finished".
          await queue.drain({ timeoutMs: env.cfg.fillTimeoutMs }).catch(() => {});
          await queue.stop();
          const counts = await queue.counts();
          return counts.byState.succeeded;
        },
        async close() {
          await queue.close();
        },
      };
    },
  };
}

export const crystalmathSqlite = makeSystem('sqlite');
export const crystalmathPostgres = makeSystem('postgres');
