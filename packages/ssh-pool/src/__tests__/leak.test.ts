// close() leaves nothing that keeps a process alive: a child Node process uses a pool (built
// dist) for commands, files, a timed-out command, probes, a dead host that trips the circuit
// breaker and schedules reconnects, then closes it and must exit on its own.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '@crystalmath/testkit';
import { describe, expect, it } from 'vitest';
import { ssh, testHost } from './helpers.js';

const dist = join(dirname(fileURLToPath(import.meta.url)), '../../dist/index.js');

/**
 * How long the child may take to exit after close(): generous for a loaded machine, yet well
 * below every timer the pool holds (reconnect backoff 20 s, circuit cool-down 30 s), so a
 * leaked timer, socket or interval still keeps the child alive past it and fails the test.
 */
const EXIT_GRACE_MS = 10_000;

const CHILD = `
const { SshPool, SshTransport } = await import(process.env.CM_DIST);
const host = JSON.parse(process.env.CM_HOST);
const dead = { ...host, port: Number(process.env.CM_DEAD_PORT) };
const pool = new SshPool({
  min: 1,
  max: 2,
  probeIntervalMs: 100,
  idleTimeoutMs: 60_000,
  circuitBreaker: { failureThreshold: 2, cooldownMs: 30_000 },
  reconnectBackoff: { initialMs: 20_000, maxMs: 20_000 },
});
const t = new SshTransport({ pool, host });
const outs = await Promise.all(Array.from({ length: 20 }, (_, i) => t.exec(['echo', String(i)])));
if (outs.some((o, i) => o.stdout !== i + '\\n')) throw new Error('bad output');
const file = 'cm-leak-' + process.pid;
await t.writeFile(file, 'x'.repeat(100_000));
if ((await t.readFile(file)).length !== 100_000) throw new Error('bad file');
await t.remove(file);
await t.exec(['sleep', '30'], { timeoutMs: 200 }).catch(() => undefined);
await t.exec(['sleep', '30'], { signal: AbortSignal.timeout(200) }).catch(() => undefined);
await new Promise((r) => pool.on('probe', r)); // a probe ran (its timer is live now)
for (let i = 0; i < 3; i++) await pool.acquire(dead, { timeoutMs: 500 }).catch(() => undefined);
const held = await pool.acquire(host);
const waiting = pool.acquire(host, { timeoutMs: 60_000 }).catch(() => undefined);
void waiting;
held.release();
await pool.close();
console.log('closed');
setTimeout(() => console.error('still alive:', JSON.stringify(process.getActiveResourcesInfo())), Number(process.env.CM_EXIT_GRACE_MS)).unref();
`;

describe.skipIf(!ssh)('no leak after close()', () => {
  it.skipIf(!existsSync(dist))(
    'a process that used a pool exits on its own after close()',
    async () => {
      const deadPort = await freePort();
      const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
        env: {
          ...process.env,
          CM_DIST: dist,
          CM_HOST: JSON.stringify(testHost()),
          CM_DEAD_PORT: String(deadPort),
          CM_EXIT_GRACE_MS: String(EXIT_GRACE_MS),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      let closedAt = 0;
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (!closedAt && stdout.includes('closed')) closedAt = Date.now();
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const exit = await new Promise<{ code: number | null; at: number }>((resolve) => {
        const killer = setTimeout(() => child.kill('SIGKILL'), 40_000);
        child.on('exit', (code) => {
          clearTimeout(killer);
          resolve({ code, at: Date.now() });
        });
      });
      expect(stderr).not.toContain('still alive');
      expect({ code: exit.code, stdout: stdout.trim(), stderr }).toMatchObject({
        code: 0,
        stdout: 'closed',
      });
      expect(exit.at - closedAt).toBeLessThan(EXIT_GRACE_MS);
    },
    60_000,
  );
});
