// The store fails while the scheduler records what a target's submit did (the handle, a failed
// submit, a release): that is a store outage (`store:down`, the write done again once the store
// answers), never the job's failure, never a second submit, and never the target's fault, even
// when the store's error has a connection errno (ECONNREFUSED) in its causes as PostgreSQL's do.
// The store is real; a wrapper injects the failure (no real fault hits exactly that write).

import { isCrystalMathError } from '@crystalmath/core';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { openQueue } from '../open-queue.js';
import { QueueError } from '../queue-error.js';
import { asStoreFactory, type QueueStore, type StoreFactory } from '../store/store.js';
import type { Queue, QueueStoreFactory, StoreHealth, TargetHealthEvent } from '../types.js';
import { describeStores, FaultRunner, spec, type TestStore } from './helpers.js';

const WAIT_MS = 30_000;

/** Fails the next `n` calls of each named store method with an E_STORE like a lost server. */
class StoreFaults {
  readonly failures = new Map<keyof QueueStore, number>();
  readonly injected: string[] = [];

  wrap(factory: QueueStoreFactory): StoreFactory {
    const inner = asStoreFactory(factory)!;
    return {
      dialect: inner.dialect,
      description: inner.description,
      open: async () => {
        const store = await inner.open();
        return new Proxy(store, {
          get: (target, key, receiver) => {
            const value = Reflect.get(target, key, receiver);
            if (typeof value !== 'function') return value;
            return (...args: unknown[]) => {
              const left = this.failures.get(key as keyof QueueStore) ?? 0;
              if (left > 0) {
                this.failures.set(key as keyof QueueStore, left - 1);
                this.injected.push(String(key));
                const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), {
                  code: 'ECONNREFUSED',
                });
                return Promise.reject(
                  new QueueError('E_STORE', `[fault] store ${String(key)}: ${cause.message}`, {
                    cause,
                  }),
                );
              }
              return value.apply(target, args);
            };
          },
        });
      },
    };
  }
}

describeStores((makeStore) => {
  let store: TestStore;
  let queue: Queue | undefined;
  beforeEach(async () => {
    store = await makeStore();
  });
  afterEach(async () => {
    await queue?.close();
    queue = undefined;
    await store.cleanup();
  });

  async function openWith(faults: StoreFaults, runner: FaultRunner, leaseMs = 60_000) {
    const q = await openQueue({
      store: faults.wrap(store.factory()),
      targets: { hpc: { runner } },
      scheduler: { tickMs: 20, pollIntervalMs: 0, leaseMs },
    });
    const seen: (StoreHealth | TargetHealthEvent)[] = [];
    for (const e of ['store:down', 'store:up', 'target:unreachable'] as const)
      q.on(e, (payload: StoreHealth | TargetHealthEvent) => seen.push(payload));
    queue = q;
    return { q, seen };
  }

  it('a failed write of the handles is retried: the job runs once, no attempt lost', async () => {
    const faults = new StoreFaults();
    const runner = new FaultRunner();
    const { q, seen } = await openWith(faults, runner);
    const job = await q.enqueue(spec('a'), { target: 'hpc' });
    faults.failures.set('recordSubmitted', 3);
    await q.start();
    await q.drain({ ids: [job.id], timeoutMs: WAIT_MS });
    const after = (await q.get(job.id))!;
    expect(after).toMatchObject({ state: 'succeeded', attempt: 1 });
    expect(faults.injected).toEqual(['recordSubmitted', 'recordSubmitted', 'recordSubmitted']);
    expect(runner.calls).toHaveLength(1);
    expect(seen.some((e) => 'state' in e && e.state === 'down')).toBe(true);
    expect(seen.some((e) => 'type' in e && e.type === 'target:unreachable')).toBe(false);
    expect((await q.targets())[0]!.unreachable).toBeNull();
  });

  it('handles whose write outlasts half the lease are kept and recorded once the store answers', async () => {
    const faults = new StoreFaults();
    const runner = new FaultRunner();
    // Half of a 400 ms lease: the in-lane retries give up after 200 ms, long before 40 failures.
    const { q } = await openWith(faults, runner, 400);
    const jobs = await q.enqueueMany(
      [0, 1, 2].map((i) => ({ spec: spec(`j${i}`), target: 'hpc' })),
    );
    faults.failures.set('recordSubmitted', 40);
    await q.start();
    await q.drain({ ids: jobs.map((j) => j.id), timeoutMs: WAIT_MS });
    for (const j of jobs)
      expect((await q.get(j.id))!).toMatchObject({ state: 'succeeded', attempt: 1 });
    // Each job submitted once: adopted with the handle its runner returned, not found again.
    expect(runner.calls).toHaveLength(3);
    expect(new Set(runner.calls).size).toBe(3);
    expect(faults.injected.length).toBe(40);
  });

  it("a failed write of a failed submit is the store's outage: the job fails for its own reason, once", async () => {
    const faults = new StoreFaults();
    const runner = new FaultRunner();
    runner.failSubmitBefore = 1;
    const { q, seen } = await openWith(faults, runner);
    const job = await q.enqueue(spec('refused'), { target: 'hpc' });
    faults.failures.set('recordSubmitFailed', 2);
    await q.start();
    await q.drain({ ids: [job.id], timeoutMs: WAIT_MS });
    const after = (await q.get(job.id))!;
    expect(after.state).toBe('failed');
    expect(after.reason).toBe('submit failed: [fault] submit refused');
    expect(after.attempt).toBe(1);
    expect(faults.injected).toEqual(['recordSubmitFailed', 'recordSubmitFailed']);
    expect(runner.calls).toHaveLength(0); // refused before the runner recorded anything
    // One event per change: down first, up last (rounds between the failed writes succeed).
    const changes = seen.filter((e) => 'state' in e).map((e) => (e as StoreHealth).state);
    expect(changes[0]).toBe('down');
    expect(changes.at(-1)).toBe('up');
    expect(changes.every((c, i) => i === 0 || c !== changes[i - 1])).toBe(true);
    expect(seen.some((e) => 'type' in e && e.type === 'target:unreachable')).toBe(false);
  });

  it('store errors in a lane are typed E_STORE, not error events', async () => {
    const faults = new StoreFaults();
    const runner = new FaultRunner();
    const { q } = await openWith(faults, runner);
    const errors: unknown[] = [];
    q.on('error', (e) => errors.push(e.error));
    const job = await q.enqueue(spec('b'), { target: 'hpc' });
    faults.failures.set('recordSubmitted', 2);
    await q.start();
    await q.drain({ ids: [job.id], timeoutMs: WAIT_MS });
    expect(errors.filter((e) => isCrystalMathError(e, 'E_STORE'))).toEqual([]);
  });
});
