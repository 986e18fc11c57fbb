// SshPool behaviour against the testbed's real sshd: slot accounting (never above max, FIFO
// waiters), timeouts and aborts, release on every path, eviction, probes, the circuit breaker,
// the connect rate limit, drain and close. A loopback proxy counts real TCP connections.

import { createServer, type Socket } from 'node:net';
import { isCrystalMathError } from '@crystalmath/core';
import { freePort } from '@crystalmath/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SshLease } from '../connection.js';
import type { SshPoolEvents } from '../events.js';
import { SshPool } from '../ssh-pool.js';
import { SshTransport } from '../ssh-transport.js';
import {
  EVENT_TIMEOUT_MS,
  knownHostsFor,
  settlesAtOnce,
  sleep,
  ssh,
  TcpProxy,
  tempDir,
  testHost,
  waitFor,
} from './helpers.js';

const code = (e: unknown) => (isCrystalMathError(e) ? e.code : String(e));

// Time bounds below are named and generous: each sits far below the wait it must tell apart
// (a caller's own timeout, a command's run, the reconnect backoff) and far above what a busy
// machine (CI: 2 shared cores under `stress-ng --cpu 2`) adds to a timer or a loopback connect.
/** An acquire that times out after 200 ms ends well before the 10 s connect timeout. */
const ACQUIRE_TIMEOUT_BOUND_MS = 5_000;
/** A caller's own deadline in the "fails fast" cases: what fails fast ends far before it. */
const CALLER_DEADLINE_MS = 60_000;
/** "Fails fast": the refused or silent connect ends far before CALLER_DEADLINE_MS. */
const FAIL_FAST_BOUND_MS = 10_000;
/** A 500 ms exec timeout ends far before the command's own run (61 s). */
const EXEC_TIMEOUT_BOUND_MS = 15_000;
/** close() with a 300 ms closeTimeoutMs ends far before the session's own run (30 s). */
const CLOSE_BOUND_MS = 10_000;

describe.skipIf(!ssh)('SshPool', () => {
  const dir = tempDir('cm-ssh-pool-');
  let proxy: TcpProxy;
  let proxiedKnownHosts: string;

  beforeAll(async () => {
    if (!ssh) return;
    proxy = await TcpProxy.start(ssh.host, ssh.port);
    proxiedKnownHosts = knownHostsFor(dir.path, proxy.port, 'known_hosts_proxy');
  });
  afterAll(async () => {
    await proxy?.close();
    dir.cleanup();
  });

  const viaProxy = () => testHost('user', { port: proxy.port, knownHostsPath: proxiedKnownHosts });

  it('runs 200 concurrent execs through max 2 connections without a channel-open failure', async () => {
    const before = proxy.connections.length;
    const pool = new SshPool({ max: 2 });
    const transport = new SshTransport({ pool, host: viaProxy() });
    let peak = 0;
    pool.on('acquire', () => {
      peak = Math.max(peak, pool.stats().connections);
    });
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 200 }, (_, i) => transport.exec(['printf', '%s', `r${i}`])),
      );
      const failures = results.filter((r) => r.status === 'rejected');
      expect(failures.map((f) => (f as PromiseRejectedResult).reason?.message)).toEqual([]);
      expect(
        results.map((r) => (r as PromiseFulfilledResult<{ stdout: string }>).value.stdout),
      ).toEqual(Array.from({ length: 200 }, (_, i) => `r${i}`));
      expect(proxy.connections.length - before).toBe(2); // TCP connections really opened
      expect(peak).toBeLessThanOrEqual(2);
      const stats = pool.stats();
      expect(stats.hosts[0]?.peakConnections).toBe(2);
      expect(stats.leases).toBe(0);
      expect(stats.waiters).toBe(0);
      expect(stats.acquireLatencyMs.count).toBeGreaterThanOrEqual(200);
    } finally {
      await pool.close();
    }
  });

  it('serves waiters first in, first out', async () => {
    const pool = new SshPool({ max: 1, maxChannels: 1 });
    try {
      const first = await pool.acquire(testHost());
      const order: number[] = [];
      const waiting = [1, 2, 3, 4].map((n) =>
        pool.acquire(testHost()).then((lease) => {
          order.push(n);
          return lease;
        }),
      );
      await waitFor(() => pool.stats().waiters === 4, EVENT_TIMEOUT_MS, '4 waiters');
      first.release();
      for (const w of waiting) (await w).release();
      expect(order).toEqual([1, 2, 3, 4]);
    } finally {
      await pool.close();
    }
  });

  it('times out an acquire with E_SSH_ACQUIRE_TIMEOUT and forgets the waiter', async () => {
    const pool = new SshPool({ max: 1, maxChannels: 1 });
    try {
      const held = await pool.acquire(testHost());
      const started = Date.now();
      const error = await pool.acquire(testHost(), { timeoutMs: 200 }).catch((e: unknown) => e);
      expect(code(error)).toBe('E_SSH_ACQUIRE_TIMEOUT');
      expect(Date.now() - started).toBeGreaterThanOrEqual(190);
      expect(Date.now() - started).toBeLessThan(ACQUIRE_TIMEOUT_BOUND_MS);
      expect(pool.stats().waiters).toBe(0);
      held.release();
      expect(pool.stats().leases).toBe(0);
    } finally {
      await pool.close();
    }
  });

  it('gives up an acquire when its AbortSignal fires', async () => {
    const pool = new SshPool({ max: 1, maxChannels: 1 });
    try {
      const held = await pool.acquire(testHost());
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('user pressed Ctrl-C')), 50);
      const error = await pool.acquire(testHost(), { signal: ac.signal }).catch((e: unknown) => e);
      expect(code(error)).toBe('E_ABORTED');
      expect(pool.stats().waiters).toBe(0);
      await expect(pool.acquire(testHost(), { signal: AbortSignal.abort() })).rejects.toSatisfy(
        (e) => isCrystalMathError(e, 'E_ABORTED'),
      );
      held.release();
      // The aborted waiter did not take the freed slot.
      expect(pool.stats().leases).toBe(0);
      const again = await pool.acquire(testHost(), { timeoutMs: 1_000 });
      again.release();
    } finally {
      await pool.close();
    }
  });

  it('releases the session on every path of withSession', async () => {
    const pool = new SshPool({ max: 1, maxChannels: 2 });
    try {
      await expect(
        pool.withSession(testHost(), async () => {
          throw new Error('user code failed');
        }),
      ).rejects.toThrow('user code failed');
      expect(pool.stats().leases).toBe(0);
      const out = await pool.withSession(testHost(), (s) => s.exec(['echo', 'ok']));
      expect(out.stdout).toBe('ok\n');
      expect(pool.stats().leases).toBe(0);
      const lease = await pool.acquire(testHost());
      lease.release();
      lease.release(); // idempotent
      expect(pool.stats().leases).toBe(0);
      await expect(lease.exec(['true'])).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_VALIDATION'),
      );
    } finally {
      await pool.close();
    }
  });

  it('retires an invalidated connection once its other sessions end', async () => {
    const pool = new SshPool({ max: 1 });
    const disconnects: SshPoolEvents['disconnect'][] = [];
    pool.on('disconnect', (e) => disconnects.push(e));
    try {
      const a = await pool.acquire(testHost());
      const b = await pool.acquire(testHost());
      expect(a.connectionId).toBe(b.connectionId);
      const running = b.exec(['sh', '-c', 'sleep 0.3; echo done']);
      a.invalidate(new Error('test'));
      expect(pool.stats().hosts[0]?.retiring).toBe(1);
      expect((await running).stdout).toBe('done\n'); // not closed under the other user
      b.release();
      await waitFor(() => disconnects.length === 1, EVENT_TIMEOUT_MS, 'disconnect');
      expect(disconnects[0]?.reason).toBe('invalidated');
      const c = await pool.acquire(testHost());
      expect(c.connectionId).not.toBe(a.connectionId);
      c.release();
    } finally {
      await pool.close();
    }
  });

  for (const as of ['user', 'root'] as const) {
    it(`kills the remote process group of a timed-out or aborted exec (${as})`, async () => {
      const pool = new SshPool({ max: 1, killGraceMs: 1_000 });
      const t = new SshTransport({ pool, host: testHost(as) });
      // A duration no other test uses, matched with a pattern that does not match itself.
      const secs = as === 'user' ? '61.25' : '62.25';
      const pattern = `[s]leep ${secs}`;
      const alive = async () =>
        (
          await t.exec([
            'sh',
            '-c',
            'pgrep -f "$1" >/dev/null && echo yes || echo no',
            'sh',
            pattern,
          ])
        ).stdout.trim();
      try {
        // Connected first: the 500 ms below are the command's, not the SSH handshake's.
        await pool.warmup(testHost(as));
        const started = Date.now();
        await expect(
          t.exec(['sh', '-c', `sleep ${secs} | cat; echo survived`], { timeoutMs: 500 }),
        ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_TRANSPORT_TIMEOUT'));
        expect(Date.now() - started).toBeLessThan(EXEC_TIMEOUT_BOUND_MS);
        await waitFor(async () => (await alive()) === 'no', EVENT_TIMEOUT_MS, 'the command to die');

        const ac = new AbortController();
        setTimeout(() => ac.abort(), 300);
        await expect(t.exec(['sleep', secs], { signal: ac.signal })).rejects.toSatisfy((e) =>
          isCrystalMathError(e, 'E_ABORTED'),
        );
        await waitFor(
          async () => (await alive()) === 'no',
          EVENT_TIMEOUT_MS,
          'the aborted command to die',
        );
      } finally {
        await pool.close();
      }
    });
  }

  it('keeps the marker that carries the process group out of stderr', async () => {
    const pool = new SshPool({ max: 1 });
    const t = new SshTransport({ pool, host: testHost() });
    try {
      const chunks: Buffer[] = [];
      const r = await t.exec(['sh', '-c', 'printf "a\\036b" >&2; echo out'], {
        onStderr: (c) => chunks.push(c),
      });
      expect(r.stderr).toBe('a\x1eb');
      expect(Buffer.concat(chunks).toString()).toBe('a\x1eb');
      expect(r.stdout).toBe('out\n');
    } finally {
      await pool.close();
    }
  });

  it('closes idle connections down to min', async () => {
    const pool = new SshPool({ max: 3, min: 1, idleTimeoutMs: 300, probeIntervalMs: 0 });
    const reasons: string[] = [];
    pool.on('disconnect', (e) => reasons.push(e.reason));
    try {
      const leases = await Promise.all([1, 2, 3].map(() => pool.acquire(testHost())));
      // maxChannels 8: one connection carries all three.
      expect(pool.stats().connections).toBe(1);
      const more = await Promise.all(Array.from({ length: 14 }, () => pool.acquire(testHost())));
      expect(pool.stats().connections).toBe(3);
      for (const l of [...leases, ...more]) l.release();
      await waitFor(() => pool.stats().connections === 1, EVENT_TIMEOUT_MS, 'idle eviction');
      expect(reasons).toEqual(['idle', 'idle']);
      await sleep(500);
      expect(pool.stats().connections).toBe(1); // min is kept
    } finally {
      await pool.close();
    }
  });

  it('retires connections past maxAge without cutting a running command', async () => {
    const pool = new SshPool({ max: 1, maxAgeMs: 400, probeIntervalMs: 0 });
    const reasons: string[] = [];
    pool.on('disconnect', (e) => reasons.push(e.reason));
    try {
      const lease = await pool.acquire(testHost());
      const first = lease.connectionId;
      const r = await lease.exec(['sh', '-c', 'sleep 0.8; echo finished']);
      expect(r.stdout).toBe('finished\n');
      expect(pool.stats().hosts[0]?.retiring).toBe(1);
      lease.release();
      await waitFor(() => reasons.includes('max-age'), EVENT_TIMEOUT_MS, 'max-age close');
      const next = await pool.acquire(testHost());
      expect(next.connectionId).not.toBe(first);
      next.release();
    } finally {
      await pool.close();
    }
  });

  for (const probeMethod of ['ping', 'exec'] as const) {
    it(`probes idle connections (${probeMethod}) without handing them out meanwhile`, async () => {
      const pool = new SshPool({ max: 1, probeIntervalMs: 100, probeMethod });
      const probes: SshPoolEvents['probe'][] = [];
      pool.on('probe', (e) => probes.push(e));
      try {
        await pool.warmup(testHost());
        await waitFor(() => probes.length >= 2, EVENT_TIMEOUT_MS, 'probes');
        expect(probes.every((p) => p.ok)).toBe(true);
        const out = await pool.withSession(testHost(), (s) => s.exec(['echo', 'after probes']));
        expect(out.stdout).toBe('after probes\n');
        expect(pool.stats().probeFailures).toBe(0);
      } finally {
        await pool.close();
      }
    });
  }

  it('fails fast with E_SSH_CONNECT, then opens the circuit, then lets a trial through', async () => {
    const port = await freePort(); // nothing listens there
    const pool = new SshPool({
      circuitBreaker: { failureThreshold: 3, cooldownMs: 400 },
      reconnectBackoff: { initialMs: 10, maxMs: 20 },
    });
    const circuit: string[] = [];
    pool.on('circuit', (e) => circuit.push(e.state));
    const host = testHost('user', { port });
    try {
      for (let i = 0; i < 3; i++) {
        const started = Date.now();
        const error = await pool
          .acquire(host, { timeoutMs: CALLER_DEADLINE_MS })
          .catch((e: unknown) => e);
        expect(code(error)).toBe('E_SSH_CONNECT');
        expect(Date.now() - started).toBeLessThan(FAIL_FAST_BOUND_MS);
      }
      expect(circuit).toEqual(['open']);
      const opening = pool.acquire(host);
      expect(await settlesAtOnce(opening)).toBe(true); // refused at once, no connect attempted
      const open = await opening.catch((e: unknown) => e);
      expect(code(open)).toBe('E_SSH_CIRCUIT_OPEN');
      expect(pool.stats().hosts[0]?.circuit).toBe('open');
      await sleep(450);
      const trial = await pool.acquire(host, { timeoutMs: 5_000 }).catch((e: unknown) => e);
      expect(code(trial)).toBe('E_SSH_CONNECT');
      expect(circuit).toEqual(['open', 'half-open', 'open']);
      expect(pool.stats().hosts[0]?.connectFailures).toBe(4);
    } finally {
      await pool.close();
    }
  });

  it('counts connection attempts that fail side by side as one round', async () => {
    const port = await freePort(); // nothing listens there
    const pool = new SshPool({ reconnectBackoff: { initialMs: 200, maxMs: 30_000 } });
    const errors: SshPoolEvents['connectError'][] = [];
    const burst = new Promise<void>((resolve) => {
      pool.on('connectError', (e) => {
        errors.push(e);
        if (errors.length === 4) resolve();
      });
    });
    try {
      pool.acquire(testHost('user', { port, minConnections: 4 })).catch(() => undefined);
      await burst; // `min: 4` starts four attempts at once; all four are refused
      expect(errors.map((e) => e.consecutiveFailures)).toEqual([1, 1, 1, 1]);
      for (const e of errors) expect(e.retryInMs).toBeLessThanOrEqual(200);
    } finally {
      await pool.close();
    }
  });

  it('starts the trial connection when the cool-down ends, as announced, whatever the backoff', async () => {
    const port = await freePort();
    const COOLDOWN_MS = 300;
    const BACKOFF_INITIAL_MS = 2_000;
    // With "equal jitter" the n-th round's backoff is at least initialMs * 2^(n-1) / 2: a trial
    // that waited for it would come no sooner than these after the failure before it. Each
    // trial must come before them (and not before the cool-down ends): that, not a tight
    // margin around 300 ms a busy machine can exceed, is what tells cool-down from backoff.
    const MIN_BACKOFF_ROUND_2_MS = BACKOFF_INITIAL_MS; // 4 000 / 2
    const MIN_BACKOFF_ROUND_3_MS = 2 * BACKOFF_INITIAL_MS; // 8 000 / 2
    // The patient caller must outlive the first backoff (<= 2 s) and two trials however busy
    // the machine is; the test ends at its timeout.
    const PATIENT_TIMEOUT_MS = 10_000;
    const pool = new SshPool({
      circuitBreaker: { failureThreshold: 2, cooldownMs: COOLDOWN_MS, maxCooldownMs: COOLDOWN_MS },
      reconnectBackoff: { initialMs: BACKOFF_INITIAL_MS, maxMs: 60_000 }, // each past the cool-down
    });
    const attempts: number[] = [];
    pool.on('connectError', () => attempts.push(Date.now()));
    const opened = new Promise<void>((resolve) =>
      pool.on('circuit', (e) => e.state === 'open' && resolve()),
    );
    const host = testHost('user', { port });
    try {
      const first = await pool.acquire(host).catch((e: unknown) => e);
      expect(code(first)).toBe('E_SSH_CONNECT');
      // No live connection, and the next attempt is not due before this caller's deadline:
      // it gets the last connection error at once.
      const retrying = pool.acquire(host, { timeoutMs: 100 });
      expect(await settlesAtOnce(retrying)).toBe(true);
      const again = await retrying.catch((e: unknown) => e);
      expect(again).toBe(first);
      expect(attempts).toHaveLength(1);
      // A caller that asked to wait stays queued through failures, until its own timeout.
      const patient = pool
        .acquire(host, { timeoutMs: PATIENT_TIMEOUT_MS, waitForConnection: true })
        .catch((e: unknown) => e);
      await opened; // the second round (after the backoff) opened the circuit
      const open = await pool.acquire(host).catch((e: unknown) => e);
      const announcedAt = Date.now();
      expect(code(open)).toBe('E_SSH_CIRCUIT_OPEN');
      const retryInMs = isCrystalMathError(open) ? Number(open.details.retryInMs) : Number.NaN;
      expect(retryInMs).toBeLessThanOrEqual(COOLDOWN_MS);
      await waitFor(() => attempts.length >= 4, EVENT_TIMEOUT_MS, 'two trials');
      // Each trial starts when the cool-down ends (300 ms), not after the backoff (>= 2 s,
      // then >= 4 s): not before the announced time, and before the backoff would allow.
      const [, opening, trial1, trial2] = attempts as [number, number, number, number];
      // Not early: load only delays a timer, so the 100 ms the check always allowed stay.
      expect(trial1).toBeGreaterThan(announcedAt + retryInMs - 100);
      expect(trial1 - opening).toBeLessThan(MIN_BACKOFF_ROUND_2_MS);
      expect(trial2 - trial1).toBeLessThan(MIN_BACKOFF_ROUND_3_MS);
      expect(code(await patient)).toBe('E_SSH_ACQUIRE_TIMEOUT');
    } finally {
      await pool.close();
    }
  });

  it('reports a host that accepts TCP but never speaks SSH as a connect timeout', async () => {
    expect(new SshPool().options.connectTimeoutMs).toBe(10_000);
    const accepted: Socket[] = [];
    const silent = createServer((socket) => accepted.push(socket)); // accepts, never greets
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const address = silent.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const pool = new SshPool({ connectTimeoutMs: 500 });
    try {
      const started = Date.now();
      const error = await pool
        .acquire(testHost('user', { port }), { timeoutMs: CALLER_DEADLINE_MS })
        .catch((e: unknown) => e);
      expect(code(error)).toBe('E_SSH_TIMEOUT');
      expect(String((error as Error).message)).toMatch(/connectTimeoutMs.*SSH greeting/);
      expect(Date.now() - started).toBeLessThan(FAIL_FAST_BOUND_MS);
    } finally {
      await pool.close();
      for (const socket of accepted) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('limits new connections per host per interval', async () => {
    const pool = new SshPool({
      max: 4,
      maxChannels: 1,
      connectRateLimit: { limit: 2, intervalMs: 1_500 },
    });
    const opened: number[] = [];
    const started = Date.now();
    pool.on('connect', () => opened.push(Date.now() - started));
    try {
      const leases = await Promise.all(
        [1, 2, 3, 4].map(() => pool.acquire(testHost(), { timeoutMs: 10_000 })),
      );
      expect(opened).toHaveLength(4);
      const early = opened.filter((t) => t < 1_400);
      expect(early.length).toBeLessThanOrEqual(2);
      expect(opened[3]).toBeGreaterThanOrEqual(1_400);
      for (const l of leases) l.release();
    } finally {
      await pool.close();
    }
  });

  it('drain() lets sessions in use finish, refuses new ones, then closes', async () => {
    const pool = new SshPool({ max: 1 });
    try {
      const lease = await pool.acquire(testHost());
      const running = lease.exec(['sh', '-c', 'sleep 0.3; echo drained']);
      let drained = false;
      const draining = pool.drain().then(() => {
        drained = true;
      });
      await expect(pool.acquire(testHost())).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_SSH_POOL_CLOSED'),
      );
      expect((await running).stdout).toBe('drained\n');
      await sleep(50);
      expect(drained).toBe(false);
      lease.release();
      await draining;
      expect(pool.stats()).toMatchObject({ closed: true, connections: 0 });
    } finally {
      await pool.close();
    }
  });

  it('close() fails waiters and, after its timeout, sessions still running', async () => {
    const pool = new SshPool({ max: 1, maxChannels: 1, closeTimeoutMs: 300 });
    const lease: SshLease = await pool.acquire(testHost());
    const running = lease.exec(['sleep', '30']).catch((e: unknown) => e);
    const waiting = pool.acquire(testHost()).catch((e: unknown) => e);
    await waitFor(() => pool.stats().waiters === 1, EVENT_TIMEOUT_MS, 'the waiter');
    const started = Date.now();
    await pool.close();
    expect(Date.now() - started).toBeLessThan(CLOSE_BOUND_MS);
    expect(code(await waiting)).toBe('E_SSH_POOL_CLOSED');
    expect(code(await running)).toBe('E_SSH_POOL_CLOSED');
    expect(pool.stats().connections).toBe(0);
    await expect(pool.acquire(testHost())).rejects.toSatisfy((e) =>
      isCrystalMathError(e, 'E_SSH_POOL_CLOSED'),
    );
    await pool.close(); // idempotent
  });

  it('rejects bad options and host configs with named fields', () => {
    expect(() => new SshPool({ max: 0 })).toThrow(/options\.max/);
    expect(() => new SshPool({ min: 3, max: 2 })).toThrow(/options\.min/);
    const pool = new SshPool();
    return Promise.all([
      expect(pool.acquire({ host: '', username: 'x' })).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_VALIDATION'),
      ),
      expect(pool.acquire({ host: 'h', username: 'x', port: 70_000 })).rejects.toThrow(
        /host\.port/,
      ),
    ]).finally(() => pool.close());
  });
});
