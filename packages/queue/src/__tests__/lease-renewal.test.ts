// A live scheduler renews the leases of its in-flight submits, so a second scheduler never
// recovers a claim whose submit is merely slow. The runner here takes longer than `leaseMs` to
// submit and does NOT refuse a repeated key (the contract's second line of defence is off): a
// recovered live claim would show up as a second submit call. Both schedulers share one
// injected clock, moved far past the lease between rounds; the test waits on the renewal
// statements themselves (onQuery), never on a fixed sleep or a count of ticks.

import type {
  Runner,
  RunnerCapabilities,
  RunnerHandle,
  RunnerJob,
  RunnerStatus,
} from '@crystalmath/core';
import { afterEach, expect, it } from 'vitest';
import type { Queue } from '../types.js';
import { describeStores, open, spec, type TestStore } from './helpers.js';

const LEASE_MS = 90;
/** How long the test waits for one renewal before it fails: generous for a loaded machine. */
const RENEWAL_TIMEOUT_MS = 30_000;

/** Submits block until `release()`; repeated keys are accepted (and counted). */
class SlowRunner implements Runner {
  readonly kind = 'slow';
  readonly capabilities: RunnerCapabilities = {
    find: true,
    collect: false,
    cleanup: false,
    tail: false,
    minPollIntervalMs: 0,
  };
  readonly calls: string[] = [];
  readonly #accepted = new Set<string>();
  #release!: () => void;
  readonly #gate = new Promise<void>((r) => {
    this.#release = r;
  });
  #entered!: () => void;
  /** Resolves when the first submit call is in flight. */
  readonly entered = new Promise<void>((r) => {
    this.#entered = r;
  });
  #repeated!: () => void;
  /** Resolves when a second submit call arrives (the duplicate this test must never see). */
  readonly repeated = new Promise<void>((r) => {
    this.#repeated = r;
  });

  release(): void {
    this.#release();
  }

  async submit(job: RunnerJob): Promise<RunnerHandle> {
    this.calls.push(job.key);
    this.#entered();
    if (this.calls.length > 1) this.#repeated();
    await this.#gate;
    this.#accepted.add(job.key);
    return { kind: this.kind, jobKey: job.key, data: {} };
  }

  async poll(handles: readonly RunnerHandle[]): Promise<RunnerStatus[]> {
    return handles.map(() => ({ state: 'succeeded', exitCode: 0 }));
  }

  async cancel(): Promise<void> {}

  /** Only a submit that returned is known: an in-flight one is not (yet) found. */
  async find(key: string): Promise<RunnerHandle | null> {
    return this.#accepted.has(key) ? { kind: this.kind, jobKey: key, data: {} } : null;
  }
}

/** Counts renewal statements and lets the test wait for the next ones. */
class RenewalWatch {
  #count = 0;
  #waiters: { at: number; resolve: () => void }[] = [];

  readonly onQuery = (sql: string): void => {
    if (!/set lease_until = /.test(sql)) return;
    this.#count++;
    for (const w of this.#waiters.filter((x) => x.at <= this.#count)) w.resolve();
    this.#waiters = this.#waiters.filter((x) => x.at > this.#count);
  };

  /**
   * Resolves once `n` more renewals have started. Renewals run one after the other, so when the
   * second has started the first has completed: the store holds the renewed lease.
   */
  next(n: number): Promise<void> {
    const at = this.#count + n;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no lease renewal within ${RENEWAL_TIMEOUT_MS} ms`)),
        RENEWAL_TIMEOUT_MS,
      );
      this.#waiters.push({
        at,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }
}

describeStores((makeStore) => {
  let store: TestStore | undefined;
  const queues: Queue[] = [];
  let runner: SlowRunner | undefined;
  afterEach(async () => {
    runner?.release(); // a failed run leaves submits waiting in the gate
    for (const q of queues.splice(0)) await q.close();
    await store?.cleanup();
  });

  it('a submit slower than leaseMs is never recovered by a second scheduler while its scheduler lives', async () => {
    store = await makeStore();
    let t = 1_000_000;
    const clock = { now: () => t };
    runner = new SlowRunner();
    const watch = new RenewalWatch();
    const targets = { x: { runner } };
    const slow = runner;
    const a = await open(store, {
      targets,
      clock,
      onQuery: watch.onQuery,
      scheduler: { ownerId: 'a', leaseMs: LEASE_MS },
    });
    const b = await open(store, { targets, clock, scheduler: { ownerId: 'b', leaseMs: LEASE_MS } });
    queues.push(a, b);
    const job = await a.enqueue(spec('slow'), { target: 'x' });

    const aRound = a.tick(); // claims, then waits in the slow submit
    await slow.entered;
    for (let round = 0; round < 5; round++) {
      t += 20 * LEASE_MS; // the claim's first lease is long gone by the clock
      await watch.next(2);
      // A recovery pass each time (the clock moved past its interval). Were the live claim
      // recovered, B would resubmit and wait in the gate too: the race ends the round then.
      await Promise.race([b.tick(), slow.repeated]);
      if (slow.calls.length > 1) break;
    }
    expect(slow.calls).toHaveLength(1);
    expect(slow.calls[0]).toMatch(new RegExp(`-${job.id}-a1$`));
    expect((await b.get(job.id))?.state).toBe('submitting');

    slow.release();
    await aRound; // records the handle, then polls it in the same round
    expect((await a.get(job.id))?.state).toBe('succeeded');
    expect(slow.calls).toHaveLength(1);
  });
});
