// Round trips per operation against the testbed's SLURM over SSH, counted through the
// transport (every call is at least one round trip) and through ssh-pool's own count of the
// commands its command channel ran (exactly one round trip each): submit 2 with any number of
// inputs, poll 1 for any number of jobs, collect 1 plus the transfer of each file.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunnerHandle, Transport } from '@crystalmath/core';
import { testJobKey, waitForTerminal } from '@crystalmath/core/testing';
import { testbedSshTransport } from '@crystalmath/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { roundTripCounter } from './observers.js';
import { JobRegistry, makeRunner, slurm } from './slurm-fixture.js';

const connect = await testbedSshTransport<Transport>(
  'runner-slurm',
  (s) => import(/* @vite-ignore */ s),
);

/** ssh-pool's count of commands per route, read through the transport's pool. */
function commandRoutes(t: Transport): { channel: number; exec: number } {
  const pool = (t as unknown as { pool?: { stats(): { hosts: { commands?: object }[] } } }).pool;
  const c = pool?.stats().hosts[0]?.commands as { channel: number; exec: number } | undefined;
  return c ?? { channel: 0, exec: 0 };
}

const JOB_TIMEOUT_MS = 120_000;

describe.skipIf(!slurm || !connect)('round trips per operation (SLURM over SSH)', () => {
  let conn: ReturnType<NonNullable<typeof connect>>;
  let local: string;
  const jobs = new JobRegistry();
  const root = `cm-slurm-rt-${Date.now().toString(36)}`;

  beforeAll(async () => {
    conn = connect!();
    local = await mkdtemp(join(tmpdir(), 'cm-slurm-rt-'));
    // The first command of a connection starts its command channel; wait until it serves.
    for (let i = 0; i < 200 && commandRoutes(conn.transport).channel === 0; i++) {
      await conn.transport.exec(['true']);
    }
  });
  afterAll(async () => {
    await jobs.cancelAll(conn.transport);
    await conn.transport.remove(root).catch(() => undefined);
    await conn.close();
    await rm(local, { recursive: true, force: true });
  });

  it(
    'submits in 2 round trips with 5 inputs, polls 4 jobs in 1, collects 3 files in 1 + transfer',
    async () => {
      const counter = roundTripCounter(conn.transport);
      const runner = makeRunner(counter.transport, root);
      const fromFile = join(local, 'from.bin');
      await writeFile(fromFile, Buffer.from([0, 1, 2, 255, 10, 13]));
      const handles: RunnerHandle[] = [];
      for (let i = 0; i < 4; i++) {
        counter.reset();
        const before = commandRoutes(conn.transport);
        const h = await runner.submit({
          key: testJobKey(`rt${i}`),
          spec: {
            name: 'rt',
            script:
              'cat in/a.txt in/b.txt > a.res; cp in/deep/c.bin b.res; mkdir -p o; cp from.bin o/c.res',
            inputs: [
              { content: 'alpha\n', to: 'in/a.txt' },
              { content: 'beta\n', to: 'in/b.txt' },
              { content: new Uint8Array([9, 8, 7]), to: 'in/deep/c.bin' },
              { content: `${'x'.repeat(2000)}\n`, to: 'big.txt' },
              { from: fromFile, to: 'from.bin' },
            ],
            outputs: ['*.res', 'o/*.res'],
          },
        });
        handles.push(jobs.track(h));
        expect(counter.calls()).toEqual({ exec: 2 });
        const after = commandRoutes(conn.transport);
        // Both commands ran on the command channel: one round trip each.
        expect(after.channel - before.channel).toBe(2);
        expect(after.exec - before.exec).toBe(0);
      }

      counter.reset();
      const before = commandRoutes(conn.transport);
      const statuses = await runner.poll(handles);
      expect(statuses).toHaveLength(4);
      expect(counter.calls()).toEqual({ exec: 1 });
      expect(commandRoutes(conn.transport).channel - before.channel).toBe(1);

      for (const h of handles) {
        const s = await waitForTerminal(runner, h, JOB_TIMEOUT_MS, 250);
        expect(s.state).toBe('succeeded');
      }
      const dest = join(local, 'collected');
      counter.reset();
      const collected = await runner.collect?.(handles[0] as RunnerHandle, dest);
      expect(collected?.files).toHaveLength(3);
      const calls = counter.calls();
      expect(calls.exec).toBe(1);
      // Everything else is the transfer: one call per file, nothing else.
      const { exec: _exec, ...transfer } = calls;
      expect(Object.values(transfer).reduce((a, b) => a + (b ?? 0), 0)).toBe(3);
      expect(Object.keys(transfer).every((k) => k === 'download' || k === 'readFile')).toBe(true);
      expect(await readFile(join(dest, 'a.res'), 'utf8')).toBe('alpha\nbeta\n');
      expect([...(await readFile(join(dest, 'b.res')))]).toEqual([9, 8, 7]);
      expect([...(await readFile(join(dest, 'o/c.res')))]).toEqual([0, 1, 2, 255, 10, 13]);
    },
    JOB_TIMEOUT_MS * 2,
  );
});
