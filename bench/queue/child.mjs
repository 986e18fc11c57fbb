// One helper process of the multi-process figures, forked by lib/processes.mjs: it opens a
// session of one system on the SAME store as the parent's session (same SQLite file, same
// PostgreSQL database, same Redis key prefix), then, on the parent's word, either enqueues as a
// producer or runs the system's worker and streams every dispatch back over IPC.
//
// Messages in:  { type: 'open', id, session, cfg, tmpDir, pgUrl, redisPort, runId }
//               { type: 'produce', prefix, batch }   enqueue until 'stop'
//               { type: 'work' }                     start the worker
//               { type: 'idle' }                     stop the worker (replies 'idle')
//               { type: 'stop' }                     stop everything, close, exit
// Messages out: { type: 'ready' } | { type: 'idle' } | { type: 'error', message }
//               { type: 'hits', hits: [tag, epochMs, ...] }
//               { type: 'produced', n, ms }

import { SYSTEMS } from './systems/index.mjs';

/** Epoch milliseconds with sub-millisecond resolution, comparable across processes. */
const epoch = () => performance.timeOrigin + performance.now();

let session = null;
let producing = false;
let producer = null;
let buffer = [];
let flushTimer = null;

function send(message) {
  if (process.connected) process.send(message);
}

function flush() {
  clearTimeout(flushTimer);
  flushTimer = null;
  if (buffer.length === 0) return;
  const hits = buffer;
  buffer = [];
  send({ type: 'hits', hits });
}

// The session's DispatchLog, seen from this process: every dispatch goes to the parent, in
// small batches so IPC does not cost a message per job.
const remoteLog = {
  hit(tag) {
    buffer.push(tag ?? null, epoch());
    if (buffer.length >= 400) flush();
    else flushTimer ??= setTimeout(flush, 5);
  },
  done() {},
};

async function open(m) {
  const system = SYSTEMS.find((s) => s.id === m.id);
  if (!system) throw new Error(`[bench child] unknown system ${m.id}`);
  const env = {
    cfg: m.cfg,
    tmpDir: m.tmpDir,
    runId: m.runId,
    warn: (msg) => send({ type: 'warn', message: msg }),
    progress: () => {},
    redis: async () => ({ port: m.redisPort }),
    // The parent created the database; this process joins it.
    postgres: m.pgUrl ? { create: async () => m.pgUrl } : null,
    postgresReason: 'not given to the child',
    betterSqliteVersion: '',
  };
  const prepared = await system.prepare(env);
  if (prepared.skip) throw new Error(`[bench child] ${system.id}: ${prepared.skip}`);
  session = await system.open(env, m.session);
}

async function produce(prefix, batch) {
  producing = true;
  let n = 0;
  const t0 = epoch();
  while (producing) {
    if (batch > 1 && session.enqueueBulk) {
      const tags = [];
      for (let i = 0; i < batch; i++) tags.push(`${prefix}${n + i}`);
      await session.enqueueBulk(tags);
      n += batch;
    } else {
      await session.enqueue(`${prefix}${n}`);
      n += 1;
    }
    // A synchronous client (plainjob) would otherwise never let this process read 'stop'.
    await new Promise((r) => setImmediate(r));
  }
  return { n, ms: epoch() - t0 };
}

process.on('message', (m) => {
  const reply = (p) =>
    p.catch((error) => send({ type: 'error', message: String(error?.message ?? error) }));
  if (m.type === 'open') reply(open(m).then(() => send({ type: 'ready' })));
  else if (m.type === 'produce') {
    producer = produce(m.prefix, m.batch);
    reply(producer.then((r) => send({ type: 'produced', ...r })));
  } else if (m.type === 'work') reply(session.startWorker(remoteLog));
  else if (m.type === 'idle') {
    reply(
      session.stopWorker().then(() => {
        flush();
        send({ type: 'idle' });
      }),
    );
  } else if (m.type === 'stop') {
    producing = false;
    reply(
      (async () => {
        await producer?.catch(() => {});
        await session?.stopWorker();
        flush();
        await session?.close();
      })().finally(() => process.exit(0)),
    );
  }
});
process.on('disconnect', () => process.exit(0));
