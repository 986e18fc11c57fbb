// Live schedulers recorded in the store: a second queue on the same store (as another process
// would open it) sees which scheduler serves which target, how that scheduler sees the target's
// health, and nothing once the scheduler stopped cleanly or stopped heartbeating. Time that
// matters (a heartbeat's age) is the injected clock.

import { fork } from 'node:child_process';
import { join } from 'node:path';
import type { RunnerHandle, RunnerJob, RunnerStatus } from '@crystalmath/core';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { HEARTBEAT_LIVE_BEATS } from '../heartbeat.js';
import type { Queue } from '../types.js';
import {
  describeStores,
  NoopRunner,
  open,
  STORES,
  spec,
  type TestStore,
  waitUntil,
} from './helpers.js';

/** Generous wait for real timers on a loaded machine. */
const WAIT_MS = 20_000;

/** A target whose host refuses connections while `down` (the transport's own errno). */
class RefusingRunner extends NoopRunner {
  down = true;
  #refuse(): void {
    if (this.down)
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
  }
  override async submit(job: RunnerJob): Promise<RunnerHandle> {
    this.#refuse();
    return super.submit(job);
  }
  override async find(key: string): Promise<RunnerHandle | null> {
    this.#refuse();
    return super.find(key);
  }
  override async poll(handles: readonly RunnerHandle[]): Promise<RunnerStatus[]> {
    this.#refuse();
    return super.poll(handles);
  }
}

describeStores((makeStore) => {
  let store: TestStore;
  const queues: Queue[] = [];
  beforeEach(async () => {
    store = await makeStore();
  });
  afterEach(async () => {
    for (const q of queues.splice(0)) await q.close();
    await store.cleanup();
  });
  const opened = async (q: Promise<Queue>): Promise<Queue> => {
    const queue = await q;
    queues.push(queue);
    return queue;
  };

  it('lists a started scheduler with its targets in every process, and forgets it on close', async () => {
    const scheduler = await opened(open(store, { targets: { hpc: { runner: new NoopRunner() } } }));
    const observer = await opened(open(store, { targets: {} }));
    expect(await observer.schedulers()).toEqual([]);
    expect((await observer.targets()).find((t) => t.name === 'hpc')?.servedBy).toEqual([]);

    await scheduler.start();
    const [live, ...more] = await observer.schedulers();
    expect(more).toEqual([]);
    expect(live).toMatchObject({
      owner: (scheduler as Queue & { ownerId: string }).ownerId,
      pid: process.pid,
      targets: ['hpc'],
      heartbeatMs: 5_000,
      unreachable: {},
    });
    expect(live!.heartbeatAt).toBeGreaterThanOrEqual(live!.startedAt);
    expect((await observer.targets()).find((t) => t.name === 'hpc')).toMatchObject({
      servedBy: [live!.owner],
      unreachable: null,
    });

    await scheduler.close();
    expect(await observer.schedulers()).toEqual([]);
    expect((await observer.targets()).find((t) => t.name === 'hpc')?.servedBy).toEqual([]);
  });

  it(`counts a scheduler live until its heartbeat is ${HEARTBEAT_LIVE_BEATS} intervals old`, async () => {
    let now = 1_000_000;
    const clock = { now: () => now };
    const heartbeatMs = 600_000; // longer than the test: no beat after the first one
    const scheduler = await opened(
      open(store, {
        clock,
        targets: { hpc: { runner: new NoopRunner() } },
        scheduler: { heartbeatMs },
      }),
    );
    const observer = await opened(open(store, { clock, targets: {} }));
    await scheduler.start();
    expect((await observer.schedulers()).map((s) => s.heartbeatAt)).toEqual([1_000_000]);
    now += HEARTBEAT_LIVE_BEATS * heartbeatMs - 1;
    expect(await observer.schedulers()).toHaveLength(1);
    now += 1; // as a scheduler that died without stopping looks
    expect(await observer.schedulers()).toEqual([]);
    expect((await observer.targets()).find((t) => t.name === 'hpc')?.servedBy).toEqual([]);
  });

  it('records an unreachable target with its last error for every process, and its return', async () => {
    const runner = new RefusingRunner();
    const scheduler = await opened(
      open(store, {
        targets: {
          hpc: { runner, unreachableBackoff: { initialMs: 50, maxMs: 100 } },
        },
      }),
    );
    const observer = await opened(open(store, { targets: {} }));
    const job = await scheduler.enqueue(spec('a'), { target: 'hpc' });
    await scheduler.start();
    const owner = (scheduler as Queue & { ownerId: string }).ownerId;
    const hpc = async () => (await observer.targets()).find((t) => t.name === 'hpc')!;
    await waitUntil(async () => (await hpc()).unreachable != null, WAIT_MS, 'hpc unreachable');
    const seen = (await hpc()).unreachable!;
    expect(seen.lastError).toContain('ECONNREFUSED');
    expect(seen.reportedBy).toBe(owner);
    expect(seen.since).toBeGreaterThan(0);
    expect((await observer.schedulers())[0]!.unreachable.hpc?.lastError).toContain('ECONNREFUSED');
    expect((await observer.get(job.id))!.state).not.toBe('failed');

    runner.down = false;
    await waitUntil(async () => (await hpc()).unreachable === null, WAIT_MS, 'hpc reachable');
    await scheduler.drain({ timeoutMs: WAIT_MS });
    expect((await observer.get(job.id))!.state).toBe('succeeded');
    expect((await observer.schedulers())[0]!.unreachable).toEqual({});
  });

  it('refuses a heartbeat interval that is not a positive integer, naming the field', async () => {
    await expect(open(store, { targets: {}, scheduler: { heartbeatMs: 0 } })).rejects.toThrow(
      /scheduler\.heartbeatMs/,
    );
  });
});

it("the heartbeat waits for another process's SQLite lock on timers, and beats again after it", async () => {
  const LOCK_MS = 2_000;
  const store = await STORES[0]!.make();
  const heartbeatMs = 500; // live for 3 s: longer than the lock, as 30 s is by default
  const scheduler = await open(store, {
    targets: { hpc: { runner: new NoopRunner() } },
    scheduler: { heartbeatMs },
  });
  const observer = await open(store, { targets: {} });
  try {
    await scheduler.start();
    const path = (store.spec as { path: string }).path;
    const locker = fork(join(import.meta.dirname, 'fixtures', 'sqlite-locker.mjs'), [
      path,
      String(LOCK_MS),
    ]);
    const message = (want: string) =>
      new Promise<void>((resolve) => locker.on('message', (m) => m === want && resolve()));
    const released = message('released');
    await message('locked');
    const gaps: number[] = [];
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      gaps.push(now - last);
      last = now;
    }, 10);
    // Readers still read (WAL); the row stops moving while the lock is held.
    const during = (await observer.schedulers())[0]!.heartbeatAt;
    await released;
    clearInterval(ticker);
    await waitUntil(
      async () => (await observer.schedulers())[0]!.heartbeatAt > during,
      WAIT_MS,
      'a heartbeat after the lock',
    );
    // Never blocked for a lock wait: SQLite waits 5 ms at most per try, the rest on timers.
    expect(Math.max(...gaps)).toBeLessThan(500);
  } finally {
    await scheduler.close();
    await observer.close();
    await store.cleanup();
  }
});
