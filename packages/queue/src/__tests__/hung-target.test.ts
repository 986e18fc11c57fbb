// One target's runner hangs (submit or poll never settles); the other target's jobs start, run
// and end on time, the hung target's jobs are retried after its deadline, exactly once, and
// close() returns within its bound. Real processes through LocalRunner; the hang is injected
// by a wrapper, the only part a real runner cannot produce on demand. Waits are on events and
// drain(), with generous named timeouts, never on sleeps.

import { join } from 'node:path';
import type { Runner, RunnerCallOptions, RunnerHandle, RunnerJob } from '@crystalmath/core';
import { LocalRunner } from '@crystalmath/runner-process';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { Queue, TargetHealthEvent } from '../types.js';
import { open, STORES, type TestStore, tempDir } from './helpers.js';

/** How long a test waits for jobs to end before failing: generous on a loaded machine. */
const END_TIMEOUT_MS = 60_000;
/** Short enough for a fast test, long enough for a real local submit on a busy machine. */
const SUBMIT_DEADLINE_MS = 3_000;
const POLL_DEADLINE_MS = 400;
const STOP_TIMEOUT_MS = 300;

/** Never settles; when `honour`, rejects once its signal aborts (as the runner guide asks). */
function hang<T>(signal: AbortSignal | undefined, honour: boolean): Promise<T> {
  return new Promise<T>((_, reject) => {
    if (honour) signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** A real runner whose next `hangs[op]` calls of `op` never settle. */
function hanging(
  real: LocalRunner,
  hangs: { submit?: number; poll?: number },
  honour: boolean,
): Runner & { submits: string[] } {
  const submits: string[] = [];
  return Object.assign(Object.create(real) as LocalRunner, {
    submits,
    async submit(job: RunnerJob, o?: RunnerCallOptions): Promise<RunnerHandle> {
      submits.push(job.key);
      if ((hangs.submit ?? 0) > 0) {
        hangs.submit!--;
        return hang(o?.signal, honour);
      }
      return real.submit(job, o);
    },
    // LocalRunner keeps #private state: every other call goes to the real object itself.
    find: (key: string, o?: RunnerCallOptions) => real.find(key, o),
    cancel: (handle: RunnerHandle, o?: RunnerCallOptions) => real.cancel(handle, o),
    async poll(handles: readonly RunnerHandle[], o?: RunnerCallOptions) {
      if ((hangs.poll ?? 0) > 0) {
        hangs.poll!--;
        return hang(o?.signal, honour);
      }
      return real.poll(handles, o);
    },
  });
}

let store: TestStore;
let dir: ReturnType<typeof tempDir>;
let queue: Queue | null = null;

beforeEach(async () => {
  store = await STORES[0]!.make();
  dir = tempDir('cm-hung-');
});

afterEach(async () => {
  await queue?.close();
  queue = null;
  await store.cleanup();
  dir.cleanup();
});

async function openTwo(a: Runner, b: Runner): Promise<Queue> {
  return open(store, {
    targets: {
      a: { runner: a, deadlines: { submitMs: SUBMIT_DEADLINE_MS, pollMs: POLL_DEADLINE_MS } },
      b: { runner: b },
    },
    scheduler: { pollIntervalMs: 20, stopTimeoutMs: STOP_TIMEOUT_MS },
  });
}

it("a submit that never settles on one target holds neither the other target's jobs nor close()", async () => {
  const a = hanging(new LocalRunner({ root: join(dir.dir, 'a') }), { submit: 1 }, true);
  const b = new LocalRunner({ root: join(dir.dir, 'b') });
  queue = await openTwo(a, b);
  const health: TargetHealthEvent[] = [];
  queue.on('target:unreachable', (e) => health.push(e));
  queue.on('target:reachable', (e) => health.push(e));
  const hungJob = await queue.enqueue({ name: 'on-a', script: 'echo a' }, { target: 'a' });
  await queue.start();
  // B's jobs go in while A's first submit hangs
  const t0 = Date.now();
  const bJobs = await queue.enqueueMany(
    [1, 2, 3].map((i) => ({ spec: { name: `b${i}`, script: `echo ${i}` }, target: 'b' })),
  );
  await queue.drain({ ids: bJobs.map((j) => j.id), timeoutMs: END_TIMEOUT_MS });
  const bMs = Date.now() - t0;
  for (const j of bJobs) expect((await queue.get(j.id))!.state).toBe('succeeded');
  // ... and the hung job is retried after its deadline, once, with the same key
  await queue.drain({ ids: [hungJob.id], timeoutMs: END_TIMEOUT_MS });
  const after = (await queue.get(hungJob.id))!;
  expect(after.state).toBe('succeeded');
  expect(after.attempt).toBe(1); // the abandoned call used no attempt
  expect(a.submits).toEqual([keyOf(queue, hungJob.id), keyOf(queue, hungJob.id)]);
  expect(health.map((e) => e.type)).toEqual(['target:unreachable', 'target:reachable']);
  expect(health[0]).toMatchObject({
    target: 'a',
    lastError: expect.stringContaining('E_RUNNER_TIMEOUT'),
  });
  console.log(
    `[hung submit] 3 jobs on target b ended in ${bMs} ms while a's submit hung (deadline ${SUBMIT_DEADLINE_MS} ms)`,
  );
});

it('a poll that never settles, and ignores its signal, does not hold the other target, and close() returns within its bound', async () => {
  const a = hanging(new LocalRunner({ root: join(dir.dir, 'a') }), { poll: 1_000_000 }, false);
  const b = new LocalRunner({ root: join(dir.dir, 'b') });
  queue = await openTwo(a, b);
  const onA = await queue.enqueue({ name: 'on-a', script: 'echo a' }, { target: 'a' });
  await queue.start();
  const t0 = Date.now();
  const onB = await queue.enqueue({ name: 'on-b', script: 'echo b' }, { target: 'b' });
  await queue.drain({ ids: [onB.id], timeoutMs: END_TIMEOUT_MS });
  const bMs = Date.now() - t0;
  expect((await queue.get(onB.id))!.state).toBe('succeeded');
  // a's job was submitted; its polls time out: it stays queued (not failed), a is unreachable
  await waitFor(async () => ((await queue!.get(onA.id))!.state === 'submitting' ? null : true));
  const down = await waitFor(
    async () => (await queue!.targets()).find((t) => t.name === 'a')!.unreachable ?? null,
  );
  expect(down.lastError).toContain('E_RUNNER_TIMEOUT');
  expect(['queued', 'running']).toContain((await queue.get(onA.id))!.state);
  const c0 = Date.now();
  await queue.close();
  const closeMs = Date.now() - c0;
  queue = null;
  // the bound: stopTimeoutMs, plus the store's close and a loaded machine's scheduling
  expect(closeMs).toBeLessThan(STOP_TIMEOUT_MS + 2_000);
  console.log(
    `[hung poll] job on b ended in ${bMs} ms; close() took ${closeMs} ms (bound ${STOP_TIMEOUT_MS} ms + store close)`,
  );
});

it('close() while a submit hangs past any deadline (its signal ignored) returns within stopTimeoutMs; the claim is resolved by the next start', async () => {
  const hungRunner = new LocalRunner({ root: join(dir.dir, 'a') });
  const a = hanging(hungRunner, { submit: 1 }, false);
  queue = await open(store, {
    targets: { a: { runner: a } }, // default deadlines: 300 s for a submit
    scheduler: { pollIntervalMs: 20, stopTimeoutMs: STOP_TIMEOUT_MS, leaseMs: 1_000 },
  });
  const job = await queue.enqueue({ name: 'on-a', script: 'echo a' }, { target: 'a' });
  await queue.start();
  await waitFor(async () => (a.submits.length > 0 ? true : null));
  const c0 = Date.now();
  await queue.close();
  const closeMs = Date.now() - c0;
  expect(closeMs).toBeLessThan(STOP_TIMEOUT_MS + 2_000);
  // a new scheduler finds the claim (its lease ran out), asks find(), submits it once
  queue = await open(store, {
    targets: { a: { runner: a } },
    scheduler: { pollIntervalMs: 20, leaseMs: 1_000 },
  });
  await queue.start();
  await queue.drain({ ids: [job.id], timeoutMs: END_TIMEOUT_MS });
  expect((await queue.get(job.id))!.state).toBe('succeeded');
  expect(a.submits).toEqual([keyOf(queue, job.id), keyOf(queue, job.id)]);
  console.log(`[hung submit, close] close() took ${closeMs} ms (stopTimeoutMs ${STOP_TIMEOUT_MS})`);
});

/** The runner key of a job's first attempt (QueueImpl.jobKey, not on the public interface). */
function keyOf(q: Queue, id: string): string {
  return (q as Queue & { jobKey(id: string, attempt: number): string }).jobKey(id, 1);
}

/** Polls `read` until it gives a value (not null), within END_TIMEOUT_MS. */
async function waitFor<T>(read: () => Promise<T | null>): Promise<T> {
  const until = Date.now() + END_TIMEOUT_MS;
  for (;;) {
    const v = await read();
    if (v !== null) return v;
    if (Date.now() > until) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
