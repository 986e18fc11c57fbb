// Model-based test: fast-check drives random sequences of enqueue / workflow / cancel / pause /
// resume / runner outcomes / submit faults / a scheduler dying mid-submit / restart against
// the real queue on a real database, then checks it against a reference model and the
// persisted event log: no job lost, none submitted twice, limits never exceeded, dependents
// of a failed job skipped transitively, states moving only along legal edges.
//
// CM_QUEUE_MODEL_RUNS (default 40) sequences of up to 30 commands.

import type { RunnerHandle, RunnerJob, RunnerState } from '@crystalmath/core';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { conditionHolds, isTerminal, LEGAL_TRANSITIONS } from '../store/rules.js';
import type { EdgeCondition, FailurePolicy, Job, JobState, Queue, QueueEvent } from '../types.js';
import { envInt } from './child.js';
import { describeStores, FaultRunner, open, type TestStore } from './helpers.js';

const RUNS = envInt('CM_QUEUE_MODEL_RUNS', 40);
const LIMITS: Record<string, number | undefined> = { t1: 1, t2: 3, t3: undefined };
const TARGETS = Object.keys(LIMITS);

interface ModelJob {
  parents: { id: string; condition: EdgeCondition }[];
  policy: FailurePolicy | null;
}

interface Model {
  jobs: Map<string, ModelJob>;
  order: string[];
}

interface Real {
  store: TestStore;
  runner: FaultRunner;
  queue: Queue;
  /** Schedulers that "died" mid-submit: their submits never return. */
  dead: { queue: Queue; release(): void }[];
}

const pick = <T>(list: readonly T[], n: number): T | undefined =>
  list.length === 0 ? undefined : list[n % list.length];

function openReal(r: Pick<Real, 'store' | 'runner'>): Promise<Queue> {
  return open(r.store, {
    targets: Object.fromEntries(
      TARGETS.map((t) => [
        t,
        { runner: r.runner, ...(LIMITS[t] ? { maxConcurrent: LIMITS[t] } : {}) },
      ]),
    ),
    scheduler: { ownerId: 'model', leaseMs: 60_000, claimBatch: 4 },
  });
}

class Enqueue implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly target: string,
    readonly priority: number,
    readonly parents: readonly { n: number; condition: EdgeCondition }[],
    readonly maxAttempts: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const deps = [...new Map(this.parents.map((p) => [pick(m.order, p.n), p])).entries()]
      .filter(([id]) => id !== undefined)
      .map(([id, p]) => ({ job: id!, condition: p.condition }));
    const job = await r.queue.enqueue(
      { name: 'm', argv: ['true'] },
      {
        target: this.target,
        priority: this.priority,
        dependsOn: deps,
        maxAttempts: this.maxAttempts,
        backoff: { initialMs: 0 },
      },
    );
    m.jobs.set(job.id, {
      parents: deps.map((d) => ({ id: d.job, condition: d.condition })),
      policy: null,
    });
    m.order.push(job.id);
  }
  toString = () => `enqueue(${this.target}, p${this.priority}, ${JSON.stringify(this.parents)})`;
}

class Workflow implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly size: number,
    readonly edges: readonly { child: number; parent: number; condition: EdgeCondition }[],
    readonly policy: FailurePolicy,
    readonly target: string,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const jobs: Record<
      string,
      {
        spec: { name: string; argv: string[] };
        dependsOn: { job: string; condition: EdgeCondition }[];
      }
    > = {};
    for (let i = 0; i < this.size; i++)
      jobs[`k${i}`] = { spec: { name: `w${i}`, argv: ['true'] }, dependsOn: [] };
    for (const e of this.edges) {
      const child = e.child % this.size;
      const parent = e.parent % this.size;
      // edges point to earlier keys only: a DAG by construction
      if (parent >= child || jobs[`k${child}`]!.dependsOn.some((d) => d.job === `k${parent}`))
        continue;
      jobs[`k${child}`]!.dependsOn.push({ job: `k${parent}`, condition: e.condition });
    }
    const wf = await r.queue.submitWorkflow({
      name: 'mw',
      target: this.target,
      onFailure: this.policy,
      jobs,
    });
    const idOf = (key: string) => wf.jobs[key]!.id;
    for (const [key, def] of Object.entries(jobs)) {
      m.jobs.set(idOf(key), {
        parents: def.dependsOn.map((d) => ({ id: idOf(d.job), condition: d.condition })),
        policy: this.policy,
      });
      m.order.push(idOf(key));
    }
  }
  toString = () => `workflow(${this.size}, ${this.policy}, ${JSON.stringify(this.edges)})`;
}

class Cancel implements fc.AsyncCommand<Model, Real> {
  constructor(readonly n: number) {}
  check = (m: Readonly<Model>) => m.order.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    const id = pick(m.order, this.n)!;
    const before = (await r.queue.get(id))!;
    try {
      await r.queue.cancel(id);
    } catch (error) {
      // Only a job that already ended (other than cancelled) may refuse a cancel.
      expect(error).toMatchObject({ code: 'E_QUEUE_INVALID_STATE' });
      expect(isTerminal(before.state) && before.state !== 'cancelled').toBe(true);
    }
  }
  toString = () => `cancel(${this.n})`;
}

class Pause implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly target: string | null,
    readonly resume: boolean,
  ) {}
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    const t = this.target ?? undefined;
    await (this.resume ? r.queue.resume(t) : r.queue.pause(t));
  }
  toString = () => `${this.resume ? 'resume' : 'pause'}(${this.target ?? 'queue'})`;
}

class Tick implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    await r.queue.tick();
  }
  toString = () => 'tick';
}

/** The runner ends some live jobs, each with its own outcome (several end in one poll). */
class Outcome implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly outcomes: readonly RunnerState[],
    readonly mask: number,
  ) {}
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    let i = 0;
    for (const key of r.runner.live()) {
      if (((this.mask >> (i % 16)) & 1) === 1) {
        r.runner.finish(this.outcomes[i % this.outcomes.length]!, (k) => k === key);
      }
      i++;
    }
  }
  toString = () => `runner(${this.outcomes.join('/')}, ${this.mask.toString(2)})`;
}

class Fault implements fc.AsyncCommand<Model, Real> {
  constructor(readonly kind: 'before' | 'after' | 'poll') {}
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    if (this.kind === 'before') r.runner.failSubmitBefore++;
    else if (this.kind === 'after') r.runner.failSubmitAfter++;
    else r.runner.failPoll++;
  }
  toString = () => `fault(${this.kind})`;
}

/** Another scheduler claims jobs and dies inside runner.submit (before or after the runner took it). */
class DeadScheduler implements fc.AsyncCommand<Model, Real> {
  constructor(readonly accepted: boolean) {}
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    let release!: () => void;
    const never = new Promise<never>((_, reject) => {
      release = () => reject(new Error('released after the test'));
    });
    never.catch(() => undefined);
    const real = r.runner;
    const accepted = this.accepted;
    const hung = Object.assign(Object.create(real) as FaultRunner, {
      async submit(job: RunnerJob): Promise<RunnerHandle> {
        if (accepted) await real.submit(job);
        return never;
      },
    });
    const q = await open(r.store, {
      targets: Object.fromEntries(TARGETS.map((t) => [t, { runner: hung }])),
      // Its submit never returns; past submitTimeoutMs it stops renewing the claims' leases,
      // as a dead scheduler would (a live one renews them while a submit is in flight).
      scheduler: {
        ownerId: `dead-${r.dead.length}`,
        leaseMs: 1,
        claimBatch: 2,
        submitTimeoutMs: 1,
      },
    });
    void q.tick().catch(() => undefined); // claims, then hangs in submit forever
    await new Promise((res) => setTimeout(res, 5));
    r.dead.push({ queue: q, release });
  }
  toString = () => `deadScheduler(${this.accepted ? 'after' : 'before'} submit)`;
}

class Restart implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    await r.queue.close();
    r.queue = await openReal(r);
    await new Promise((res) => setTimeout(res, 2));
    await r.queue.start(); // recovers expired leases
    await r.queue.stop();
  }
  toString = () => 'restart';
}

const condition = fc.constantFrom<EdgeCondition>('afterok', 'afterok', 'afterany', 'afternotok');
const commands = [
  fc
    .tuple(
      fc.constantFrom(...TARGETS),
      fc.integer({ min: 0, max: 3 }),
      fc.array(fc.record({ n: fc.nat(), condition }), { maxLength: 2 }),
      fc.integer({ min: 1, max: 2 }),
    )
    .map(([t, p, d, a]) => new Enqueue(t, p, d, a)),
  fc
    .tuple(
      fc.integer({ min: 1, max: 5 }),
      fc.array(fc.record({ child: fc.nat(), parent: fc.nat(), condition }), { maxLength: 6 }),
      fc.constantFrom<FailurePolicy>('skip-dependents', 'skip-dependents', 'continue'),
      fc.constantFrom(...TARGETS),
    )
    .map(([s, e, p, t]) => new Workflow(s, e, p, t)),
  fc.nat().map((n) => new Cancel(n)),
  fc.tuple(fc.option(fc.constantFrom(...TARGETS)), fc.boolean()).map(([t, r]) => new Pause(t, r)),
  fc.constant(new Tick()),
  fc.constant(new Tick()),
  fc
    .tuple(
      fc.array(
        fc.constantFrom<RunnerState>(
          'succeeded',
          'succeeded',
          'failed',
          'timeout',
          'cancelled',
          'lost',
        ),
        { minLength: 1, maxLength: 4 },
      ),
      fc.nat({ max: 0xffff }),
    )
    .map(([o, m]) => new Outcome(o, m)),
  fc.constantFrom<'before' | 'after' | 'poll'>('before', 'after', 'poll').map((k) => new Fault(k)),
  fc.boolean().map((a) => new DeadScheduler(a)),
  fc.constant(new Restart()),
];

async function settle(r: Real): Promise<void> {
  await r.queue.close();
  r.queue = await openReal(r);
  await new Promise((res) => setTimeout(res, 2));
  await r.queue.start();
  await r.queue.stop();
  await r.queue.resume();
  for (const t of TARGETS) await r.queue.resume(t);
  r.runner.failPoll = 0;
  for (let i = 0; i < 500; i++) {
    const c = await r.queue.counts();
    if (c.total === c.byState.succeeded + terminalOthers(c)) return;
    r.runner.finish('succeeded');
    await r.queue.tick();
  }
  throw new Error('the queue did not settle');
}

function terminalOthers(c: Awaited<ReturnType<Queue['counts']>>): number {
  return c.byState.failed + c.byState.cancelled + c.byState.timeout + c.byState.skipped;
}

async function check(m: Model, r: Real): Promise<void> {
  const jobs = new Map<string, Job>();
  let cursor: string | undefined;
  do {
    const page = await r.queue.list({ limit: 1000, ...(cursor ? { cursor } : {}) });
    for (const j of page.jobs) jobs.set(j.id, j);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  // no job lost: every job the model knows exists and ended
  for (const id of m.order) {
    expect(jobs.get(id), `job ${id}`).toBeDefined();
    expect(isTerminal(jobs.get(id)!.state), `job ${id} is ${jobs.get(id)!.state}`).toBe(true);
  }
  expect(jobs.size).toBe(m.order.length);
  // none submitted twice: no key reached the runner twice, and a job's keys are its attempts
  const calls = r.runner.calls;
  expect(new Set(calls).size, `double submission in ${calls.join(' ')}`).toBe(calls.length);
  const keysPerJob = new Map<string, number>();
  for (const key of calls) {
    const id = /-([0-9]+)-a[0-9]+$/.exec(key)![1]!;
    keysPerJob.set(id, (keysPerJob.get(id) ?? 0) + 1);
  }
  for (const [id, n] of keysPerJob) expect(n).toBeLessThanOrEqual(jobs.get(id)!.maxAttempts);
  // legal edges and limits, replayed from the persisted log
  const state = new Map<string, JobState>();
  const live = new Map<string, Set<string>>();
  for await (const e of r.queue.events({ follow: false }) as AsyncIterable<QueueEvent>) {
    if (e.type !== 'job:state') continue;
    expect(e.from, `event ${e.seq} of job ${e.jobId}`).toBe(state.get(e.jobId) ?? null);
    expect(LEGAL_TRANSITIONS.get(e.from)!.has(e.to), `${e.from} -> ${e.to}`).toBe(true);
    state.set(e.jobId, e.to);
    const set = live.get(e.target) ?? new Set<string>();
    if (e.to === 'submitting' || e.to === 'queued' || e.to === 'running') set.add(e.jobId);
    else set.delete(e.jobId);
    live.set(e.target, set);
    const limit = LIMITS[e.target];
    if (limit !== undefined)
      expect(set.size, `target ${e.target} at event ${e.seq}`).toBeLessThanOrEqual(limit);
  }
  for (const [id, j] of jobs) expect(state.get(id)).toBe(j.state);
  // dependents of a job that ended badly are skipped (or were cancelled), transitively, and
  // never ran; a skipped job has a parent whose condition failed
  for (const id of m.order) {
    const job = jobs.get(id)!;
    const spec = m.jobs.get(id)!;
    const broken = spec.parents.some(
      (p) => !conditionHolds(p.condition, jobs.get(p.id)!.state, spec.policy),
    );
    if (broken) {
      expect(['skipped', 'cancelled'], `job ${id} has a broken dependency`).toContain(job.state);
      expect(keysPerJob.has(id), `job ${id} ran despite a broken dependency`).toBe(false);
    }
    if (job.state === 'skipped') expect(broken, `job ${id} skipped without cause`).toBe(true);
    if (job.state === 'succeeded')
      expect(r.runner.jobs.get(job.handle!.jobKey)?.state).toBe('succeeded');
  }
}

describeStores((makeStore) => {
  it('random command sequences keep every invariant of the reference model', async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 30 }), async (cmds) => {
        const store = await makeStore();
        const runner = new FaultRunner({ hold: true });
        const real: Real = { store, runner, queue: await openReal({ store, runner }), dead: [] };
        const model: Model = { jobs: new Map(), order: [] };
        try {
          await fc.asyncModelRun(() => ({ model, real }), cmds);
          await settle(real);
          await check(model, real);
        } finally {
          await real.queue.close().catch(() => undefined);
          for (const d of real.dead) d.release();
          await new Promise((res) => setTimeout(res, 5));
          for (const d of real.dead) await d.queue.close().catch(() => undefined);
          await store.cleanup();
        }
      }),
      { numRuns: RUNS, endOnFailure: true },
    );
  }, 600_000);
});
