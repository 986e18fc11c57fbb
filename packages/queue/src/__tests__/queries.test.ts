// No N+1: read paths and a scheduler's steady-state poll issue a constant number of queries
// whatever the number of jobs, counted through the store's onQuery hook.

import { afterEach, beforeEach, expect, it } from 'vitest';
import type { Queue } from '../types.js';
import { describeStores, NoopRunner, open, spec, type TestStore } from './helpers.js';

describeStores((makeStore) => {
  let store: TestStore;
  let runner: NoopRunner;
  let queue: Queue;
  let queries = 0;

  beforeEach(async () => {
    store = await makeStore();
    runner = new NoopRunner({ hold: true });
    queue = await open(store, { targets: { t: { runner } }, onQuery: () => queries++ });
  });

  afterEach(async () => {
    await queue.close();
    await store.cleanup();
  });

  async function count(fn: () => Promise<unknown>): Promise<number> {
    const before = queries;
    await fn();
    return queries - before;
  }

  async function workflowOf(n: number): Promise<string> {
    const jobs: Record<string, { spec: ReturnType<typeof spec>; dependsOn?: string[] }> = {};
    for (let i = 0; i < n; i++)
      jobs[`k${i}`] = { spec: spec(), ...(i > 0 ? { dependsOn: [`k${i - 1}`] } : {}) };
    return (await queue.submitWorkflow({ name: `w${n}`, target: 't', jobs })).id;
  }

  it('get, list, counts, workflow and targets cost the same for 5 jobs as for 300', async () => {
    const small = await workflowOf(5);
    const big = await workflowOf(300);
    await queue.enqueueMany(
      Array.from({ length: 300 }, () => ({ spec: spec(), target: 't', tags: ['x'] })),
    );
    const few = await count(() => queue.list({ limit: 5 }));
    expect(await count(() => queue.list({ limit: 500 }))).toBe(few);
    expect(
      await count(() => queue.list({ limit: 500, tag: 'x', state: ['ready', 'waiting'] })),
    ).toBe(few);
    expect(await count(() => queue.workflow(big))).toBe(await count(() => queue.workflow(small)));
    expect(await count(() => queue.counts())).toBe(1);
    expect(await count(() => queue.targets())).toBe(1);
    expect(await count(() => queue.get('1'))).toBeLessThanOrEqual(2);
  });

  it('a scheduler round polls all live jobs with one runner call and a constant number of queries', async () => {
    await queue.enqueueMany(Array.from({ length: 5 }, () => ({ spec: spec(), target: 't' })));
    await queue.tick(); // claim + submit + first poll (queued -> running)
    await queue.tick();
    const pollsBefore = runner.pollCalls;
    const five = await count(() => queue.tick());
    await queue.enqueueMany(Array.from({ length: 295 }, () => ({ spec: spec(), target: 't' })));
    await queue.tick();
    await queue.tick();
    const before = runner.pollCalls;
    const three00 = await count(() => queue.tick());
    expect(runner.pollCalls - before).toBe(1);
    expect(runner.pollSizes.at(-1)).toBe(300);
    expect(three00).toBe(five);
    expect(runner.pollCalls - pollsBefore).toBeGreaterThan(1);
  });
});
