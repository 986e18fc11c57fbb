// PostgreSQL-only behaviour of the store, beyond the shared suite (queue.test.ts runs on both
// stores): exact limits under concurrent claims, events readable in commit order while other
// connections write, LISTEN/NOTIFY wake-ups, and three scheduler processes (the built package)
// on one database, checked from a journal the runner keeps. Needs the testbed's PostgreSQL.

import { type ChildProcess, fork } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireService } from '@crystalmath/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openQueue } from '../open-queue.js';
import { PostgresStore, postgresStore } from '../store/postgres/postgres-store.js';
import type { NewJob, StoreFactory } from '../store/store.js';
import type { Job, Queue } from '../types.js';
import { NoopRunner, spec, tempDir } from './helpers.js';
import { type ScratchDatabase, scratchDatabase } from './postgres-kind.js';

const service = requireService('postgres');
const SOAK_MS = Number(process.env.CM_QUEUE_PG_SOAK_MS ?? 60_000);
/** How long a NOTIFY may take to reach another connection before the test fails. */
const NOTIFY_TIMEOUT_MS = 30_000;
const CHILD = fileURLToPath(new URL('./fixtures/pg-scheduler-child.mjs', import.meta.url));
const DIST = fileURLToPath(new URL('../../dist/index.js', import.meta.url));

/** A store-level job row to insert: no dependencies unless given. */
const newJob = (target: string): NewJob => ({
  name: 'j',
  target,
  priority: 0,
  spec: '{}',
  workflowKey: null,
  maxAttempts: 1,
  backoff: null,
  runAt: 0,
  idempotencyKey: null,
  tags: [],
  metadata: '{}',
  deps: [],
});

let n = 0;
const schemaName = () => `t_${process.pid}_${n++}`;

describe('postgresStore options', () => {
  it('rejects bad options with a typed error naming the field', () => {
    expect(() => postgresStore({ connectionString: 'mysql://x' })).toThrow(
      expect.objectContaining({ code: 'E_VALIDATION', field: 'store.connectionString' }),
    );
    expect(() => postgresStore({ connectionString: 'postgres://h/db', poolSize: 0 })).toThrow(
      expect.objectContaining({ field: 'store.poolSize' }),
    );
    expect(() =>
      postgresStore({ connectionString: 'postgres://h/db', schema: 'x; drop table y' }),
    ).toThrow(expect.objectContaining({ field: 'store.schema' }));
    expect(() => postgresStore({ connectionString: 'postgres://h/db', vacuumEvery: -1 })).toThrow(
      expect.objectContaining({ field: 'store.vacuumEvery' }),
    );
  });

  it('describes the database without its password', () => {
    const f = postgresStore({ connectionString: 'postgres://u:s3cret@db.lan:5432/jobs' });
    expect(f.description).toBe('postgres://u@db.lan:5432/jobs');
    expect(f.dialect).toBe('postgres');
  });
});

describe.skipIf(!service)('PostgreSQL store', () => {
  let db: ScratchDatabase;
  beforeAll(async () => {
    db = await scratchDatabase(service!.connectionString);
  });
  afterAll(async () => {
    await db?.drop();
  });

  const openStore = (schema: string, poolSize = 4) =>
    (
      postgresStore({ connectionString: db.connectionString, schema, poolSize }) as StoreFactory
    ).open();

  it('vacuums cm_jobs itself, in the background, every vacuumEvery claimed jobs', async () => {
    const schema = schemaName();
    const queries: string[] = [];
    const store = await (
      postgresStore({
        connectionString: db.connectionString,
        schema,
        vacuumEvery: 5,
        onQuery: (sql) => queries.push(sql),
      }) as StoreFactory
    ).open();
    const stats = new pg.Client({ connectionString: db.connectionString });
    await stats.connect();
    const vacuums = async () => {
      const r = await stats.query<{ n: number }>(
        'select vacuum_count::int n from pg_stat_user_tables where schemaname = $1 and relname = $2',
        [schema, 'cm_jobs'],
      );
      return r.rows[0]?.n ?? 0;
    };
    try {
      await store.ensureTargets([{ name: 'a' }]);
      await store.insertJobs(
        Array.from({ length: 8 }, () => newJob('a')),
        null,
        1,
      );
      expect(await store.claim('o', 2, 60_000, 4, ['a'])).toHaveLength(4);
      expect(queries.filter((q) => q.startsWith('vacuum'))).toHaveLength(0);
      // The fifth claimed job starts one; the claim does not wait for it.
      expect(await store.claim('o', 2, 60_000, 4, ['a'])).toHaveLength(4);
      expect(queries.filter((q) => q.startsWith('vacuum'))).toHaveLength(1);
    } finally {
      // close() waits for the background VACUUM.
      await store.close();
    }
    try {
      // The VACUUM's statistics are flushed as it ends; read them until they show it (deadline).
      const deadline = Date.now() + 10_000;
      while ((await vacuums()) < 1 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(await vacuums()).toBeGreaterThanOrEqual(1);
    } finally {
      await stats.end();
    }
  });

  it('concurrent claims from several connections never exceed a target limit', async () => {
    const schema = schemaName();
    const stores = await Promise.all([1, 2, 3, 4].map(() => openStore(schema)));
    try {
      const [first] = stores;
      await first!.ensureTargets([{ name: 'a', maxConcurrent: 3 }]);
      const job = newJob('a');
      await first!.insertJobs(
        Array.from({ length: 40 }, () => job),
        null,
        1,
      );
      for (let round = 0; round < 5; round++) {
        const claims = await Promise.all(
          stores.flatMap((s, i) =>
            [0, 1].map((k) => s.claim(`o${i}-${k}`, 10 + round, 60_000, 10, ['a'])),
          ),
        );
        const ids = claims.flat().map((r) => r.id);
        expect(new Set(ids).size).toBe(ids.length);
        // Round 0 fills the three slots; later rounds find them taken.
        expect(ids.length).toBe(round === 0 ? 3 : 0);
        expect((await first!.targets())[0]).toMatchObject({ name: 'a', active: 3 });
      }
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('a reader following the event log from another connection misses nothing (seq order is commit order)', async () => {
    const schema = schemaName();
    const writers = await Promise.all([1, 2, 3].map(() => openStore(schema)));
    const reader = await openStore(schema, 1);
    try {
      const job = newJob('a');
      const seen: number[] = [];
      let done = false;
      const follow = (async () => {
        let after = 0;
        while (!done || after < (await reader.lastEventSeq())) {
          for (const e of await reader.events(after, 1000)) {
            seen.push(e.seq);
            after = e.seq;
          }
        }
      })();
      await Promise.all(
        writers.map(async (w) => {
          for (let i = 0; i < 60; i++) await w.insertJobs([job, job], null, i);
        }),
      );
      done = true;
      await follow;
      const all = (await reader.events(0, 10_000)).map((e) => e.seq);
      expect(all).toHaveLength(360);
      expect(seen).toEqual(all);
    } finally {
      await Promise.all([...writers, reader].map((s) => s.close()));
    }
  });

  it('wakes a subscriber in another connection on enqueue and on dependency release', async () => {
    const schema = schemaName();
    const sent: string[] = [];
    const a = await (
      postgresStore({
        connectionString: db.connectionString,
        schema,
        onQuery: (sql) => sent.push(sql),
      }) as StoreFactory
    ).open();
    const b = await openStore(schema);
    let wakes = 0;
    let onWake = (): void => undefined;
    const unsubscribe = await b.subscribe!(() => {
      wakes++;
      onWake();
    });
    // Resolves true at the first wake after `before`; false only after NOTIFY_TIMEOUT_MS.
    const waitWake = (before: number) =>
      new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(wakes > before), NOTIFY_TIMEOUT_MS);
        onWake = () => {
          if (wakes <= before) return;
          clearTimeout(timer);
          resolve(true);
        };
        onWake();
      });
    try {
      await a.ensureTargets([{ name: 't' }]);
      const base = newJob('t');
      let w = wakes;
      const { ids } = await a.insertJobs(
        [
          { ...base, deps: [] },
          { ...base, deps: [{ parent: { index: 0 }, condition: 'afterok' }] },
        ],
        null,
        1,
      );
      expect(await waitWake(w)).toBe(true);
      const [claimed] = await a.claim('o', 2, 60_000, 1, ['t']);
      sent.length = 0;
      await a.recordSubmitted(
        [{ id: claimed!.id, attempt: 1, handle: { kind: 'x', jobKey: 'k', data: {} } }],
        'o',
        3,
      );
      w = wakes;
      // No wake while nothing became ready: the transaction sent no NOTIFY (checked at the
      // source, where no wait for something that must not arrive is needed)...
      expect(sent.filter((sql) => /notify/i.test(sql))).toEqual([]);
      expect(wakes).toBe(w);
      await a.applyStatuses(
        [{ id: ids[0]!, attempt: 1, status: { state: 'succeeded', exitCode: 0 } }],
        () => null,
        4,
      );
      // ... and one when the parent's end released the child.
      expect(await waitWake(w)).toBe(true);
      expect((await a.getJobs([ids[1]!]))[0]?.state).toBe('ready');
    } finally {
      await unsubscribe();
      await a.close();
      await b.close();
    }
  });

  it('is an instance of the exported store class with a stable store id across opens', async () => {
    const schema = schemaName();
    const a = await openStore(schema);
    const b = await openStore(schema);
    expect(a).toBeInstanceOf(PostgresStore);
    expect(a.storeId).toMatch(/^[0-9a-f]{6}$/);
    expect(b.storeId).toBe(a.storeId);
    await a.close();
    await b.close();
  });

  it.skipIf(!existsSync(DIST))(
    `three scheduler processes on one database for ${SOAK_MS / 1000} s: no double submission, limits never exceeded`,
    async () => {
      const schema = schemaName();
      const limits = { a: 3, b: 2 };
      const run = tempDir('cm-queue-pg-');
      const children: ChildProcess[] = [];
      let producer: Queue | null = null;
      try {
        producer = await openQueue({
          store: postgresStore({ connectionString: db.connectionString, schema }),
          targets: {
            a: { runner: new NoopRunner(), maxConcurrent: 3 },
            b: { runner: new NoopRunner(), maxConcurrent: 2 },
          },
        });
        for (let i = 0; i < 3; i++) {
          const child = fork(
            CHILD,
            [db.connectionString, schema, run.dir, JSON.stringify(limits)],
            {
              stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
            },
          );
          children.push(child);
          await new Promise<void>((resolve, reject) => {
            child.once('message', () => resolve());
            child.once('exit', (code) => reject(new Error(`child exited early (${code})`)));
          });
        }
        // Keep work available; dependencies are released by whichever scheduler ends the parent.
        const deadline = Date.now() + SOAK_MS;
        let last: string | null = null;
        let enqueued = 0;
        while (Date.now() < deadline) {
          const ready = (await producer.counts()).byState.ready;
          if (ready < 30) {
            // One transaction per batch; its first job depends on the previous batch's last.
            const jobs: Job[] = await producer.enqueueMany(
              Array.from({ length: 20 }, (_, i) => ({
                spec: spec(`j${enqueued + i}`, [
                  'sleep',
                  String(5 + Math.floor(Math.random() * 25)),
                ]),
                target: i % 3 === 0 ? 'b' : 'a',
                ...(i === 0 && last ? { dependsOn: [last] } : {}),
              })),
            );
            last = jobs.at(-1)?.id ?? last;
            enqueued += jobs.length;
          }
          await new Promise((r) => setTimeout(r, 50));
        }
        await producer.drain({ timeoutMs: 60_000 });
        for (const c of children) c.kill('SIGTERM');
        await Promise.all(
          children.map(
            (c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r))),
          ),
        );

        const journal = readFileSync(join(run.dir, 'journal.ndjson'), 'utf8')
          .trim()
          .split('\n')
          .map(
            (l) =>
              JSON.parse(l) as {
                ev: string;
                key: string;
                target?: string;
                at: number;
                pid: number;
              },
          );
        expect(journal.filter((e) => e.ev === 'duplicate' || e.ev === 'error')).toEqual([]);
        const submits = journal.filter((e) => e.ev === 'submit');
        const ends = new Map(journal.filter((e) => e.ev === 'end').map((e) => [e.key, e.at]));
        // Zero double submissions: one submit per key and per job id.
        const jobIds = submits.map((e) => e.key.replace(/^cm-[0-9a-f]+-(\d+)-a\d+$/, '$1'));
        expect(new Set(submits.map((e) => e.key)).size).toBe(submits.length);
        expect(new Set(jobIds).size).toBe(submits.length);
        const counts = await producer.counts();
        expect(counts.total).toBe(enqueued);
        expect(counts.byState.succeeded).toBe(enqueued);
        expect(submits.length).toBe(enqueued);
        // Every scheduler took part.
        expect(new Set(submits.map((e) => e.pid)).size).toBe(3);
        // Per target, the runner-side intervals [submit, end] never overlap more than the limit
        // (ends first on equal timestamps); the limit is reached, so the check can fail.
        for (const [target, limit] of Object.entries(limits)) {
          const points = submits
            .filter((e) => e.target === target)
            .flatMap((e) => [
              { at: e.at, d: 1 },
              { at: ends.get(e.key) ?? Number.POSITIVE_INFINITY, d: -1 },
            ])
            .sort((x, y) => x.at - y.at || x.d - y.d);
          let live = 0;
          let peak = 0;
          for (const p of points) {
            live += p.d;
            peak = Math.max(peak, live);
          }
          expect(peak, `target ${target}`).toBe(limit);
        }
        console.log(
          `[queue pg soak] ${enqueued} jobs in ${SOAK_MS} ms over 3 schedulers (${submits.filter((e) => e.pid === submits[0]!.pid).length} by the first)`,
        );
      } finally {
        for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
        await producer?.close();
        run.cleanup();
      }
    },
    SOAK_MS + 120_000,
  );
});
