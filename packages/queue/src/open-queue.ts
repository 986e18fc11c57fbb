// openQueue: the entry point users import first. Resolves targets to runners, opens the store
// (which applies the migrations), registers the targets, and returns the Queue.

import { ValidationError } from '@crystalmath/core';
import { checkSchedulerOptions, resolveTargets } from './attorney.js';
import { QueueImpl } from './queue.js';
import { sqliteStore } from './store/sqlite/sqlite-store.js';
import { asStoreFactory } from './store/store.js';
import type { OpenQueueOptions, Queue } from './types.js';

/**
 * Opens a queue on a store (default: the SQLite file `crystalmath.db` in the working
 * directory). Producers and observers need nothing more; call `start()` to run the scheduler
 * in this process. Bad options throw a ValidationError naming the field and open nothing.
 *
 * @example
 * const queue = await openQueue({
 *   store: sqliteStore({ path: 'jobs.db' }),
 *   targets: { laptop: { runner: new LocalRunner({ root: 'runs' }), maxConcurrent: 2 } },
 * });
 * await queue.enqueue({ name: 'hello', argv: ['echo', 'hi'] }, { target: 'laptop' });
 * await queue.start();
 */
export async function openQueue(options: OpenQueueOptions): Promise<Queue> {
  if (typeof options !== 'object' || options === null)
    throw new ValidationError('options', 'must be an object');
  checkSchedulerOptions(options.scheduler ?? {});
  const targets = resolveTargets(
    options.targets ?? {},
    options.runners,
    options.scheduler?.submitTimeoutMs,
  );
  const factory = asStoreFactory(options.store ?? sqliteStore({ path: 'crystalmath.db' }));
  if (!factory)
    throw new ValidationError('store', 'must come from sqliteStore() or postgresStore()');
  if (options.clock !== undefined && typeof options.clock?.now !== 'function') {
    throw new ValidationError('clock', 'must have a now() method');
  }
  const store = await factory.open();
  try {
    await store.ensureTargets(
      Object.entries(options.targets ?? {}).map(([name, t]) => ({
        name,
        ...(t.maxConcurrent !== undefined ? { maxConcurrent: t.maxConcurrent } : {}),
        ...(t.paused !== undefined ? { paused: t.paused } : {}),
      })),
    );
  } catch (error) {
    await store.close();
    throw error;
  }
  return new QueueImpl({
    store,
    targets,
    logger: options.logger,
    clock: options.clock ?? { now: () => Date.now() },
    scheduler: options.scheduler ?? {},
  });
}
