// Helper processes for the multi-process figures: each one (../child.mjs) opens a session of
// the same system on the same store as the parent's session, then produces or works on the
// parent's word. Every wait has a deadline; every child is killed when the figure ends.

import { fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTimeout } from './stats.mjs';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), '..', 'child.mjs');

/** One forked child: `send`, `next(type)` (the next message of that type) and `kill`. */
class Child {
  constructor(proc, onHits, warn) {
    this.proc = proc;
    this.queues = new Map();
    this.exited = false;
    this.errors = [];
    proc.on('message', (m) => {
      if (m.type === 'hits') onHits(m.hits);
      else if (m.type === 'warn') warn(m.message);
      else if (m.type === 'error') this.errors.push(m.message);
      const waiters = this.queues.get(m.type);
      if (waiters?.length) waiters.shift().resolve(m);
      else if (m.type === 'error') {
        // An error nobody waits for fails whatever the parent waits for next.
        for (const list of this.queues.values()) for (const w of list.splice(0)) w.reject(m);
      }
    });
    // A message to a child that is already going away is dropped, not thrown.
    proc.on('error', () => {});
    proc.once('exit', (code, signal) => {
      this.exited = true;
      const why = { message: `child exited (${signal ?? code})` };
      for (const list of this.queues.values()) for (const w of list.splice(0)) w.reject(why);
    });
  }

  send(message) {
    if (this.exited || !this.proc.connected) return;
    if (message.type === 'stop') this.stopping = true;
    this.proc.send(message);
  }

  /** The next message of `type`, or rejects with the child's error or exit. */
  next(type) {
    if (this.exited) return Promise.reject(new Error('[bench] child already exited'));
    return new Promise((resolve, reject) => {
      const list = this.queues.get(type) ?? [];
      list.push({ resolve, reject: (m) => reject(new Error(`[bench] child: ${m.message}`)) });
      this.queues.set(type, list);
    });
  }

  /** Asks the child to close its session and exit; kills it after `ms`. */
  async stop(ms) {
    if (this.exited) return;
    const gone = new Promise((resolve) => this.proc.once('exit', resolve));
    if (!this.stopping) this.send({ type: 'stop' });
    await withTimeout(gone, ms, 'child stop').catch(() => this.proc.kill('SIGKILL'));
  }
}

/**
 * Forks `count` children that open `sessionName` of `system` on the store the parent's session
 * uses (`remote`: `{ pgUrl }` as recorded when the parent opened it). Dispatches the children
 * see call `onHits(tag, epochMs)`. Resolves once every child has its session open.
 */
export async function forkChildren(system, env, remote, sessionName, count, onHit) {
  const children = [];
  const onHits = (hits) => {
    for (let i = 0; i < hits.length; i += 2) onHit(hits[i] ?? undefined, hits[i + 1]);
  };
  for (let i = 0; i < count; i++) {
    const proc = fork(CHILD, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    env.watchChild?.(proc.pid);
    children.push(new Child(proc, onHits, env.warn));
  }
  try {
    const redis = system.id === 'bullmq' ? await env.redis() : null;
    await withTimeout(
      Promise.all(
        children.map((c) => {
          const ready = c.next('ready');
          c.send({
            type: 'open',
            id: system.id,
            session: sessionName,
            cfg: env.cfg,
            tmpDir: env.tmpDir,
            pgUrl: remote.pgUrl ?? null,
            redisPort: redis?.port ?? null,
            runId: env.runId,
          });
          return ready;
        }),
      ),
      60_000,
      `${system.label}: ${count} child processes open`,
    );
  } catch (error) {
    await stopChildren(children);
    throw error;
  }
  return children;
}

/** Stops every child (each closes its session), killing those that do not exit in time. */
export async function stopChildren(children) {
  await Promise.all(children.map((c) => c.stop(15_000)));
}
