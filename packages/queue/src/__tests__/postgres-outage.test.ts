// PostgreSQL stopped for 20 s under a running scheduler: it backs off (few connection attempts,
// almost no CPU), says so once (store:down, queue.health()), and resumes within about a second
// of the server's return. Connection attempts are counted by a TCP relay in front of the server.

import { connect, createServer, type Server, type Socket } from 'node:net';
import {
  isCrystalMathError,
  type RunnerHandle,
  type RunnerJob,
  type RunnerStatus,
} from '@crystalmath/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openQueue } from '../open-queue.js';
import { STORE_BACKOFF } from '../scheduler.js';
import { postgresStore } from '../store/postgres/postgres-store.js';
import type { StoreHealth } from '../types.js';
import {
  createDatabase,
  type PrivatePostgres,
  postgresBin,
  privatePostgres,
} from './private-postgres.js';

const DOWN_MS = 20_000;
const RESUME_TIMEOUT_MS = 30_000;
/**
 * Work must come back within this of the server's return. The promise is "about a second",
 * which STORE_BACKOFF's cap keeps (checked on the constant below, and the measured figure is
 * printed); the timed bound is generous so a busy machine (CI: 2 shared cores) cannot fail it,
 * yet it still fails a backoff that grew past its cap or one capped at a common 10 s.
 */
const RESUME_BOUND_MS = 5_000;

/** A loopback TCP relay to `port` that counts the connections it accepts. */
async function relay(port: number): Promise<{ port: number; connections: number; close(): void }> {
  const sockets = new Set<Socket>();
  const state = { port: 0, connections: 0, close: (): void => undefined };
  const server: Server = createServer((client) => {
    state.connections++;
    const upstream = connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as { port: number }).port;
  state.close = () => {
    server.close();
    for (const s of sockets) s.destroy();
  };
  return state;
}

/** Jobs run for `ms` of wall time from their submit, as a process on a target would. */
class TimedRunner {
  readonly kind = 'timed';
  readonly capabilities = {
    find: true,
    collect: false,
    cleanup: false,
    tail: false,
    minPollIntervalMs: 0,
  };
  readonly ends = new Map<string, number>();
  async submit(job: RunnerJob): Promise<RunnerHandle> {
    if (this.ends.has(job.key)) throw new Error(`[timed] duplicate key ${job.key}`);
    this.ends.set(job.key, Date.now() + Number(job.spec.argv?.[1] ?? 0));
    return { kind: 'timed', jobKey: job.key, data: {} };
  }
  async poll(handles: readonly RunnerHandle[]): Promise<RunnerStatus[]> {
    return handles.map((h) =>
      Date.now() >= (this.ends.get(h.jobKey) ?? 0)
        ? { state: 'succeeded', exitCode: 0 }
        : { state: 'running' },
    );
  }
  async cancel(): Promise<void> {}
  async find(key: string): Promise<RunnerHandle | null> {
    return this.ends.has(key) ? { kind: 'timed', jobKey: key, data: {} } : null;
  }
}

describe.skipIf(!postgresBin())('PostgreSQL outage', () => {
  let server: PrivatePostgres;
  let url: string;
  beforeAll(async () => {
    server = await privatePostgres();
    url = await createDatabase(server.connectionString, 'cm_outage');
  }, 60_000);
  afterAll(async () => {
    await server?.destroy();
  });

  it(
    'stopped 20 s: under 2 connection attempts/s and 5 % of a core while down, work again within the capped backoff (about 1 s)',
    async () => {
      const proxy = await relay(server.port);
      const u = new URL(url);
      u.port = String(proxy.port);
      const runner = new TimedRunner();
      const logs: string[] = [];
      const queue = await openQueue({
        store: postgresStore({ connectionString: u.toString(), poolSize: 4 }),
        targets: { t: { runner } },
        scheduler: { tickMs: 200, pollIntervalMs: 50 },
        logger: {
          warn: (m, f) => logs.push(`${m} ${JSON.stringify(f)}`),
          error: (m, f) => logs.push(`${m} ${JSON.stringify(f)}`),
          info: (m, f) => logs.push(`${m} ${JSON.stringify(f)}`),
        },
      });
      const changes: StoreHealth[] = [];
      queue.on('store:down', (h) => changes.push(h));
      queue.on('store:up', (h) => changes.push(h));
      try {
        // A job that ends on its target while the store is down.
        const job = await queue.enqueue({ name: 'long', argv: ['sleep', '3000'] }, { target: 't' });
        const running = new Promise<void>((resolve) => {
          const on = (e: { jobId: string; to: string }) => {
            if (e.jobId === job.id && e.to === 'running') resolve();
          };
          queue.on('job:state', on);
        });
        await queue.start();
        await running;

        const down = new Promise<void>((resolve) => queue.on('store:down', () => resolve()));
        await server.stop();
        await down; // the first failed round (at most one tick away)
        const attempts0 = proxy.connections;
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        expect(queue.health().store.state).toBe('down');
        const enqueueWhileDown = await queue
          .enqueue({ name: 'x', argv: ['true'] }, { target: 't' })
          .then(
            () => null,
            (e: unknown) => e,
          );
        await new Promise((r) => setTimeout(r, DOWN_MS)); // the fault's length, not a wait for a condition
        const cpu = process.cpuUsage(cpu0);
        const wall = performance.now() - t0;
        const attempts = proxy.connections - attempts0;
        const health = queue.health();

        const ended = new Promise<number>((resolve) => {
          queue.on('job:state', (e) => {
            if (e.jobId === job.id && e.to === 'succeeded') resolve(performance.now());
          });
        });
        await server.start();
        const back = performance.now();
        const resumedAt = await Promise.race([
          ended,
          new Promise<number>((_, reject) =>
            setTimeout(
              () => reject(new Error('no work after the server came back')),
              RESUME_TIMEOUT_MS,
            ),
          ),
        ]);
        const cpuShare = (cpu.user + cpu.system) / 1000 / wall;
        console.log(
          `[pg outage] ${attempts} connection attempts in ${(wall / 1000).toFixed(1)} s (${((attempts * 1000) / wall).toFixed(2)}/s), CPU ${(cpuShare * 100).toFixed(2)} % of a core, work again ${(resumedAt - back).toFixed(0)} ms after the server's return, ${logs.length} log lines`,
        );
        expect(isCrystalMathError(enqueueWhileDown, 'E_STORE')).toBe(true);
        expect((enqueueWhileDown as Error).message).toContain(`127.0.0.1:${proxy.port}`);
        expect(JSON.stringify(enqueueWhileDown)).not.toContain(server.password);
        expect(health.store.state).toBe('down');
        expect(health.store.failures).toBeGreaterThan(1);
        expect(attempts / (wall / 1000)).toBeLessThanOrEqual(2);
        expect(cpuShare).toBeLessThan(0.05);
        // The longest store backoff (cap plus jitter) leaves work resuming within 1 s.
        expect(STORE_BACKOFF.maxMs * (1 + STORE_BACKOFF.jitter)).toBeLessThan(1_000);
        expect(resumedAt - back).toBeLessThan(RESUME_BOUND_MS);
        expect(changes.map((c) => c.state)).toEqual(['down', 'up']);
        expect(queue.health().store.state).toBe('up');
        expect(logs.length).toBeLessThan(10);
        expect(logs.join('\n')).not.toContain(server.password);
      } finally {
        await queue.close();
        proxy.close();
      }
    },
    DOWN_MS + 90_000,
  );
});
