// A front-end in another process follows events() of a 1,000-job workflow run by this one and
// sees every transition, in order, exactly as persisted.

import { beforeAll, expect, it } from 'vitest';
import { LEGAL_TRANSITIONS } from '../store/rules.js';
import type { JobState, QueueEvent } from '../types.js';
import { assertBuilt, spawnFixture } from './child.js';
import { describeStores, NoopRunner, open, spec } from './helpers.js';

beforeAll(() => assertBuilt());

describeStores((makeStore) => {
  it('another process following events() sees every transition of a 1,000-job workflow in order', async () => {
    const store = await makeStore();
    const runner = new NoopRunner();
    runner.outcome = (job) => (job.spec.name.endsWith('7') ? 'failed' : 'succeeded');
    const queue = await open(store, { targets: { t: { runner, maxConcurrent: 50 } } });
    try {
      // 10 layers of 100; each job depends on two of the layer above, some with afterany.
      const jobs: Record<
        string,
        {
          spec: ReturnType<typeof spec>;
          dependsOn?: { job: string; condition: 'afterok' | 'afterany' }[];
        }
      > = {};
      for (let layer = 0; layer < 10; layer++) {
        for (let i = 0; i < 100; i++) {
          const key = `j${layer}_${i}`;
          jobs[key] = {
            spec: spec(`n${layer}_${i}`),
            ...(layer === 0
              ? {}
              : {
                  dependsOn: [
                    { job: `j${layer - 1}_${i}`, condition: i % 3 === 0 ? 'afterok' : 'afterany' },
                    { job: `j${layer - 1}_${(i * 7 + 1) % 100}`, condition: 'afterany' },
                  ],
                }),
          };
        }
      }
      const after = await (async () => {
        let last = 0;
        for await (const e of queue.events({ follow: false })) last = e.seq;
        return last;
      })();
      const follower = spawnFixture('event-follower.mjs', { store: store.spec, after });
      await follower.waitFor('ready');
      const wf = await queue.submitWorkflow({ name: 'big', target: 't', jobs });
      await queue.start();
      await follower.waitFor('end');
      await queue.stop();
      expect((await queue.workflow(wf.id))!.done).toBe(true);

      const seen = follower
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as QueueEvent);
      const persisted: QueueEvent[] = [];
      for await (const e of queue.events({ after, follow: false })) {
        persisted.push(e);
        if (e.type === 'workflow:done') break;
      }
      expect(seen).toEqual(persisted);
      // every job of the workflow went from creation to a terminal state along legal edges
      const last = new Map<string, JobState | null>();
      let prevSeq = after;
      for (const e of seen) {
        expect(e.seq).toBeGreaterThan(prevSeq);
        prevSeq = e.seq;
        if (e.type !== 'job:state') continue;
        expect(e.from).toBe(last.has(e.jobId) ? last.get(e.jobId) : null);
        expect(LEGAL_TRANSITIONS.get(e.from)!.has(e.to), `${e.from} -> ${e.to}`).toBe(true);
        last.set(e.jobId, e.to);
      }
      expect(last.size).toBe(1000);
      const finals = new Set(last.values());
      expect([...finals].every((s) => s === 'succeeded' || s === 'failed' || s === 'skipped')).toBe(
        true,
      );
      expect(finals.has('skipped')).toBe(true);
    } finally {
      await queue.close();
      await store.cleanup();
    }
  }, 180_000);
});
