// The typed in-process events: every key of QueueEventMap has a real payload type (a union
// member carrying two `type` literals once made some of them `never`). Checked by tsc in
// `typecheck` and at run time by a queue that emits them.

import { describe, expect, expectTypeOf, it, vi } from 'vitest';
import type { QueueEvent, QueueEventMap } from '../index.js';
import { NoopRunner, open, STORES } from './helpers.js';

describe('QueueEventMap', () => {
  it('gives each event a payload type that is not never', () => {
    expectTypeOf<QueueEventMap['queue:paused']>().not.toBeNever();
    expectTypeOf<QueueEventMap['queue:resumed']>().not.toBeNever();
    expectTypeOf<QueueEventMap['workflow:created']>().not.toBeNever();
    expectTypeOf<QueueEventMap['workflow:done']>().not.toBeNever();
    expectTypeOf<QueueEventMap['target:limit']>().not.toBeNever();
    expectTypeOf<QueueEventMap['job:state']>().not.toBeNever();
    expectTypeOf<QueueEventMap['queue:paused']['target']>().toEqualTypeOf<string | null>();
    expectTypeOf<QueueEventMap['workflow:done']['workflowId']>().toEqualTypeOf<string>();
  });

  it('emits queue:paused and queue:resumed with their payloads, in order', async () => {
    const store = await STORES[0]!.make(); // SQLite: the in-process emitter is the same for both
    const queue = await open(store, { targets: { local: { runner: new NoopRunner() } } });
    try {
      const seen: QueueEvent[] = [];
      queue.on('queue:paused', (e) => seen.push(e));
      queue.on('queue:resumed', (e) => seen.push(e));
      await queue.pause('local');
      await queue.resume();
      // Emitted from the persisted log after each write commits, so shortly after the calls.
      await vi.waitFor(() => expect(seen).toHaveLength(2));
      expect(seen.map((e) => [e.type, 'target' in e ? e.target : undefined])).toEqual([
        ['queue:paused', 'local'],
        ['queue:resumed', null],
      ]);
    } finally {
      await queue.close();
      await store.cleanup();
    }
  });
});
