// The freeze test: the original tool froze for 50 s because its health check held the global
// lock during network I/O. Here 10 of a host's 12 connections stop answering (a loopback
// proxy stops forwarding) while their probes run; other callers keep acquiring and running
// commands on the healthy connections, on the same host and on another, with acquire p99
// under 5 ms; the hung connections fail their probes after probeTimeoutMs and are replaced.
//
// Acquire latency is what the pool reports for each hand-out (its 'acquire' events: from the
// call to the lease). What callers see after `await` also contains the machine's scheduling;
// it is asserted under 5 ms too when the event loop itself is not delayed by other processes
// (on a loaded 2-core machine it is reported), and always far below a freeze.

import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SshPoolEvents } from '../events.js';
import type { SshHostConfig } from '../options.js';
import { SshPool } from '../ssh-pool.js';
import {
  knownHostsFor,
  percentile,
  sleep,
  ssh,
  TcpProxy,
  tempDir,
  testHost,
  waitFor,
} from './helpers.js';

const PROBE_TIMEOUT_MS = 5_000;

describe.skipIf(!ssh)('no freeze while probes hang', () => {
  const dir = tempDir('cm-ssh-freeze-');
  let proxy: TcpProxy;
  beforeAll(async () => {
    if (ssh) proxy = await TcpProxy.start(ssh.host, ssh.port);
  });
  afterAll(async () => {
    await proxy?.close();
    dir.cleanup();
  });

  it('keeps acquire p99 under 5 ms on healthy connections and replaces the 10 hung ones', async () => {
    const proxied = testHost('user', {
      port: proxy.port,
      knownHostsPath: knownHostsFor(dir.path, proxy.port),
      minConnections: 12,
      maxConnections: 12,
    });
    const direct = testHost('user');
    const pool = new SshPool({
      max: 2,
      probeIntervalMs: 200,
      probeTimeoutMs: PROBE_TIMEOUT_MS,
      keepaliveIntervalMs: 0, // the probes, not keep-alives, must find the hung connections
      connectRateLimit: { limit: 50, intervalMs: 10_000 },
    });
    const failedProbes: SshPoolEvents['probe'][] = [];
    const handOuts: Record<string, number[]> = {};
    let measuring = false;
    pool.on('acquire', (e) => {
      if (!measuring) return;
      handOuts[e.host] ??= [];
      handOuts[e.host]?.push(e.waitMs);
    });
    const disconnects: SshPoolEvents['disconnect'][] = [];
    pool.on('probe', (e) => {
      if (!e.ok) failedProbes.push(e);
    });
    pool.on('disconnect', (e) => disconnects.push(e));
    try {
      await pool.warmup(proxied);
      await pool.warmup(direct);
      const proxiedStats = () => pool.stats().hosts.find((h) => h.host.endsWith(`:${proxy.port}`));
      await waitFor(() => proxiedStats()?.idle === 12, 30_000, '12 idle proxied connections');
      expect(proxy.connections).toHaveLength(12);

      // Stop forwarding on 10 of them; the next probe round finds them.
      const frozen = proxy.connections.slice(0, 10);
      for (const c of frozen) c.freeze();
      const frozenAt = Date.now();
      await waitFor(() => proxiedStats()?.probing === 10, 5_000, '10 probes hanging');
      expect(proxiedStats()?.idle).toBe(2);

      // Callers keep working while the probes hang, and after they fail and are replaced.
      const latencies: Record<string, number[]> = { proxied: [], direct: [] };
      const failures: string[] = [];
      let commands = 0;
      const until = frozenAt + PROBE_TIMEOUT_MS + 2_000;
      const caller = async (name: 'proxied' | 'direct', host: SshHostConfig) => {
        while (Date.now() < until) {
          const t0 = performance.now();
          const lease = await pool.acquire(host, { timeoutMs: 2_000 });
          latencies[name]?.push(performance.now() - t0);
          try {
            const r = await lease.exec(['true'], { timeoutMs: 5_000 });
            if (r.exitCode !== 0) failures.push(`${name}: exit ${r.exitCode}: ${r.stderr}`);
            commands++;
          } catch (error) {
            failures.push(`${name}: ${(error as Error).message}`);
          } finally {
            lease.release();
          }
        }
      };
      const loopDelay = monitorEventLoopDelay({ resolution: 1 });
      loopDelay.enable();
      measuring = true;
      await Promise.all([
        ...Array.from({ length: 6 }, () => caller('proxied', proxied)),
        ...Array.from({ length: 2 }, () => caller('direct', direct)),
      ]);

      measuring = false;
      loopDelay.disable();
      expect(failures).toEqual([]);
      expect(commands).toBeGreaterThan(50);
      const p99 = (values: readonly number[] | undefined) => percentile(values ?? [], 0.99);
      const report = {
        pool: Object.fromEntries(Object.entries(handOuts).map(([h, v]) => [h, p99(v)])),
        callers: { proxied: p99(latencies.proxied), direct: p99(latencies.direct) },
        eventLoopDelayP99: loopDelay.percentile(99) / 1e6,
      };
      const summary = `acquire p99 in ms: ${JSON.stringify(report)}`;
      expect(Object.keys(handOuts)).toHaveLength(2);
      // A hand-out is a continuation on the event loop: on a busy machine it cannot come sooner
      // than the loop's own delay, so the 5 ms budget is on top of that delay, measured in the
      // same window. A hand-out that waited on a hung probe would take PROBE_TIMEOUT_MS.
      const handOutBoundMs = 5 + report.eventLoopDelayP99;
      for (const values of Object.values(handOuts)) {
        expect(values.length).toBeGreaterThan(20);
        expect(p99(values), summary).toBeLessThan(handOutBoundMs);
      }
      if (report.eventLoopDelayP99 < 5) {
        expect(report.callers.proxied, summary).toBeLessThan(5);
        expect(report.callers.direct, summary).toBeLessThan(5);
      } else {
        console.warn(`[freeze test] event loop delayed by the machine; ${summary}`);
      }
      // Whatever the machine does, nobody waited anywhere near a probe timeout.
      expect(Math.max(...(latencies.proxied ?? []), ...(latencies.direct ?? []))).toBeLessThan(
        1_000,
      );

      // The hung connections failed their probes (after probeTimeoutMs), were closed and
      // replaced by new ones.
      expect(failedProbes).toHaveLength(10);
      for (const p of failedProbes)
        expect(p.durationMs).toBeGreaterThanOrEqual(PROBE_TIMEOUT_MS - 50);
      expect(disconnects.filter((d) => d.reason === 'probe-failed')).toHaveLength(10);
      await waitFor(() => frozen.every((c) => c.closed), 5_000, 'frozen sockets closed');
      await waitFor(
        () => proxiedStats()?.connections === 12 && proxiedStats()?.connecting === 0,
        30_000,
        'replacements',
      );
      expect(proxy.connections).toHaveLength(22);
      expect(proxiedStats()?.probeFailures).toBe(10);
      expect(proxiedStats()?.peakConnections).toBe(12);
      const after = await pool.withSession(proxied, (s) => s.exec(['echo', 'alive']));
      expect(after.stdout).toBe('alive\n');
    } finally {
      for (const c of proxy.connections) c.thaw();
      await pool.close();
    }
    await sleep(10);
  }, 60_000);
});
