// A large output is collected with bounded memory: the runner copies it file to file and the
// artifact store streams it through a hash in small chunks, so the scheduler's resident memory
// grows by far less than the file. CM_QUEUE_BIG_OUTPUT_MB sets the size (default 256; the
// 1 GB figure in docs/artifacts.md is this test with 1024).

import { join } from 'node:path';
import { LocalRunner } from '@crystalmath/runner-process';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { Queue } from '../types.js';
import { envInt } from './child.js';
import { open, STORES, type TestStore, tempDir } from './helpers.js';

const MB = 1024 * 1024;
const SIZE_MB = envInt('CM_QUEUE_BIG_OUTPUT_MB', 256);
/** The bound: less than 100 MB of memory growth whatever the size. */
const GROWTH_LIMIT = 100 * MB;
const DRAIN_TIMEOUT_MS = 120_000;

let store: TestStore;
let dir: ReturnType<typeof tempDir>;
let queue: Queue;

beforeEach(async () => {
  store = await STORES[0]!.make(); // SQLite: the bound is the collector's, not the store's
  dir = tempDir('cm-big-');
  queue = await open(store, {
    targets: { here: { runner: new LocalRunner({ root: join(dir.dir, 'runs') }) } },
    scheduler: { pollIntervalMs: 50 },
    artifacts: { dir: join(dir.dir, 'artifacts') },
  });
});

afterEach(async () => {
  await queue.close();
  await store.cleanup();
  dir.cleanup();
});

it(
  `collects a ${SIZE_MB} MB output with less than 100 MB of memory growth`,
  async () => {
    const job = await queue.enqueue(
      {
        name: 'big',
        argv: ['sh', '-c', `head -c ${SIZE_MB * MB} /dev/urandom > big.bin`],
        outputs: [{ glob: 'big.bin', required: true }],
      },
      { target: 'here' },
    );
    global.gc?.();
    const base = process.memoryUsage().rss;
    let peak = base;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    const t0 = Date.now();
    try {
      await queue.start();
      await queue.drain({ ids: [job.id], timeoutMs: DRAIN_TIMEOUT_MS });
    } finally {
      clearInterval(sampler);
    }
    const done = (await queue.get(job.id))!;
    expect(done.state, done.reason ?? '').toBe('succeeded');
    const [a] = await queue.artifacts(job.id);
    expect(a!.size).toBe(SIZE_MB * MB);
    console.info(
      `[collect-memory] ${SIZE_MB} MB: rss growth ${((peak - base) / MB).toFixed(1)} MB, run + collect ${Date.now() - t0} ms`,
    );
    expect(peak - base).toBeLessThan(GROWTH_LIMIT);
  },
  DRAIN_TIMEOUT_MS + 30_000,
);
