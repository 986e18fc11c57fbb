// The measurements, written once and run against every system through the same session
// interface, so every figure is taken with the same job counts and at the same moment: the job
// handed to user code (a worker's handler, or the no-op Runner's `submit`).

import { forkChildren, stopChildren } from './processes.mjs';
import { DispatchLog, fromEpoch, now, percentile, rate, sleep, withTimeout } from './stats.mjs';

/**
 * @typedef {object} Session One fresh store of one system.
 * @property {(tag: string) => Promise<void>} enqueue One job, awaited.
 * @property {((tags: string[]) => Promise<void>) | undefined} enqueueBulk One bulk call.
 * @property {((tag: string) => Promise<void>) | undefined} [enqueueDependent] A prerequisite
 *   `tag` and a dependent `${tag}c` that may start only after it.
 * @property {(log: DispatchLog) => Promise<void>} startWorker Start consuming.
 * @property {() => Promise<void>} stopWorker
 * @property {(timeoutMs: number) => Promise<void>} settle Wait until dispatched jobs are finished.
 * @property {((n: number, batch: number) => Promise<number>) | undefined} [fillFinished] Make
 *   `n` finished jobs through the system's own calls; returns how many are finished.
 * @property {() => Promise<void>} close
 */

const figure = (value, unit, extra = {}) => ({ value, unit, ...extra });
const na = (reason) => ({ na: reason });
const failed = (error) => ({ error: error.message.split('\n')[0].slice(0, 160) });

/**
 * Runs `round(deadline)` (which returns how many jobs it enqueued) `cfg.enqueueRounds` times,
 * each bounded by `cfg.enqueueMaxMs`, and reports the median rate with every round's rate.
 */
async function rounds(cfg, round) {
  const rates = [];
  let jobs = 0;
  for (let i = 0; i < cfg.enqueueRounds; i++) {
    const t0 = now();
    const n = await round(t0 + cfg.enqueueMaxMs);
    rates.push(rate(n, now() - t0));
    jobs += n;
  }
  const sorted = [...rates].sort((a, b) => a - b);
  return figure(sorted[Math.floor(sorted.length / 2)], 'jobs/s', { jobs, rounds: rates });
}

function tags(prefix, from, to) {
  const out = [];
  for (let i = from; i < to; i++) out.push(`${prefix}${i}`);
  return out;
}

async function enqueueAll(session, prefix, n, batch) {
  if (session.enqueueBulk) {
    for (let i = 0; i < n; i += batch) {
      await session.enqueueBulk(tags(prefix, i, Math.min(n, i + batch)));
    }
  } else {
    for (let i = 0; i < n; i++) await session.enqueue(`${prefix}${i}`);
  }
}

/** Backlog of `n` jobs, then start the worker and time until the n-th dispatch. */
async function timedDispatch(session, prefix, cfg) {
  const n = cfg.dispatch;
  await enqueueAll(session, prefix, n, cfg.batch);
  const log = new DispatchLog();
  const started = now();
  await session.startWorker(log);
  const last = await withTimeout(log.waitForCount(n), cfg.phaseTimeoutMs, `dispatch of ${n}`);
  return { rate: rate(n, last - started), log };
}

/**
 * Opens session `name` of `system`, runs `fn(session, remote)` and closes it. `remote` says how
 * another process joins the same store (`pgUrl`: the scratch database the session created).
 */
async function withSession(system, env, name, fn) {
  const remote = { pgUrl: null };
  const sessionEnv = env.postgres
    ? {
        ...env,
        postgres: {
          ...env.postgres,
          create: async (prefix) => {
            remote.pgUrl = await env.postgres.create(prefix);
            return remote.pgUrl;
          },
        },
      }
    : env;
  const session = await withTimeout(system.open(sessionEnv, name), 60_000, `${system.label} open`);
  try {
    return await fn(session, remote);
  } finally {
    await withTimeout(session.stopWorker(), 15_000, `${system.label} stop`).catch((e) =>
      env.warn(e.message),
    );
    await withTimeout(session.close(), 15_000, `${system.label} close`).catch((e) =>
      env.warn(e.message),
    );
  }
}

const METRIC_KEYS = [
  'single',
  'bulk',
  'dispatch',
  'latencyP50',
  'latencyP99',
  'dependencyP50',
  'dependencyP99',
  'dispatchFinished',
  'dispatchProducers',
  'dispatchSchedulers',
];

/** Enqueue-to-dispatch latency, then dependency release, into a freshly started worker. */
async function latencyAndDependencies(system, s, cfg, f, progress) {
  progress(`enqueue-to-dispatch latency x${cfg.latency}`);
  try {
    const log = new DispatchLog();
    await s.stopWorker();
    await s.startWorker(log);
    await sleep(50);
    const sent = new Map();
    const t0 = now();
    for (let i = 0; i < cfg.latency; i++) {
      const wait = t0 + i * cfg.latencyGapMs - now();
      if (wait > 0) await sleep(wait);
      const tag = `l${i}`;
      sent.set(tag, now());
      await s.enqueue(tag);
    }
    await withTimeout(
      log.waitUntil(() => [...sent.keys()].every((t) => log.times.has(t))),
      cfg.phaseTimeoutMs,
      'latency samples',
    );
    const lat = [...sent].map(([tag, t]) => log.times.get(tag) - t);
    f.latencyP50 = figure(percentile(lat, 50), 'ms');
    f.latencyP99 = figure(percentile(lat, 99), 'ms');
    await s.settle(cfg.phaseTimeoutMs);

    if (system.features.dependencies !== true || !s.enqueueDependent) {
      f.dependencyP50 = na(system.features.dependencies);
      f.dependencyP99 = na(system.features.dependencies);
      return;
    }
    progress(`dependency release x${cfg.dependencies}`);
    const release = [];
    for (let i = 0; i < cfg.dependencies; i++) {
      const tag = `p${i}`;
      await s.enqueueDependent(tag);
      await withTimeout(log.waitForTag(`${tag}c`), 10_000, `dependent of ${tag}`);
      const done = log.doneTimes.get(tag);
      if (done === undefined) throw new Error(`[bench] no completion time for ${tag}`);
      release.push(log.times.get(`${tag}c`) - done);
    }
    f.dependencyP50 = figure(percentile(release, 50), 'ms');
    f.dependencyP99 = figure(percentile(release, 99), 'ms');
    await s.settle(cfg.phaseTimeoutMs);
  } catch (error) {
    f.latencyP50 ??= failed(error);
    f.latencyP99 ??= failed(error);
    f.dependencyP50 ??= failed(error);
    f.dependencyP99 ??= failed(error);
  }
}

/** A DispatchLog that also counts the first dispatch of each tag starting with `prefix`. */
function backlogLog(prefix) {
  const log = new DispatchLog();
  log.backlog = 0;
  const hitAt = log.hitAt.bind(log);
  log.hitAt = (tag, t) => {
    if (tag?.startsWith(prefix) && !log.times.has(tag)) log.backlog += 1;
    hitAt(tag, t);
  };
  return log;
}

/** Warm-up of a fresh session's worker, untimed: the same for every system. */
async function warmWorker(s, cfg) {
  await enqueueAll(s, 'w', cfg.warmup, cfg.batch);
  const warm = new DispatchLog();
  await s.startWorker(warm);
  await withTimeout(warm.waitForCount(cfg.warmup), cfg.phaseTimeoutMs, 'warm-up');
  await s.settle(cfg.phaseTimeoutMs);
  await s.stopWorker();
}

/**
 * Dispatch of a backlog of `dispatch` jobs by this process's worker while `producers` other
 * processes enqueue into the same store as fast as they can (one job per call, awaited, unless
 * `producerBatch` > 1). The figure is every dispatch from the worker's start until the last
 * backlog job was dispatched, per second; `produced` is the producers' enqueue rate meanwhile.
 */
async function dispatchWithProducers(system, env, progress) {
  const { cfg } = env;
  return withSession(system, env, 'producers', async (s, remote) => {
    progress(`warm-up: ${cfg.warmup} jobs through the worker, untimed`);
    await warmWorker(s, cfg);
    await enqueueAll(s, 'd', cfg.dispatch, cfg.batch);
    progress(`starting ${cfg.producers} producer processes`);
    const log = backlogLog('d');
    const children = await forkChildren(system, env, remote, 'producers', cfg.producers, (tag, t) =>
      log.hitAt(tag, fromEpoch(t)),
    );
    try {
      progress(
        `dispatch of a ${cfg.dispatch}-job backlog while ${cfg.producers} processes enqueue`,
      );
      const produced = children.map((c) => c.next('produced'));
      for (const [i, c] of children.entries()) {
        c.send({ type: 'produce', prefix: `p${i}-`, batch: cfg.producerBatch });
      }
      const started = now();
      await s.startWorker(log);
      const last = await withTimeout(
        log.waitUntil(() => log.backlog >= cfg.dispatch),
        cfg.phaseTimeoutMs,
        `dispatch of ${cfg.dispatch} beside producers`,
      );
      const dispatched = log.count;
      for (const c of children) c.send({ type: 'stop' });
      const counts = await withTimeout(Promise.all(produced), 30_000, 'producers stop');
      const jobs = counts.reduce((a, c) => a + c.n, 0);
      const ms = counts.reduce((a, c) => a + c.ms, 0) / counts.length;
      return figure(rate(dispatched, last - started), 'jobs/s', {
        dispatched,
        producers: cfg.producers,
        produced: rate(jobs, ms),
      });
    } finally {
      await s.stopWorker();
      await stopChildren(children);
    }
  });
}

/**
 * Dispatch of a backlog of `dispatch` jobs by `schedulers` worker processes on one store, none
 * in this process: from the moment all are told to start until the last backlog job was
 * dispatched. `duplicates` counts jobs handed to user code more than once.
 */
async function dispatchWithSchedulers(system, env, progress) {
  const { cfg } = env;
  return withSession(system, env, 'schedulers', async (s, remote) => {
    progress(`starting ${cfg.schedulers} worker processes`);
    let log = backlogLog('w');
    const children = await forkChildren(
      system,
      env,
      remote,
      'schedulers',
      cfg.schedulers,
      (tag, t) => log.hitAt(tag, fromEpoch(t)),
    );
    const each = async (type, reply) => {
      const replies = reply ? children.map((c) => c.next(reply)) : [];
      for (const c of children) c.send({ type });
      await withTimeout(Promise.all(replies), cfg.phaseTimeoutMs, `${cfg.schedulers} x ${type}`);
    };
    try {
      progress(`warm-up: ${cfg.warmup} jobs through ${cfg.schedulers} workers, untimed`);
      await enqueueAll(s, 'w', cfg.warmup, cfg.batch);
      await each('work');
      await withTimeout(
        log.waitUntil(() => log.backlog >= cfg.warmup),
        cfg.phaseTimeoutMs,
        'warm-up',
      );
      await each('idle', 'idle');
      await enqueueAll(s, 'd', cfg.dispatch, cfg.batch);
      progress(`dispatch of a ${cfg.dispatch}-job backlog by ${cfg.schedulers} worker processes`);
      log = backlogLog('d');
      const started = now();
      await each('work');
      const last = await withTimeout(
        log.waitUntil(() => log.backlog >= cfg.dispatch),
        cfg.phaseTimeoutMs,
        `dispatch of ${cfg.dispatch} by ${cfg.schedulers} processes`,
      );
      return figure(rate(cfg.dispatch, last - started), 'jobs/s', {
        schedulers: cfg.schedulers,
        duplicates: log.duplicates,
      });
    } finally {
      await stopChildren(children);
    }
  });
}

/**
 * Runs every measurement for one system. Each group of measurements gets a fresh store; one
 * that fails is reported as an error and the others go on.
 */
export async function measureSystem(system, env) {
  const { cfg } = env;
  const f = {};
  const progress = (what) => env.progress(`${system.label}: ${what}`);

  // 1. Enqueue throughput, no worker running.
  try {
    await withSession(system, env, 'enqueue', async (s) => {
      // Untimed warm-up, the same for every system: compiled code paths, prepared statements
      // and connections, so the figures are steady-state rates and not start-up costs.
      progress(
        `warm-up: ${cfg.enqueueWarmup} single and ${cfg.enqueueWarmup} bulk enqueues, untimed`,
      );
      try {
        for (let i = 0; i < cfg.enqueueWarmup; i++) await s.enqueue(`ws${i}`);
        if (s.enqueueBulk) {
          const half = Math.ceil(cfg.enqueueWarmup / 2);
          await s.enqueueBulk(tags('wa', 0, half));
          await s.enqueueBulk(tags('wb', 0, cfg.enqueueWarmup - half));
        }
      } catch (error) {
        f.single = failed(error);
        f.bulk = failed(error);
        return;
      }
      progress(`single enqueue x${cfg.single} (at most ${cfg.enqueueMaxMs} ms)`);
      try {
        // Bounded in time as well as count, so a slow system cannot stretch the run; the median
        // of `enqueueRounds` rounds, so one noisy moment on a shared machine does not decide it.
        let n = 0;
        f.single = await rounds(cfg, async (deadline) => {
          const from = n;
          while (n - from < cfg.single && now() < deadline) await s.enqueue(`s${n++}`);
          return n - from;
        });
      } catch (error) {
        f.single = failed(error);
      }
      if (!s.enqueueBulk) {
        f.bulk = na(system.features.bulk);
        return;
      }
      progress(
        `bulk enqueue x${cfg.bulk} (batches of ${cfg.batch}, at most ${cfg.enqueueMaxMs} ms)`,
      );
      try {
        let n = 0;
        f.bulk = await rounds(cfg, async (deadline) => {
          const from = n;
          while (n - from < cfg.bulk && now() < deadline) {
            const to = Math.min(from + cfg.bulk, n + cfg.batch);
            await s.enqueueBulk(tags('m', n, to));
            n = to;
          }
          return n - from;
        });
      } catch (error) {
        f.bulk = failed(error);
      }
    });
  } catch (error) {
    f.single ??= failed(error);
    f.bulk ??= failed(error);
  }

  if (cfg.figures === 'enqueue') {
    for (const k of METRIC_KEYS) f[k] ??= na('not measured (--figures=enqueue)');
    return f;
  }

  // 2. Dispatch from a backlog; latency and dependency release with the worker idle; then, on
  //    the same store, the same dispatch again beside `finished` finished jobs (same store and
  //    worker set-up before and after, so the slowdown is not a difference between two stores).
  try {
    await withSession(system, env, 'dispatch', async (s) => {
      progress(`warm-up: ${cfg.warmup} jobs through the worker, untimed`);
      try {
        // Every system gets the same warm-up (JIT, prepared statements, scripts loaded), so the
        // timed run compares steady states, not first-call costs.
        await enqueueAll(s, 'w', cfg.warmup, cfg.batch);
        const warm = new DispatchLog();
        await s.startWorker(warm);
        await withTimeout(warm.waitForCount(cfg.warmup), cfg.phaseTimeoutMs, 'warm-up');
        await s.settle(cfg.phaseTimeoutMs);
        await s.stopWorker();
        progress(`dispatch of a ${cfg.dispatch}-job backlog`);
        const { rate: r } = await timedDispatch(s, 'd', cfg);
        f.dispatch = figure(r, 'jobs/s');
        await s.settle(cfg.phaseTimeoutMs);
      } catch (error) {
        f.dispatch = failed(error);
        return;
      }
      await latencyAndDependencies(system, s, cfg, f, progress);
      await s.stopWorker();
      if (system.features.keepsFinished !== true || !s.fillFinished) {
        f.dispatchFinished = na(system.features.keepsFinished);
        return;
      }
      try {
        progress(`filling the store with ${cfg.finished} finished jobs`);
        const t0 = now();
        const finished = await s.fillFinished(cfg.finished, cfg.batch);
        const fillMs = now() - t0;
        if (finished < cfg.finished) {
          throw new Error(
            `[bench] only ${finished} of ${cfg.finished} jobs finished within the ${cfg.fillTimeoutMs / 1000} s fill bound`,
          );
        }
        progress(`dispatch of a ${cfg.dispatch}-job backlog beside ${finished} finished jobs`);
        const { rate: r } = await timedDispatch(s, 'e', cfg);
        const slowdown = 1 - r / f.dispatch.value;
        f.dispatchFinished = figure(r, 'jobs/s', { slowdown, finished, fillMs });
      } catch (error) {
        f.dispatchFinished = failed(error);
      }
    });
  } catch (error) {
    for (const k of METRIC_KEYS) f[k] ??= failed(error);
  }

  // 3. Multi-process figures, each on a fresh store.
  if (system.features.producers === true) {
    try {
      f.dispatchProducers = await dispatchWithProducers(system, env, progress);
    } catch (error) {
      f.dispatchProducers = failed(error);
    }
  } else f.dispatchProducers = na(system.features.producers ?? 'n/a');
  if (system.features.schedulers === true) {
    try {
      f.dispatchSchedulers = await dispatchWithSchedulers(system, env, progress);
    } catch (error) {
      f.dispatchSchedulers = failed(error);
    }
  } else f.dispatchSchedulers = na(system.features.schedulers ?? 'n/a');
  for (const k of METRIC_KEYS) f[k] ??= failed(new Error('[bench] not reached'));
  return f;
}
