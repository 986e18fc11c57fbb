// A scheduler process on a PostgreSQL server of the test's own, whose backends are terminated
// and which is restarted while jobs run: the process never dies, no job is lost or submitted
// twice, every job ends. Jobs are journaled by the runner (fixtures/pg-scheduler-child.mjs).

import { type ChildProcess, fork } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openQueue } from '../open-queue.js';
import { postgresStore } from '../store/postgres/postgres-store.js';
import type { Queue } from '../types.js';
import { NoopRunner, tempDir } from './helpers.js';
import {
  createDatabase,
  type PrivatePostgres,
  postgresBin,
  privatePostgres,
} from './private-postgres.js';

const JOBS = 200;
const TERMINATIONS = 20;
const RESTARTS = 10;
const DRAIN_TIMEOUT_MS = 90_000;
const PROGRESS_TIMEOUT_MS = 30_000;

const child = join(import.meta.dirname, 'fixtures', 'pg-scheduler-child.mjs');
const built = existsSync(join(import.meta.dirname, '..', '..', 'dist', 'index.js'));

describe.skipIf(!postgresBin() || !built)('PostgreSQL connection faults', () => {
  let server: PrivatePostgres;
  let url: string;
  const t = tempDir('cm-pg-faults-');
  beforeAll(async () => {
    server = await privatePostgres();
    url = await createDatabase(server.connectionString, 'cm_faults');
  }, 60_000);
  afterAll(async () => {
    await server?.destroy();
    t.cleanup();
  });

  it('backends terminated 20 times and the server restarted 10 times: no exit, none lost, none twice', async () => {
    const producer: Queue = await openQueue({
      store: postgresStore({ connectionString: url, schema: 'q' }),
      targets: { a: { runner: new NoopRunner() }, b: { runner: new NoopRunner() } },
    });
    const jobs = await producer.enqueueMany(
      Array.from({ length: JOBS }, (_, i) => ({
        spec: { name: `j${i}`, argv: ['sleep', String(100 + (i % 7) * 40)] },
        target: i % 2 ? 'a' : 'b',
      })),
    );
    // The producer's pool only reads from here on.
    const journal = join(t.dir, 'journal.ndjson');
    const proc: ChildProcess = fork(
      child,
      [url, 'q', t.dir, JSON.stringify({ a: 4, b: 4 }), JSON.stringify({ leaseMs: 4_000 })],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    const exits: (number | null)[] = [];
    proc.on('exit', (code) => exits.push(code));
    await new Promise<void>((resolve, reject) => {
      proc.once('message', () => resolve());
      proc.once('exit', (code) => reject(new Error(`scheduler exited ${code}`)));
    });
    const lines = () =>
      existsSync(journal) ? readFileSync(journal, 'utf8').split('\n').length : 0;
    /** Waits for the journal to grow (the scheduler made progress), or for the end of the work. */
    const progress = async (): Promise<void> => {
      const from = lines();
      const deadline = Date.now() + PROGRESS_TIMEOUT_MS;
      while (lines() === from && Date.now() < deadline) {
        if (
          await producer.drain({ timeoutMs: 0 }).then(
            () => true,
            () => false,
          )
        )
          return;
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    let terminated = 0;
    for (let i = 0; i < TERMINATIONS + RESTARTS; i++) {
      await progress();
      if (i % 3 === 2) await server.restart();
      else terminated += await server.terminateBackends('cm_faults');
    }
    await producer.drain({ timeoutMs: DRAIN_TIMEOUT_MS });
    const rows = await Promise.all(jobs.map((j) => producer.get(j.id)));
    await producer.close();
    const entries = readFileSync(journal, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { ev: string; key: string; m?: string });
    const exitsDuringRun = [...exits];
    proc.kill('SIGTERM');
    await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)));

    const submits = entries.filter((e) => e.ev === 'submit');
    const jobIds = new Set(submits.map((e) => e.key.replace(/-a\d+$/, '')));
    console.log(
      `[pg faults] ${TERMINATIONS} terminations (${terminated} backends), ${RESTARTS} restarts: ${submits.length} submits, ${entries.filter((e) => e.ev === 'error').length} logged store errors, exits during the run: ${exitsDuringRun.length}`,
    );
    expect(exitsDuringRun).toEqual([]); // not one exit before our SIGTERM
    expect(entries.filter((e) => e.ev === 'duplicate')).toEqual([]);
    expect(rows.map((r) => r?.state)).toEqual(jobs.map(() => 'succeeded'));
    expect(jobIds.size).toBe(JOBS);
    expect(submits.length).toBe(JOBS); // each job submitted once: no retry needed, none twice
    expect(terminated).toBeGreaterThan(0);
    expect(JSON.stringify(entries)).not.toContain(server.password);
  }, 240_000);
});
