// Opens the queue a configuration describes: its store, and every target with its runner and
// limits. Commands that only read or enqueue open it the same way as `run`, without starting
// the scheduler, so any number of them can work beside a running scheduler.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger, Queue, QueueStoreFactory, TargetOptions } from '@crystalmath/queue';
import * as queueModule from '@crystalmath/queue';
import type { ResolvedConfig, StoreConfig } from './config/load-config.js';
import { type WiredTargets, wireTargets } from './wire-targets.js';

export interface ConfiguredQueue {
  readonly queue: Queue;
  readonly wired: WiredTargets;
  /** Closes the queue (stopping its scheduler if started), then runners and SSH connections. */
  close(): Promise<void>;
}

export interface OpenConfiguredQueueOptions {
  readonly logger?: Logger;
}

/** The store factory for a store configuration. */
export function storeFactory(store: StoreConfig): QueueStoreFactory {
  if (store.kind === 'sqlite') {
    mkdirSync(dirname(store.path), { recursive: true });
    return queueModule.sqliteStore({ path: store.path });
  }
  return queueModule.postgresStore({ connectionString: store.url });
}

/**
 * Opens the store and declares the configured targets.
 *
 * @example
 * const { queue, close } = await openConfiguredQueue(await loadConfig());
 * console.log(await queue.counts());
 * await close();
 */
export async function openConfiguredQueue(
  config: ResolvedConfig,
  options: OpenConfiguredQueueOptions = {},
): Promise<ConfiguredQueue> {
  const store = storeFactory(config.store);
  const wired = await wireTargets(config);
  const targets: Record<string, TargetOptions> = {};
  for (const [name, t] of Object.entries(wired.targets)) {
    targets[name] = {
      runner: t.runner,
      ...(t.config.maxConcurrent !== undefined ? { maxConcurrent: t.config.maxConcurrent } : {}),
      ...(t.config.paused !== undefined ? { paused: t.config.paused } : {}),
    };
  }
  const s = config.scheduler;
  let queue: Queue;
  try {
    queue = await queueModule.openQueue({
      store,
      targets,
      ...(options.logger ? { logger: options.logger } : {}),
      ...(s
        ? {
            scheduler: {
              ...(s.tickMs !== undefined ? { tickMs: s.tickMs } : {}),
              ...(s.pollIntervalMs !== undefined ? { pollIntervalMs: s.pollIntervalMs } : {}),
              ...(s.leaseMs !== undefined ? { leaseMs: s.leaseMs } : {}),
              ...(s.submitConcurrency !== undefined
                ? { submitConcurrency: s.submitConcurrency }
                : {}),
            },
          }
        : {}),
    });
  } catch (err) {
    await wired.close();
    throw err;
  }
  return {
    queue,
    wired,
    async close() {
      try {
        await queue.close();
      } finally {
        await wired.close();
      }
    },
  };
}
