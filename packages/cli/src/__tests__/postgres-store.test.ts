// The CLI on a PostgreSQL store (the testbed's): the same commands, a scheduler in another
// process, and `watch` reading the event log from PostgreSQL.

import { rm } from 'node:fs/promises';
import { requireService } from '@crystalmath/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crystalmath, project } from './cli-helpers.js';
import { type Spawned, startScheduler } from './process-helpers.js';

const service = requireService('postgres');

describe.skipIf(!service)('crystalmath on a PostgreSQL store', () => {
  const database = `cm_cli_${process.pid}_${Date.now().toString(36)}`;
  let dir: string;
  let run: Spawned;
  const admin = (): pg.Client => new pg.Client({ connectionString: service!.connectionString });

  beforeAll(async () => {
    const c = admin();
    await c.connect();
    await c.query(`create database ${database}`);
    await c.end();
    const url = new URL(service!.connectionString);
    url.pathname = `/${database}`;
    dir = await project(`store: { postgres: "${url}" }
defaultTarget: local
scheduler: { tickMs: 50, pollIntervalMs: 100 }
targets:
  local: { type: local, root: runs, maxConcurrent: 2 }
`);
    run = await startScheduler(dir, 20_000);
  });
  afterAll(async () => {
    run?.child.kill('SIGTERM');
    await run?.exited;
    const c = admin();
    await c.connect();
    await c.query(`drop database if exists ${database} with (force)`);
    await c.end();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('submits, runs and shows jobs; watch reads the events; no password in output', async () => {
    const r = await crystalmath(dir, ['submit', '--wait', '--json', '--', 'sh', '-c', 'echo pg']);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { state: string }).state).toBe('succeeded');
    const watch = await crystalmath(dir, ['watch', '--once']);
    expect(watch.code).toBe(0);
    expect(watch.stdout).toMatch(/postgres/);
    expect(watch.stdout).toMatch(/sh {2}\w+ → succeeded/);
    expect(watch.stdout).not.toContain(`:${service!.password}@`); // the store is described without credentials
  });
});
