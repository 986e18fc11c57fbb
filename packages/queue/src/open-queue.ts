// openQueue: the entry point users import first. Resolves targets to runners, opens the store
// (which applies the migrations), registers the targets, and returns the Queue.

import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ArtifactStore, FileArtifactStore, ValidationError } from '@crystalmath/core';
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
  const artifacts = resolveArtifacts(options.artifacts, factory.artifactsDir);
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
    artifacts,
  });
}

/** The artifact store and staging folder of `options.artifacts` (see `ArtifactsOption`). */
function resolveArtifacts(
  option: OpenQueueOptions['artifacts'],
  defaultDir: string | undefined,
): { store: ArtifactStore; stagingDir: string } | null {
  if (option === false) return null;
  if (option === undefined) {
    if (defaultDir === undefined) return null;
    return {
      store: new FileArtifactStore({ root: defaultDir }),
      stagingDir: join(defaultDir, '.staging'),
    };
  }
  if (typeof option !== 'object' || option === null)
    throw new ValidationError('artifacts', 'must be false, { dir } or { store }');
  if ('dir' in option) {
    if (typeof option.dir !== 'string' || option.dir === '')
      throw new ValidationError('artifacts.dir', 'must be a folder path');
    return {
      store: new FileArtifactStore({ root: option.dir }),
      stagingDir: join(option.dir, '.staging'),
    };
  }
  const s = option.store as Partial<ArtifactStore> | undefined;
  for (const m of ['put', 'get', 'stat', 'list', 'remove'] as const)
    if (typeof s?.[m] !== 'function')
      throw new ValidationError(`artifacts.store.${m}`, 'must be a method (an ArtifactStore)');
  const staging = option.stagingDir ?? join(tmpdir(), 'crystalmath-staging');
  if (typeof staging !== 'string' || staging === '')
    throw new ValidationError('artifacts.stagingDir', 'must be a folder path');
  return { store: option.store, stagingDir: staging };
}
