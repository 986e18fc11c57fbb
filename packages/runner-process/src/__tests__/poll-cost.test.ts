// Poll cost: any number of jobs costs one command on the target. 500 real jobs (sleeping
// processes, each under its own wrapper) are polled with exactly one `exec`, counted by an
// observer around the real LocalTransport.

import type { RunnerHandle } from '@crystalmath/core';
import { testJobKey } from '@crystalmath/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessRunner } from '../index.js';
import { countingTransport, isAlive, killHandle, type Scratch, scratch } from './helpers.js';

/** Jobs in the batch; CM_POLL_JOBS overrides (the acceptance number is 500). */
const JOBS = Number(process.env.CM_POLL_JOBS ?? 500);
/**
 * Hang guard only: what is checked is a count of commands, never a time. 500 submits take
 * ~76 s on 2 quiet cores and several times that on a loaded machine.
 */
const HANG_GUARD_MS = 900_000;
/** The sleepers outlive the whole test however slow submitting is (killed in afterAll). */
const SLEEPER_S = String(Math.ceil(HANG_GUARD_MS / 1000) + 60);

describe('poll cost', { timeout: HANG_GUARD_MS }, () => {
  let s: Scratch;
  const handles: RunnerHandle[] = [];

  beforeAll(async () => {
    s = await scratch('cm-rp-cost-');
  });
  afterAll(async () => {
    for (const h of handles) killHandle(h);
    await s.dispose(); // 500 job folders: slow to remove on a loaded machine
  }, HANG_GUARD_MS);

  it(`polls ${JOBS} running jobs with exactly one exec`, async () => {
    const submitter = s.runner();
    const t0 = Date.now();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < JOBS) {
        next++;
        handles.push(
          await submitter.submit({
            key: testJobKey('cost'),
            spec: { name: 'sleeper', argv: ['sleep', SLEEPER_S] },
          }),
        );
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const submitMs = Date.now() - t0;
    expect(handles).toHaveLength(JOBS);

    const { transport, execs } = countingTransport(s.transport);
    const runner = new ProcessRunner({ transport, root: 'jobs' });
    const t1 = Date.now();
    const statuses = await runner.poll(handles);
    const pollMs = Date.now() - t1;
    expect(execs()).toBe(1);
    expect(statuses).toHaveLength(JOBS);
    expect(statuses.every((st) => st.state === 'running')).toBe(true);
    console.info(`[runner-process] ${JOBS} submits in ${submitMs} ms; one poll in ${pollMs} ms`);

    // The same single command also tells finished jobs apart from running ones.
    const killed = handles.slice(0, 10);
    for (const h of killed) killHandle(h);
    for (const h of killed) {
      for (const pid of [h.data.wrapperPid, h.data.pid]) {
        while (typeof pid === 'number' && isAlive(pid)) await new Promise((r) => setTimeout(r, 10));
      }
    }
    const again = await runner.poll(handles);
    expect(execs()).toBe(2);
    expect(again.slice(0, 10).map((st) => st.state)).toEqual(Array(10).fill('lost'));
    expect(again.slice(10).every((st) => st.state === 'running')).toBe(true);
  });
});
