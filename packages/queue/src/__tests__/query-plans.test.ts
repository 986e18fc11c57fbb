// SQLite query plans: every statement the queue runs against cm_jobs, captured from a real
// workload, must reach its rows through an index. A partial index is only used when the query
// repeats its predicate, and a predicate spelled another way silently turns into a full scan:
// with 100,000 finished jobs in the table that is the difference between microseconds and
// milliseconds per scheduling round.

import Database from 'better-sqlite3';
import { expect, it } from 'vitest';
import { NoopRunner, open, STORES, spec } from './helpers.js';

/** The plan of `sql`, binding nulls for however many parameters it has. */
function plan(db: Database.Database, sql: string): string[] {
  for (let n = 0; n <= 40; n++) {
    try {
      const rows = db.prepare(`explain query plan ${sql}`).all(...Array(n).fill(null));
      return (rows as { detail: string }[]).map((r) => r.detail);
    } catch (error) {
      if (!/too few|missing named|parameter/i.test((error as Error).message)) throw error;
    }
  }
  throw new Error(`cannot bind the parameters of: ${sql}`);
}

/** The steps of `sql`'s plan that read cm_jobs (or an alias of it) with no index at all. */
function fullScans(db: Database.Database, sql: string): string[] {
  return plan(db, sql).filter(
    (step) => /^SCAN (cm_jobs|j|c|p)\b/.test(step) && !/USING (COVERING )?INDEX/.test(step),
  );
}

// Whole-table reads that are meant to be whole-table reads: `counts()` (one row per state and
// target) and prune's sweep over finished jobs ordered by the ended_at index.
const FULL_READS = [/^select state, target, count\(\*\)/i];

it('every statement on cm_jobs uses an index (SQLite)', async () => {
  const store = await STORES[0]!.make();
  const statements = new Set<string>();
  const runner = new NoopRunner();
  const queue = await open(store, {
    targets: { t: { runner } },
    onQuery: (sql) => statements.add(sql),
  });
  try {
    const a = await queue.enqueue(spec('a'), { target: 't', idempotencyKey: 'k', tags: ['x'] });
    await queue.enqueue(spec('b'), { target: 't', dependsOn: [a.id] });
    await queue.submitWorkflow({
      name: 'w',
      target: 't',
      jobs: { p: { spec: spec('p') }, q: { spec: spec('q'), dependsOn: ['p'] } },
    });
    const c = await queue.enqueue(spec('c'), { target: 't' });
    await queue.cancel(c.id);
    for (let i = 0; i < 10; i++) await queue.tick();
    await queue.retry(c.id);
    await queue.tick();
    await queue.counts();
    await queue.targets();
    await queue.list({ state: ['succeeded'], tag: 'x', limit: 5 });
    await queue.prune({ olderThanMs: 0 });
  } finally {
    await queue.close();
  }
  const db = new Database((store.spec as { path: string }).path, { readonly: true });
  try {
    const scans: string[] = [];
    for (const sql of statements) {
      if (!/cm_jobs/.test(sql) || !/^\s*(select|update|delete|with)/i.test(sql)) continue;
      if (FULL_READS.some((r) => r.test(sql.trim()))) continue;
      for (const step of fullScans(db, sql)) scans.push(`${step}  <=  ${sql.replace(/\s+/g, ' ')}`);
    }
    // The check itself sees a scan when there is one.
    expect(fullScans(db, 'select * from cm_jobs where name = ?')).toEqual(['SCAN cm_jobs']);
    expect(
      fullScans(db, "select * from cm_jobs where state in ('queued', 'running', 'failed')"),
    ).not.toEqual([]);
    expect(statements.size).toBeGreaterThan(10);
    expect(scans).toEqual([]);
  } finally {
    db.close();
    await store.cleanup();
  }
});
