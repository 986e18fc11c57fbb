// A runner that declares `capabilities.validate` is asked at the call: a spec it refuses fails
// enqueue / enqueueMany / submitWorkflow with a ValidationError naming the field, and nothing
// is written (no job, no event). A runner not in this process cannot be asked: that job is
// checked at submit time as before.

import { type JobSpec, ValidationError } from '@crystalmath/core';
import { afterEach, expect, it } from 'vitest';
import type { Queue } from '../types.js';
import { collect, describeStores, NoopRunner, open, type TestStore } from './helpers.js';

/** A runner with its own rule: `resources.gres` must look like `name:count`. */
class CheckingRunner extends NoopRunner {
  constructor() {
    super();
    this.capabilities = { ...this.capabilities, validate: true };
  }

  validate(spec: JobSpec, field = 'spec'): void {
    const gres = (spec.resources as { gres?: unknown } | undefined)?.gres;
    if (gres !== undefined && (typeof gres !== 'string' || !/^[a-z]+:[0-9]+$/.test(gres)))
      throw new ValidationError(`${field}.resources.gres`, 'must be name:count');
  }
}

const bad = { name: 'bad', argv: ['true'], resources: { gres: 'gpu;x' } } as JobSpec;
const good = { name: 'good', argv: ['true'] };

describeStores((makeStore) => {
  let store: TestStore | undefined;
  let queue: Queue | undefined;
  afterEach(async () => {
    await queue?.close();
    await store?.cleanup();
  });

  it('a spec the target runner refuses fails the call, naming the field, and writes nothing', async () => {
    store = await makeStore();
    const q = await open(store, { targets: { x: { runner: new CheckingRunner() } } });
    queue = q;
    await expect(q.enqueue(bad, { target: 'x' })).rejects.toMatchObject({
      code: 'E_VALIDATION',
      field: 'spec.resources.gres',
    });
    await expect(
      q.enqueueMany([
        { spec: good, target: 'x' },
        { spec: bad, target: 'x' },
      ]),
    ).rejects.toMatchObject({ field: 'items[1].spec.resources.gres' });
    await expect(
      q.submitWorkflow({ name: 'w', target: 'x', jobs: { a: { spec: good }, b: { spec: bad } } }),
    ).rejects.toMatchObject({ field: 'workflow.jobs.b.spec.resources.gres' });
    expect((await q.counts()).total).toBe(0);
    expect(await collect(q.events({ follow: false }))).toEqual([]);
    await q.enqueue({ ...bad, resources: { gres: 'gpu:2' } } as JobSpec, { target: 'x' });
    expect((await q.counts()).total).toBe(1);
  });
});
