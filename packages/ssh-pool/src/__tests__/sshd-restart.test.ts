// sshd is stopped (its sessions dropped) and started again during a run of 1,000 commands:
// each command succeeds or fails with a typed E_SSH_* error within its timeout, the pool
// recovers by itself, nothing is rejected unhandled and no timer or socket is left behind.
//
// The sshd stopped here is a private one (testkit's privateSshd: same host key and users, its
// own port), so the shared testbed sshd that other packages' tests use concurrently is untouched.

import { isCrystalMathError } from '@crystalmath/core';
import { type PrivateSshd, privateSshd } from '@crystalmath/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SshPoolEvents } from '../events.js';
import { SshPool } from '../ssh-pool.js';
import { SshTransport } from '../ssh-transport.js';
import { sleep, ssh, testHost } from './helpers.js';

const COMMANDS = 1_000;
const WORKERS = 8;
const TIMEOUT_MS = 4_000;
const OUTAGE_MS = 1_000;

/** Handles of the kinds a pool could leak (timers, sockets). */
function handles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) {
    if (r === 'Timeout' || r === 'TCPSocketWrap' || r === 'TCPWRAP')
      counts[r] = (counts[r] ?? 0) + 1;
  }
  return counts;
}

describe.skipIf(!ssh)('sshd killed and restarted mid-run', () => {
  let sshd: PrivateSshd;
  const stopSshd = () => sshd.stop();
  const startSshd = () => sshd.start();
  beforeAll(async () => {
    sshd = await privateSshd();
  });
  afterAll(async () => {
    await sshd?.close();
  });

  it(`keeps every one of ${COMMANDS} commands typed and on time, and recovers by itself`, async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    await sleep(50);
    const before = handles();

    const pool = new SshPool({
      max: 4,
      acquireTimeoutMs: TIMEOUT_MS,
      connectTimeoutMs: 3_000,
      probeIntervalMs: 500,
      circuitBreaker: { failureThreshold: 5, cooldownMs: 300, maxCooldownMs: 1_000 },
      reconnectBackoff: { initialMs: 50, maxMs: 400 },
      connectRateLimit: { limit: 100, intervalMs: 1_000 },
    });
    const events: Record<string, number> = {};
    const count = (name: string) => () => {
      events[name] = (events[name] ?? 0) + 1;
    };
    pool.on('connect', count('connect'));
    pool.on('connectError', count('connectError'));
    pool.on('disconnect', (e: SshPoolEvents['disconnect']) => count(`disconnect:${e.reason}`)());
    pool.on('circuit', (e) => count(`circuit:${e.state}`)());
    const transport = new SshTransport({
      pool,
      host: testHost('user', { port: sshd.port, knownHostsPath: sshd.knownHostsPath }),
    });

    type Outcome = { n: number; ok: boolean; code?: string; ms: number; at: number };
    const outcomes: Outcome[] = [];
    let next = 0;
    let outage: Promise<void> | undefined;
    let downAt = 0;
    let upAt = 0;
    const worker = async () => {
      while (next < COMMANDS) {
        const n = next++;
        if (n === 300 && !outage) {
          outage = (async () => {
            downAt = Date.now();
            try {
              await stopSshd();
              await sleep(OUTAGE_MS);
            } finally {
              await startSshd();
              upAt = Date.now();
            }
          })();
        }
        const t0 = Date.now();
        try {
          const r = await transport.exec(['echo', `${n}`], { timeoutMs: TIMEOUT_MS });
          outcomes.push({
            n,
            ok: r.stdout === `${n}\n` && r.exitCode === 0,
            ms: Date.now() - t0,
            at: t0,
          });
        } catch (error) {
          outcomes.push({
            n,
            ok: false,
            code: isCrystalMathError(error) ? error.code : `untyped: ${String(error)}`,
            ms: Date.now() - t0,
            at: t0,
          });
          await sleep(100); // a failing caller backs off, as real callers do
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: WORKERS }, worker));
      await outage;
    } finally {
      await startSshd();
    }

    // Every command: success, or a typed E_SSH_* error, within its timeout.
    expect(outcomes).toHaveLength(COMMANDS);
    const failed = outcomes.filter((o) => !o.ok);
    const badCodes = failed.filter((o) => !o.code?.startsWith('E_SSH_'));
    expect(badCodes, JSON.stringify(badCodes.slice(0, 5))).toEqual([]);
    const late = outcomes.filter((o) => o.ms > TIMEOUT_MS + 1_000);
    expect(late, JSON.stringify(late.slice(0, 5))).toEqual([]);
    // The outage was seen, and only around it.
    expect(failed.length).toBeGreaterThan(0);
    for (const f of failed) {
      expect(f.at).toBeGreaterThanOrEqual(downAt - TIMEOUT_MS);
      expect(f.at).toBeLessThanOrEqual(upAt + TIMEOUT_MS);
    }
    // Recovered by itself: everything started after the restart settled succeeded.
    const afterRecovery = outcomes.filter((o) => o.at > upAt + 2_000);
    expect(afterRecovery.length).toBeGreaterThan(100);
    expect(afterRecovery.every((o) => o.ok)).toBe(true);
    const codes = [...new Set(failed.map((f) => f.code))].sort();
    console.info(
      `[sshd-restart] ${failed.length} of ${COMMANDS} failed during a ${upAt - downAt} ms outage: ${codes.join(', ')}; events ${JSON.stringify(events)}`,
    );
    expect(events['disconnect:closed-by-peer']).toBeGreaterThan(0);

    await pool.close();
    process.off('unhandledRejection', onUnhandled);
    expect(unhandled).toEqual([]);
    // Nothing of the pool keeps the process alive.
    await sleep(100);
    const after = handles();
    for (const kind of Object.keys(after)) {
      expect(
        after[kind] ?? 0,
        `${kind} left: ${JSON.stringify({ before, after })}`,
      ).toBeLessThanOrEqual(before[kind] ?? 0);
    }
  }, 120_000);
});
