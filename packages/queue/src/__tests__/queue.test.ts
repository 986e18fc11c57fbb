// Behaviour of the queue's producer, control and read APIs and of the scheduler, against every
// registered store, with in-memory runners standing in for targets (faults injected on demand).

import { isCrystalMathError } from '@crystalmath/core';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { Queue, QueueEvent } from '../types.js';
import {
  collect,
  describeStores,
  FaultRunner,
  open,
  spec,
  type TestStore,
  tickUntil,
} from './helpers.js';

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (error) {
    if (isCrystalMathError(error)) return error.code;
    throw error;
  }
  throw new Error('expected a rejection');
}

describeStores((makeStore) => {
  let store: TestStore;
  let runner: FaultRunner;
  let queue: Queue;

  beforeEach(async () => {
    store = await makeStore();
    runner = new FaultRunner();
    queue = await open(store, { targets: { a: { runner }, b: { runner, maxConcurrent: 2 } } });
  });

  afterEach(async () => {
    await queue.close();
    await store.cleanup();
  });

  it('enqueue stores the job as ready and get() returns it', async () => {
    const job = await queue.enqueue(spec('scf'), {
      target: 'a',
      priority: 3,
      tags: ['x'],
      metadata: { n: 1 },
    });
    expect(job).toMatchObject({
      state: 'ready',
      target: 'a',
      priority: 3,
      tags: ['x'],
      metadata: { n: 1 },
      attempt: 0,
    });
    expect(await queue.get(job.id)).toEqual({ ...job });
  });

  it('rejects bad input with a typed error naming the field and writes nothing', async () => {
    expect(await code(queue.enqueue(spec(), { target: 'nope' }))).toBe('E_QUEUE_UNKNOWN_TARGET');
    await expect(
      queue.enqueue({ name: 'bad name!', argv: ['x'] }, { target: 'a' }),
    ).rejects.toMatchObject({ code: 'E_VALIDATION', field: 'spec.name' });
    await expect(queue.enqueue(spec(), { target: 'a', priority: 1.5 })).rejects.toMatchObject({
      field: 'options.priority',
    });
    await expect(queue.enqueue(spec(), { target: 'a', maxAttempts: 0 })).rejects.toMatchObject({
      field: 'options.maxAttempts',
    });
    await expect(queue.enqueue(spec(), { target: 'a', dependsOn: ['abc'] })).rejects.toMatchObject({
      field: 'options.dependsOn[0].job',
    });
    expect(await code(queue.enqueue(spec(), { target: 'a', dependsOn: ['999'] }))).toBe(
      'E_QUEUE_UNKNOWN_DEPENDENCY',
    );
    await expect(queue.get('x')).rejects.toMatchObject({ field: 'id' });
    expect((await queue.counts()).total).toBe(0);
    expect((await queue.list()).jobs).toEqual([]);
  });

  it('enqueueMany is all or nothing', async () => {
    const ok = await queue.enqueue(spec(), { target: 'a' });
    await expect(
      queue.enqueueMany([
        { spec: spec('one'), target: 'a' },
        { spec: spec('two'), target: 'a', dependsOn: [ok.id, '12345'] },
      ]),
    ).rejects.toMatchObject({ code: 'E_QUEUE_UNKNOWN_DEPENDENCY' });
    expect((await queue.counts()).total).toBe(1);
    const jobs = await queue.enqueueMany([
      { spec: spec('one'), target: 'a' },
      { spec: spec('two'), target: 'a', dependsOn: [ok.id] },
    ]);
    expect(jobs.map((j) => j.state)).toEqual(['ready', 'waiting']);
    expect(jobs[1]!.dependsOn).toEqual([{ job: ok.id, condition: 'afterok' }]);
  });

  it('merges a parent named twice and rejects it named twice with different conditions', async () => {
    const p = await queue.enqueue(spec(), { target: 'a' });
    const c = await queue.enqueue(spec(), { target: 'a', dependsOn: [p.id, { job: p.id }] });
    expect(c.dependsOn).toEqual([{ job: p.id, condition: 'afterok' }]);
    await expect(
      queue.enqueue(spec(), {
        target: 'a',
        dependsOn: [p.id, { job: p.id, condition: 'afterany' }],
      }),
    ).rejects.toMatchObject({ code: 'E_VALIDATION', field: 'options.dependsOn[1]' });
  });

  it('keeps binary stage-in contents through the store', async () => {
    runner.hold = true;
    const bytes = new Uint8Array([0, 1, 2, 255]);
    const job = await queue.enqueue(
      { name: 'bin', argv: ['true'], inputs: [{ content: bytes, to: 'in.bin' }] },
      { target: 'a' },
    );
    const stored = (await queue.get(job.id))!;
    const input = stored.spec.inputs![0]!;
    expect('content' in input && input.content).toEqual(bytes);
  });

  it('returns the existing job for a repeated idempotency key with the same definition', async () => {
    const first = await queue.enqueue(
      { name: 'job', argv: ['true'], env: { A: '1', B: '2' } },
      { target: 'a', idempotencyKey: 'k1' },
    );
    // The same spec with its keys in another order is the same definition.
    const again = await queue.enqueue(
      { env: { B: '2', A: '1' }, argv: ['true'], name: 'job' },
      { target: 'a', idempotencyKey: 'k1', priority: 3 },
    );
    expect(again.id).toBe(first.id);
    expect(again.priority).toBe(0);
    expect((await queue.counts()).total).toBe(1);
  });

  it('refuses a repeated idempotency key with another spec or target: E_QUEUE_DUPLICATE, nothing written', async () => {
    const first = await queue.enqueue(spec(), { target: 'a', idempotencyKey: 'k1' });
    const seqBefore = (await collect(queue.events({ follow: false }))).length;
    for (const [s, target, what] of [
      [spec('other'), 'a', 'spec'],
      [spec(), 'b', 'target ("a")'],
    ] as const) {
      const error = await queue.enqueue(s, { target, idempotencyKey: 'k1' }).catch((e) => e);
      expect(error).toMatchObject({
        code: 'E_QUEUE_DUPLICATE',
        details: { field: 'idempotencyKey', job: first.id },
      });
      expect(error.message).toContain(what);
    }
    // In a batch, the whole batch is refused.
    await expect(
      queue.enqueueMany([
        { spec: spec('fresh'), target: 'a' },
        { spec: spec('other'), target: 'a', idempotencyKey: 'k1' },
      ]),
    ).rejects.toMatchObject({ code: 'E_QUEUE_DUPLICATE' });
    expect((await queue.counts()).total).toBe(1);
    expect(await collect(queue.events({ follow: false }))).toHaveLength(seqBefore);
  });

  it('one key twice in one batch: one job for the same definition, E_QUEUE_DUPLICATE for another', async () => {
    const [a, b] = await queue.enqueueMany([
      { spec: spec('x'), target: 'a', idempotencyKey: 'batch' },
      { spec: spec('x'), target: 'a', idempotencyKey: 'batch' },
    ]);
    expect(b!.id).toBe(a!.id);
    expect((await queue.counts()).total).toBe(1);
    await expect(
      queue.enqueueMany([
        { spec: spec('y'), target: 'a', idempotencyKey: 'batch2' },
        { spec: spec('z'), target: 'a', idempotencyKey: 'batch2' },
      ]),
    ).rejects.toMatchObject({ code: 'E_QUEUE_DUPLICATE' });
    expect((await queue.counts()).total).toBe(1);
  });

  it('lists workflows newest first, page by page, with their end time once done', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const w = await queue.submitWorkflow({
        name: `w${i}`,
        target: 'a',
        jobs: { only: { spec: spec(`w${i}`) } },
      });
      ids.push(w.id);
    }
    const first = await queue.workflows({ limit: 2 });
    expect(first.workflows.map((w) => w.name)).toEqual(['w4', 'w3']);
    expect(
      first.workflows.every((w) => w.doneAt === null && w.onFailure === 'skip-dependents'),
    ).toBe(true);
    const second = await queue.workflows({ limit: 2, cursor: first.nextCursor! });
    expect(second.workflows.map((w) => w.id)).toEqual([ids[2], ids[1]]);
    const last = await queue.workflows({ limit: 2, cursor: second.nextCursor! });
    expect(last.workflows.map((w) => w.id)).toEqual([ids[0]]);
    expect(last.nextCursor).toBeNull();
    await tickUntil(queue, async () => (await queue.counts()).byState.succeeded === 5);
    const done = await queue.workflows();
    expect(done.workflows.every((w) => typeof w.doneAt === 'number')).toBe(true);
    await expect(queue.workflows({ cursor: 'nope' })).rejects.toMatchObject({
      code: 'E_VALIDATION',
      field: 'cursor',
    });
    await expect(queue.workflows({ limit: 0 })).rejects.toMatchObject({ field: 'limit' });
  });

  it('events({ tail }) starts with the last events of the log', async () => {
    await queue.enqueueMany(
      Array.from({ length: 10 }, (_, i) => ({ spec: spec(`t${i}`), target: 'a' })),
    );
    const all = await collect(queue.events({ follow: false }));
    const tail = await collect(queue.events({ follow: false, tail: 3 }));
    expect(tail).toEqual(all.slice(-3));
    expect(await collect(queue.events({ follow: false, tail: 0 }))).toEqual([]);
    await expect(collect(queue.events({ tail: -1 }))).rejects.toMatchObject({ field: 'tail' });
    await expect(collect(queue.events({ tail: 2, after: 1 }))).rejects.toMatchObject({
      field: 'tail',
    });
  });

  it('claims by priority, then first in first out', async () => {
    runner.hold = true;
    const low = await queue.enqueue(spec('low'), { target: 'b', priority: 0 });
    const high = await queue.enqueue(spec('high'), { target: 'b', priority: 5 });
    const low2 = await queue.enqueue(spec('low2'), { target: 'b', priority: 0 });
    await queue.tick();
    const key = (id: string) => `-${id}-a1`;
    expect(runner.submitted.map((k) => k.slice(k.indexOf('-', 3)))).toEqual([
      key(high.id),
      key(low.id),
    ]);
    expect((await queue.get(low2.id))!.state).toBe('ready');
  });

  it('never runs more than maxConcurrent jobs of a target and fills freed slots', async () => {
    runner.hold = true;
    let maxLive = 0;
    runner.onSubmit = () => {
      maxLive = Math.max(maxLive, runner.live().length + 1);
    };
    await queue.enqueueMany(
      Array.from({ length: 7 }, (_, i) => ({ spec: spec(`j${i}`), target: 'b' })),
    );
    await queue.tick();
    await queue.tick();
    expect(runner.submitted).toHaveLength(2);
    expect((await queue.targets()).find((t) => t.name === 'b')).toMatchObject({
      active: 2,
      maxConcurrent: 2,
    });
    runner.finish('succeeded', (k) => k === runner.submitted[0]);
    await queue.tick(); // poll frees the slot
    await queue.tick(); // claim fills it
    expect(runner.submitted).toHaveLength(3);
    await queue.setTargetLimit('b', 4);
    await queue.tick();
    expect(runner.live()).toHaveLength(4);
    expect(maxLive).toBe(4);
  });

  it('pause and resume, for the queue and per target', async () => {
    await queue.pause();
    await queue.enqueue(spec(), { target: 'a' });
    await queue.tick();
    expect(runner.submitted).toHaveLength(0);
    await queue.resume();
    await queue.pause('a');
    await queue.tick();
    expect(runner.submitted).toHaveLength(0);
    expect((await queue.targets()).find((t) => t.name === 'a')!.paused).toBe(true);
    await queue.resume('a');
    await queue.tick();
    expect(runner.submitted).toHaveLength(1);
    expect(await code(queue.pause('nope'))).toBe('E_QUEUE_UNKNOWN_TARGET');
  });

  it('rejects workflow cycles and self-dependencies, naming them, and writes nothing', async () => {
    const cycle = queue.submitWorkflow({
      name: 'w',
      target: 'a',
      jobs: {
        a: { spec: spec(), dependsOn: ['c'] },
        b: { spec: spec(), dependsOn: ['a'] },
        c: { spec: spec(), dependsOn: ['b'] },
      },
    });
    await expect(cycle).rejects.toMatchObject({ code: 'E_QUEUE_CYCLE' });
    await expect(cycle).rejects.toThrow(/a -> c -> b -> a|c -> b -> a -> c|b -> a -> c -> b/);
    await expect(
      queue.submitWorkflow({
        name: 'w',
        target: 'a',
        jobs: { a: { spec: spec(), dependsOn: ['a'] } },
      }),
    ).rejects.toMatchObject({
      code: 'E_QUEUE_CYCLE',
      details: { cycle: ['a', 'a'] },
    });
    await expect(
      queue.submitWorkflow({
        name: 'w',
        target: 'a',
        jobs: { a: { spec: spec(), dependsOn: ['zz'] } },
      }),
    ).rejects.toMatchObject({
      code: 'E_QUEUE_UNKNOWN_DEPENDENCY',
      details: { job: 'zz' },
    });
    await expect(
      queue.submitWorkflow({ name: 'w', jobs: { a: { spec: spec() } } }),
    ).rejects.toMatchObject({ code: 'E_QUEUE_UNKNOWN_TARGET' });
    expect((await queue.counts()).total).toBe(0);
  });

  it('runs a workflow in dependency order and honours edge conditions', async () => {
    runner.outcome = (job) => (job.spec.name === 'bad' ? 'failed' : 'succeeded');
    const wf = await queue.submitWorkflow({
      name: 'conditions',
      target: 'a',
      jobs: {
        bad: { spec: spec('bad') },
        ok: { spec: spec('ok') },
        onOk: { spec: spec('onOk'), dependsOn: ['ok'] },
        afterBad: { spec: spec('afterBad'), dependsOn: ['bad'] },
        grandchild: { spec: spec('gc'), dependsOn: ['afterBad'] },
        great: { spec: spec('great'), dependsOn: [{ job: 'grandchild', condition: 'afterany' }] },
        any: { spec: spec('any'), dependsOn: [{ job: 'bad', condition: 'afterany' }] },
        notok: { spec: spec('notok'), dependsOn: [{ job: 'bad', condition: 'afternotok' }] },
        notokOnOk: { spec: spec('notokOnOk'), dependsOn: [{ job: 'ok', condition: 'afternotok' }] },
      },
    });
    expect(wf.counts).toMatchObject({ ready: 2, waiting: 7 });
    await tickUntil(queue, async () => (await queue.workflow(wf.id))!.done);
    const done = (await queue.workflow(wf.id))!;
    const states = Object.fromEntries(Object.entries(done.jobs).map(([k, j]) => [k, j.state]));
    expect(states).toEqual({
      bad: 'failed',
      ok: 'succeeded',
      onOk: 'succeeded',
      afterBad: 'skipped',
      grandchild: 'skipped', // transitively
      great: 'succeeded', // afterany holds after a skip
      any: 'succeeded',
      notok: 'succeeded',
      notokOnOk: 'skipped',
    });
    // The parent is named by its workflow key and id, without a repeated "ended".
    expect(done.jobs.grandchild!.reason).toBe(
      `dependency afterBad (job ${done.jobs.afterBad!.id}) was skipped (afterok)`,
    );
    expect(done.jobs.afterBad!.reason).toBe(
      `dependency bad (job ${done.jobs.bad!.id}) failed (afterok)`,
    );
    const submittedNames = new Set(runner.submitted.map((k) => k));
    expect(submittedNames.size).toBe(6);
  });

  it('releases a dependent in the transaction that ends its parent', async () => {
    const parent = await queue.enqueue(spec('p'), { target: 'a' });
    const child = await queue.enqueue(spec('c'), { target: 'a', dependsOn: [parent.id] });
    await queue.tick(); // submit parent
    const events: QueueEvent[] = [];
    queue.on('job:state', (e) => events.push(e));
    await queue.tick(); // poll: parent succeeds -> child ready in the same commit
    const all = [];
    for await (const e of queue.events({ follow: false })) all.push(e);
    const parentEnd = all.find(
      (e) => e.type === 'job:state' && e.jobId === parent.id && e.to === 'succeeded',
    )!;
    const childReady = all.find(
      (e) => e.type === 'job:state' && e.jobId === child.id && e.to === 'ready',
    )!;
    expect(childReady.seq).toBe(parentEnd.seq + 1);
    expect(childReady.at).toBe(parentEnd.at);
  });

  it('a dependent whose parents end in the same transaction is skipped if any edge fails', async () => {
    runner.hold = true;
    // both orders of ending within the transaction
    const bad0 = await queue.enqueue(spec('bad0'), { target: 'a' });
    const ok = await queue.enqueue(spec('ok'), { target: 'a' });
    const bad = await queue.enqueue(spec('bad'), { target: 'a' });
    const child0 = await queue.enqueue(spec('child0'), {
      target: 'a',
      dependsOn: [bad0.id, ok.id],
    });
    const child = await queue.enqueue(spec('child'), { target: 'a', dependsOn: [ok.id, bad.id] });
    const other = await queue.enqueue(spec('other'), { target: 'a', dependsOn: [bad.id, ok.id] });
    await queue.tick();
    runner.finish('succeeded', (k) => k.includes(`-${ok.id}-`));
    runner.finish('failed', (k) => k.includes(`-${bad.id}-`) || k.includes(`-${bad0.id}-`));
    await queue.tick(); // one poll ends both parents in one transaction
    expect((await queue.get(child0.id))!.state).toBe('skipped');
    expect((await queue.get(child.id))!.state).toBe('skipped');
    expect((await queue.get(other.id))!.state).toBe('skipped');
    expect(runner.calls.some((k) => k.includes(`-${child.id}-`))).toBe(false);
  });

  it('under the continue policy, dependents run whatever their parents did', async () => {
    runner.outcome = () => 'failed';
    const wf = await queue.submitWorkflow({
      name: 'cont',
      target: 'a',
      onFailure: 'continue',
      jobs: { a: { spec: spec() }, b: { spec: spec(), dependsOn: ['a'] } },
    });
    await tickUntil(queue, async () => (await queue.workflow(wf.id))!.done);
    expect((await queue.workflow(wf.id))!.counts.failed).toBe(2);
  });

  it('cancel ends waiting jobs at once and skips their dependents transitively', async () => {
    const a = await queue.enqueue(spec(), { target: 'a', runAt: Date.now() + 60_000 });
    const b = await queue.enqueue(spec(), { target: 'a', dependsOn: [a.id] });
    const c = await queue.enqueue(spec(), { target: 'a', dependsOn: [b.id] });
    const cancelled = await queue.cancel(b.id);
    expect(cancelled.state).toBe('cancelled');
    expect((await queue.get(c.id))!.state).toBe('skipped');
    expect((await queue.get(a.id))!.state).toBe('ready');
    expect(await code(queue.cancel('424242'))).toBe('E_QUEUE_JOB_NOT_FOUND');
    expect((await queue.cancel(b.id)).state).toBe('cancelled'); // idempotent
    expect(await code(queue.cancel(c.id))).toBe('E_QUEUE_INVALID_STATE'); // skipped: already ended
  });

  it('cancel asks the runner to stop a running job', async () => {
    runner.hold = true;
    const job = await queue.enqueue(spec(), { target: 'a' });
    const child = await queue.enqueue(spec(), { target: 'a', dependsOn: [job.id] });
    await queue.tick();
    expect((await queue.get(job.id))!.state).toBe('running');
    const after = await queue.cancel(job.id);
    expect(after.state).toBe('cancelled');
    expect(runner.cancelled).toEqual([after.handle!.jobKey]);
    expect((await queue.get(child.id))!.state).toBe('skipped');
  });

  it('retry puts a failed job back with a fresh budget and re-arms the dependents it skipped', async () => {
    runner.outcome = () => 'failed';
    const p = await queue.enqueue(spec(), { target: 'a' });
    const c = await queue.enqueue(spec(), { target: 'a', dependsOn: [p.id] });
    await tickUntil(queue, async () => (await queue.get(c.id))!.state === 'skipped');
    expect((await queue.get(p.id))!.state).toBe('failed');
    expect(await code(queue.retry(c.id))).toBe('E_QUEUE_INVALID_STATE');
    runner.outcome = () => 'succeeded';
    const again = await queue.retry(p.id);
    expect(again.state).toBe('ready');
    expect((await queue.get(c.id))!.state).toBe('waiting');
    await tickUntil(queue, async () => (await queue.get(c.id))!.state === 'succeeded');
    expect(runner.submitted.filter((k) => k.includes(`-${p.id}-`))).toHaveLength(2);
    expect(await code(queue.retry(p.id))).toBe('E_QUEUE_INVALID_STATE');
    // The fresh budget is visible: attempt 2 is the first of its 1 since the retry.
    const done = (await queue.get(p.id))!;
    expect(done).toMatchObject({ attempt: 2, attemptsBeforeRetry: 1, maxAttempts: 1 });
    expect((await queue.get(c.id))!.attemptsBeforeRetry).toBe(0);
  });

  it('reprioritize changes the claim order', async () => {
    runner.hold = true;
    await queue.setTargetLimit('b', 1);
    const first = await queue.enqueue(spec(), { target: 'b' });
    const second = await queue.enqueue(spec(), { target: 'b' });
    expect((await queue.reprioritize(second.id, 10)).priority).toBe(10);
    await queue.tick();
    expect(runner.submitted[0]).toContain(`-${second.id}-a1`);
    expect((await queue.get(first.id))!.state).toBe('ready');
  });

  it('retries failed attempts with exponential backoff and jitter, then gives up', async () => {
    // Time is the injected clock: each retry is due when the test moves the clock to its
    // runAt, whatever the machine's load (no wall-clock wait, no count of ticks).
    let now = 1_000_000;
    await queue.close();
    queue = await open(store, {
      targets: { a: { runner }, b: { runner, maxConcurrent: 2 } },
      clock: { now: () => now },
    });
    let failures = 2;
    runner.outcome = () => (failures-- > 0 ? 'failed' : 'succeeded');
    const t0 = now;
    const job = await queue.enqueue(spec(), {
      target: 'a',
      maxAttempts: 3,
      backoff: { initialMs: 40, factor: 2, jitter: 0.25 },
    });
    await queue.tick(); // submit a1
    await queue.tick(); // a1 failed -> ready at +40ms +-25%
    const retrying = (await queue.get(job.id))!;
    expect(retrying.state).toBe('ready');
    expect(retrying.runAt - t0).toBeLessThanOrEqual(50);
    expect(retrying.runAt).toBeGreaterThanOrEqual(t0 + 30);
    await queue.tick(); // not due yet: the clock has not moved
    expect((await queue.get(job.id))!.attempt).toBe(1);
    now = retrying.runAt;
    await queue.tick(); // submit a2
    await queue.tick(); // a2 failed -> ready at +80ms +-25%
    const second = (await queue.get(job.id))!;
    expect(second).toMatchObject({ state: 'ready', attempt: 2 });
    expect(second.runAt - now).toBeGreaterThanOrEqual(60);
    expect(second.runAt - now).toBeLessThanOrEqual(100);
    now = second.runAt;
    await queue.tick(); // submit a3
    await queue.tick(); // a3 succeeded
    expect((await queue.get(job.id))!.state).toBe('succeeded');
    expect(runner.submitted.filter((k) => k.includes(`-${job.id}-`))).toEqual(
      [1, 2, 3].map((a) => expect.stringContaining(`-${job.id}-a${a}`)),
    );
    // the budget is spent: a failed job with maxAttempts 1 fails for good
    runner.outcome = () => 'failed';
    const once = await queue.enqueue(spec(), { target: 'a' });
    await queue.tick();
    await queue.tick();
    expect((await queue.get(once.id))!.state).toBe('failed');
    // The state says failed; the reason says why without the state word again.
    expect((await queue.get(once.id))!.reason).toMatch(/^exit 3\b/);
  });

  it('a submit that throws before the runner accepted is retried; one that throws after is adopted', async () => {
    runner.failSubmitBefore = 1;
    const a = await queue.enqueue(spec(), {
      target: 'a',
      maxAttempts: 2,
      backoff: { initialMs: 0 },
    });
    await tickUntil(queue, async () => (await queue.get(a.id))!.state === 'succeeded');
    expect(runner.submitted.filter((k) => k.includes(`-${a.id}-`))).toHaveLength(1);

    runner.failSubmitAfter = 1;
    const b = await queue.enqueue(spec(), { target: 'a' });
    await queue.tick();
    const adopted = (await queue.get(b.id))!;
    expect(adopted.state).toBe('succeeded'); // adopted through find(): one submission
    expect(adopted.handle!.jobKey).toContain(`-${b.id}-a1`);
    expect(runner.submitted.filter((k) => k.includes(`-${b.id}-`))).toHaveLength(1);

    runner.failSubmitBefore = 1;
    const c = await queue.enqueue(spec(), { target: 'a' });
    await queue.tick();
    expect((await queue.get(c.id))!).toMatchObject({
      state: 'failed',
      reason: expect.stringMatching(/submit failed: \[fault\] submit refused/),
    });
  });

  it('a failing poll is reported and the next one catches up', async () => {
    const errors: string[] = [];
    queue.on('error', (e) => errors.push(e.context));
    const job = await queue.enqueue(spec(), { target: 'a' });
    runner.failPoll = 1;
    await queue.tick();
    expect((await queue.get(job.id))!.state).toBe('queued');
    expect(errors).toEqual(['poll noop']);
    await queue.tick();
    expect((await queue.get(job.id))!.state).toBe('succeeded');
  });

  it('polls each runner once per round with all its live handles', async () => {
    runner.hold = true;
    await queue.enqueueMany(
      Array.from({ length: 30 }, (_, i) => ({ spec: spec(`p${i}`), target: i % 2 ? 'a' : 'b' })),
    );
    await queue.tick();
    await queue.tick();
    const before = runner.pollCalls;
    await queue.tick();
    expect(runner.pollCalls - before).toBe(1);
    expect(runner.pollSizes.at(-1)).toBe(17); // 15 on a, 2 on b (limit)
  });

  it('lists with filters and opaque cursors; counts by state and target', async () => {
    const jobs = await queue.enqueueMany(
      Array.from({ length: 25 }, (_, i) => ({
        spec: spec(`l${i}`),
        target: i < 20 ? 'a' : 'b',
        tags: i % 5 === 0 ? ['five'] : [],
      })),
    );
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await queue.list({ target: 'a', limit: 7, ...(cursor ? { cursor } : {}) });
      seen.push(...page.jobs.map((j) => j.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).toEqual(jobs.slice(0, 20).map((j) => j.id));
    expect((await queue.list({ tag: 'five' })).jobs.map((j) => j.name)).toEqual([
      'l0',
      'l5',
      'l10',
      'l15',
      'l20',
    ]);
    expect((await queue.list({ state: ['waiting', 'failed'] })).jobs).toEqual([]);
    await expect(queue.list({ cursor: 'garbage' })).rejects.toMatchObject({ field: 'cursor' });
    const counts = await queue.counts();
    expect(counts.total).toBe(25);
    expect(counts.byState.ready).toBe(25);
    expect(counts.byTarget.b!.ready).toBe(5);
  });

  it('lists newest first with order "newest": a limit keeps the most recent jobs', async () => {
    const jobs = await queue.enqueueMany(
      Array.from({ length: 12 }, (_, i) => ({ spec: spec(`n${i}`), target: i < 10 ? 'a' : 'b' })),
    );
    const first = await queue.list({ order: 'newest', limit: 3 });
    expect(first.jobs.map((j) => j.name)).toEqual(['n11', 'n10', 'n9']);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await queue.list({
        order: 'newest',
        target: 'a',
        limit: 4,
        ...(cursor ? { cursor } : {}),
      });
      seen.push(...page.jobs.map((j) => j.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).toEqual(
      jobs
        .slice(0, 10)
        .map((j) => j.id)
        .reverse(),
    );
    // A cursor of one order is refused by the other, not misread.
    const oldest = await queue.list({ limit: 1 });
    await expect(queue.list({ order: 'newest', cursor: oldest.nextCursor! })).rejects.toMatchObject(
      { field: 'cursor' },
    );
    await expect(queue.list({ order: 'sideways' as 'newest' })).rejects.toMatchObject({
      field: 'order',
    });
  });

  it('emits typed in-process events and persists the same log', async () => {
    const seen: string[] = [];
    let fourth!: () => void;
    const delivered = new Promise<void>((r) => {
      fourth = r;
    });
    queue.on('job:state', (e) => {
      seen.push(`${e.jobId}:${e.from ?? '-'}>${e.to}`);
      if (seen.length === 4) fourth();
    });
    const job = await queue.enqueue(spec(), { target: 'a' });
    await tickUntil(queue, async () => (await queue.get(job.id))!.state === 'succeeded');
    await delivered; // in-process delivery follows the commit asynchronously
    expect(seen).toEqual([
      `${job.id}:->ready`,
      `${job.id}:ready>submitting`,
      `${job.id}:submitting>queued`,
      `${job.id}:queued>succeeded`,
    ]);
    const log: string[] = [];
    for await (const e of queue.events({ follow: false }))
      if (e.type === 'job:state') log.push(`${e.jobId}:${e.from ?? '-'}>${e.to}`);
    expect(log).toEqual(seen);
  });

  it('a listener hears only what happens after it subscribed, also after a reopen', async () => {
    const before = await queue.enqueue(spec('before'), { target: 'a' });
    await tickUntil(queue, async () => (await queue.get(before.id))!.state === 'succeeded');
    const seen: string[] = [];
    // In-process delivery follows the commit asynchronously: wait for the job's last event.
    let ended!: () => void;
    const afterEnded = new Promise<void>((r) => {
      ended = r;
    });
    const listener = (e: { jobId: string; to: string }): void => {
      seen.push(`${e.jobId}:${e.to}`);
      if (e.to === 'succeeded') ended();
    };
    queue.on('job:state', listener);
    const after = await queue.enqueue(spec('after'), { target: 'a' });
    await tickUntil(queue, async () => (await queue.get(after.id))!.state === 'succeeded');
    await afterEnded;
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((s) => s.startsWith(`${after.id}:`))).toBe(true);
    queue.off('job:state', listener);
    // A restarted embedding app: a new queue on the same store replays nothing to listeners.
    const reopened = await open(store, { targets: { a: { runner }, b: { runner } } });
    try {
      const heard: string[] = [];
      let thirdEnded!: () => void;
      const delivered = new Promise<void>((r) => {
        thirdEnded = r;
      });
      reopened.on('job:state', (e) => {
        heard.push(`${e.jobId}:${e.to}`);
        if (e.to === 'succeeded') thirdEnded();
      });
      reopened.on('workflow:done', (e) => heard.push(`w${e.workflowId}`));
      const third = await reopened.enqueue(spec('third'), { target: 'a' });
      await tickUntil(reopened, async () => (await reopened.get(third.id))!.state === 'succeeded');
      await delivered;
      expect(heard[0]).toBe(`${third.id}:ready`);
      expect(heard.every((s) => s.startsWith(`${third.id}:`))).toBe(true);
      // Replay stays available to whoever asks for it.
      const replay: string[] = [];
      for await (const e of reopened.events({ follow: false }))
        if (e.type === 'job:state') replay.push(e.jobId);
      expect(replay).toContain(before.id);
    } finally {
      await reopened.close();
    }
  });

  it('prune removes old finished jobs and events but keeps parents of open jobs', async () => {
    let now = 1_000_000;
    await queue.close();
    queue = await open(store, {
      targets: { a: { runner }, b: { runner, maxConcurrent: 2 } },
      clock: { now: () => now },
    });
    const done = await queue.enqueue(spec(), { target: 'a' });
    const parent = await queue.enqueue(spec(), { target: 'a' });
    await tickUntil(queue, async () => (await queue.get(parent.id))!.state === 'succeeded');
    await queue.pause();
    const child = await queue.enqueue(spec(), {
      target: 'a',
      dependsOn: [{ job: parent.id, condition: 'afterany' }],
      runAt: now + 3_600_000,
    });
    expect(child.state).toBe('ready');
    now += 5; // what ended so far is now older than olderThanMs: 0
    const removed = await queue.prune({ olderThanMs: 0 });
    expect(removed.jobs).toBe(1);
    expect(removed.events).toBeGreaterThan(0);
    expect(await queue.get(done.id)).toBeNull();
    expect((await queue.get(parent.id))!.state).toBe('succeeded');
    expect(await queue.get(child.id)).not.toBeNull();
    await expect(queue.prune({ olderThanMs: -1 })).rejects.toMatchObject({ code: 'E_VALIDATION' });
  });

  it('start() wakes on enqueue: dispatch does not wait for a tick', async () => {
    await queue.close();
    runner = new FaultRunner();
    queue = await open(store, {
      targets: { a: { runner } },
      scheduler: { tickMs: 5_000, pollIntervalMs: 5_000 },
    });
    await queue.start();
    const submittedAt = new Promise<number>((resolve) => {
      runner.onSubmit = () => resolve(performance.now());
    });
    await new Promise((r) => setTimeout(r, 50)); // the loop is asleep now
    const t0 = performance.now();
    await queue.enqueue(spec(), { target: 'a' });
    expect((await submittedAt) - t0).toBeLessThan(200); // generous: CI machines are loaded; the bench measures p50
    await queue.stop();
  });

  it('drain resolves when jobs end and times out with a typed error', async () => {
    await queue.start();
    const jobs = await queue.enqueueMany(
      Array.from({ length: 5 }, () => ({ spec: spec(), target: 'a' })),
    );
    await queue.drain({ ids: jobs.map((j) => j.id), timeoutMs: 5_000 });
    await queue.pause();
    await queue.enqueue(spec(), { target: 'a' });
    expect(await code(queue.drain({ timeoutMs: 50 }))).toBe('E_ABORTED');
    await queue.stop();
  });

  it('a closed queue refuses calls with E_QUEUE_CLOSED', async () => {
    await queue.close();
    expect(await code(queue.enqueue(spec(), { target: 'a' }))).toBe('E_QUEUE_CLOSED');
    expect(await code(queue.get('1'))).toBe('E_QUEUE_CLOSED');
  });
});
