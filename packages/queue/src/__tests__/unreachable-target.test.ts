// An SSH target that goes away and comes back: a private sshd of this test's own (never the
// shared one) is stopped while jobs are submitted to it. No job fails or uses up an attempt,
// the target shows as unreachable, and every job is submitted within 5 s of its return, exactly
// once (each job appends its name to a journal file on the target). A target whose key is
// refused fails its jobs at once with E_SSH_AUTH. Real sshd, real ssh2 pool, real processes.

import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Transport } from '@crystalmath/core';
import { ProcessRunner } from '@crystalmath/runner-process';
import { SshPool, SshTransport } from '@crystalmath/ssh-pool';
import { type PrivateSshd, privateSshd, requireService } from '@crystalmath/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Queue, TargetHealthEvent } from '../types.js';
import { open, STORES, type TestStore, tempDir } from './helpers.js';

/** The outage, as in the issue: 60 s (CM_OUTAGE_MS shortens it by hand; the behaviour is the same). */
const OUTAGE_MS = Number(process.env.CM_OUTAGE_MS ?? 60_000);
/** The goal: every job submitted within 5 s of the target's return. */
const RESUME_GOAL_MS = 5_000;
/**
 * What the test holds the queue to: the goal with half again for load. Measured on the shared
 * 2-core machine (printed below): 1.6 to 2.7 s for this file alone, 4.4 s inside the whole
 * package's parallel run. Of that, up to 1.2 s waiting for the next probe (the unreachable
 * backoff's 1 s cap, +-20 %), about 0.2 s to resolve the parked submits through find(), and
 * the rest for the 8 submits themselves (several SSH round trips each, in parallel: the part
 * that grows with load). With the pool's default breaker the same outage gave 23 s: see
 * transport() below.
 */
const RESUME_WITHIN_MS = 1.5 * RESUME_GOAL_MS;
/** Generous waits for a loaded machine. */
const WAIT_MS = 60_000;
const JOBS = 8;

const ssh = requireService('ssh');
const canRun = ssh !== undefined && process.getuid?.() === 0;

let sshd: PrivateSshd;
let store: TestStore;
let dir: ReturnType<typeof tempDir>;
const pools: SshPool[] = [];

beforeAll(async () => {
  if (!canRun) return;
  sshd = await privateSshd();
  store = await STORES[0]!.make();
  dir = tempDir('cm-unreach-');
  chmodSync(dir.dir, 0o777); // the jobs run as the ssh user and append to the journal here
});

afterAll(async () => {
  if (!canRun) return;
  for (const p of pools) await p.close().catch(() => undefined);
  await sshd?.close();
  await store?.cleanup();
  dir?.cleanup();
});

function transport(privateKeyPath: string): Transport {
  // The pool as `crystalmath run` configures it (SCHEDULER_POOL in packages/cli/src/wire-targets.ts):
  // a 1 s breaker cool-down, the default connect rate limit. With the pool's default cool-down
  // (5 s doubling to 60 s) the return is seen only when the circuit lets a trial through.
  const pool = new SshPool({ circuitBreaker: { cooldownMs: 1_000, maxCooldownMs: 1_000 } });
  pools.push(pool);
  return new SshTransport({
    pool,
    host: {
      host: sshd.host,
      port: sshd.port,
      username: sshd.user,
      privateKeyPath,
      knownHostsPath: sshd.knownHostsPath,
    },
  });
}

it.skipIf(!canRun)(
  'an SSH target down for a minute fails no job; all are submitted soon after its return, exactly once',
  async () => {
    const runner = new ProcessRunner({
      transport: transport(sshd.privateKeyPath),
      root: `cm-unreach-${process.pid}`,
    });
    const queue: Queue = await open(store, {
      targets: { cluster: { runner } },
      scheduler: { pollIntervalMs: 100 },
    });
    const health: TargetHealthEvent[] = [];
    queue.on('target:unreachable', (e) => health.push(e));
    queue.on('target:reachable', (e) => health.push(e));
    const journal = join(dir.dir, 'journal');
    try {
      await queue.start();
      await sshd.stop({ dropConnections: true });
      const downAt = Date.now();
      const jobs = await queue.enqueueMany(
        Array.from({ length: JOBS }, (_, i) => ({
          spec: { name: `j${i}`, argv: ['sh', '-c', `echo j${i} >> ${journal}`] },
          target: 'cluster',
        })),
      );
      const ids = jobs.map((j) => j.id);
      // The outage is seen and shown, and no job ends while it lasts.
      const seen = await until(async () => {
        const t = (await queue.targets()).find((x) => x.name === 'cluster')!;
        return t.unreachable ?? null;
      });
      expect(seen.lastError).toMatch(/E_SSH_CONNECT|ECONNREFUSED|E_SSH_CIRCUIT_OPEN/);
      const rest = OUTAGE_MS - (Date.now() - downAt);
      await new Promise<void>((resolve) => {
        // The outage itself is the fault injected, not a wait for the code under test.
        setTimeout(resolve, Math.max(0, rest));
      });
      const during = await queue.list({ limit: 1000 });
      expect(during.jobs.filter((j) => j.state === 'failed')).toEqual([]);
      await sshd.start();
      const backAt = Date.now();
      // Each job leaves ready/submitting (has a handle) within RESUME_WITHIN_MS of the return.
      const submittedAt = await until(async () => {
        const page = await queue.list({ limit: 1000 });
        const left = page.jobs.filter((j) => j.state === 'ready' || j.state === 'submitting');
        return left.length === 0 ? Date.now() : null;
      });
      const resumeMs = submittedAt - backAt;
      await queue.drain({ ids, timeoutMs: WAIT_MS });
      const ended = await queue.list({ limit: 1000 });
      expect(ended.jobs.map((j) => j.state)).toEqual(ids.map(() => 'succeeded'));
      expect(ended.jobs.map((j) => j.attempt)).toEqual(ids.map(() => 1));
      const lines = readFileSync(journal, 'utf8').trim().split('\n').sort();
      expect(lines).toEqual(jobs.map((j) => j.name).sort());
      expect(health.map((e) => e.type)).toEqual(['target:unreachable', 'target:reachable']);
      expect((await queue.targets())[0]!.unreachable).toBeNull();
      console.log(
        `[unreachable ssh] ${JOBS} jobs, target down ${backAt - downAt} ms: 0 failed, all submitted ${resumeMs} ms after its return (goal ${RESUME_GOAL_MS} ms: ${resumeMs <= RESUME_GOAL_MS ? 'met' : 'MISSED'}), each run once`,
      );
      expect(resumeMs).toBeLessThan(RESUME_WITHIN_MS);
    } finally {
      await queue.close();
    }
  },
  OUTAGE_MS + 3 * WAIT_MS,
);

it.skipIf(!canRun)(
  'a target whose key is refused fails its jobs at once with E_SSH_AUTH',
  async () => {
    const wrongKey = join(dir.dir, 'wrong_key');
    if (!existsSync(wrongKey))
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrongKey]);
    const runner = new ProcessRunner({ transport: transport(wrongKey), root: 'cm-unreach-auth' });
    const queue: Queue = await open(store, {
      targets: { refused: { runner } },
      scheduler: { pollIntervalMs: 100 },
    });
    try {
      await queue.start();
      const t0 = Date.now();
      const job = await queue.enqueue(
        { name: 'never', argv: ['true'] },
        { target: 'refused', maxAttempts: 3 },
      );
      await queue.drain({ ids: [job.id], timeoutMs: WAIT_MS });
      const failMs = Date.now() - t0;
      const after = (await queue.get(job.id))!;
      expect(after.state).toBe('failed');
      expect(after.reason).toContain('E_SSH_AUTH');
      expect((await queue.targets()).find((t) => t.name === 'refused')!.unreachable).toBeNull();
      console.log(
        `[refused key] job failed with E_SSH_AUTH after ${failMs} ms (attempt ${after.attempt})`,
      );
    } finally {
      await queue.close();
    }
  },
);

/** Polls `read` until it gives a value (not null), within WAIT_MS. */
async function until<T>(read: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const v = await read();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
