// Test support: runners for fault injection (no-op and fault-injecting; real runners are used
// where they can produce the behaviour), the parameterized store list every suite runs
// against, and small utilities. The PostgreSQL store registers itself in STORES.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {
  Runner,
  RunnerCapabilities,
  RunnerHandle,
  RunnerJob,
  RunnerState,
  RunnerStatus,
} from '@crystalmath/core';
import { validateJobSpec } from '@crystalmath/core';
import { describe } from 'vitest';
import { openQueue } from '../open-queue.js';
import { sqliteStore } from '../store/sqlite/sqlite-store.js';
import type { OpenQueueOptions, Queue, QueueStoreFactory } from '../types.js';
import { postgresKind } from './postgres-kind.js';

/** How a child process (crash, two-process, events tests) re-creates the store. */
export type StoreSpec =
  | { readonly kind: 'sqlite'; readonly path: string }
  | { readonly kind: 'postgres'; readonly connectionString: string; readonly schema: string };

export interface TestStore {
  /** A factory for the same database; call as often as needed (restarts). */
  factory(extra?: { onQuery?: (sql: string) => void }): QueueStoreFactory;
  readonly spec: StoreSpec;
  cleanup(): Promise<void>;
}

export interface StoreKind {
  readonly name: string;
  /** Why this store is not available here, or null. */
  readonly unavailable: string | null;
  make(): Promise<TestStore>;
}

export function tempDir(prefix = 'cm-queue-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Every store the suites run against. The PostgreSQL store adds itself here. */
export const STORES: StoreKind[] = [
  {
    name: 'sqlite',
    unavailable: null,
    async make() {
      const t = tempDir();
      const path = join(t.dir, 'queue.db');
      return {
        spec: { kind: 'sqlite', path },
        factory: (extra = {}) => sqliteStore({ path, ...extra }),
        cleanup: async () => t.cleanup(),
      };
    },
  },
  postgresKind,
];

/** Runs `suite` once per registered store: `describeStores((makeStore) => { ... })`. */
export function describeStores(
  suite: (makeStore: () => Promise<TestStore>, kind: StoreKind) => void,
): void {
  for (const kind of STORES) {
    describe.skipIf(kind.unavailable !== null)(`store: ${kind.name}`, () =>
      suite(() => kind.make(), kind),
    );
  }
}

interface NoopJob {
  key: string;
  state: RunnerState;
  /** Outcome to report once released (or at once when the runner does not hold jobs). */
  outcome: RunnerState;
  polls: number;
}

/**
 * An in-memory runner: submissions succeed instantly and jobs finish on their first poll with
 * `outcome(job)` (default succeeded). With `hold = true`, jobs stay running until `finish()`.
 * Enforces unique keys as the Runner contract asks; `submits` counts calls per key.
 */
export class NoopRunner implements Runner {
  readonly kind = 'noop';
  capabilities: RunnerCapabilities = {
    find: true,
    collect: false,
    cleanup: false,
    tail: false,
    minPollIntervalMs: 0,
  };
  readonly jobs = new Map<string, NoopJob>();
  /** Every accepted submission, in order. */
  readonly submitted: string[] = [];
  /** Every submit call's key, accepted or not (a second call for one key is a double submit). */
  readonly calls: string[] = [];
  readonly cancelled: string[] = [];
  pollCalls = 0;
  /** Handles per poll call. */
  readonly pollSizes: number[] = [];
  hold = false;
  outcome: (job: RunnerJob) => RunnerState = () => 'succeeded';
  /** Called inside submit (e.g. to check invariants at the moment of submission). */
  onSubmit: ((job: RunnerJob) => void) | null = null;

  constructor(options: { hold?: boolean; find?: boolean } = {}) {
    this.hold = options.hold ?? false;
    if (options.find === false) {
      this.capabilities = { ...this.capabilities, find: false };
      (this as { find?: unknown }).find = undefined;
    }
  }

  async submit(job: RunnerJob): Promise<RunnerHandle> {
    this.calls.push(job.key);
    validateJobSpec(job.spec);
    if (this.jobs.has(job.key)) throw new Error(`[noop] duplicate key ${job.key}`);
    this.onSubmit?.(job);
    this.submitted.push(job.key);
    this.jobs.set(job.key, {
      key: job.key,
      state: this.hold ? 'running' : 'queued',
      outcome: this.outcome(job),
      polls: 0,
    });
    return { kind: this.kind, jobKey: job.key, data: {} };
  }

  async poll(handles: readonly RunnerHandle[]): Promise<RunnerStatus[]> {
    this.pollCalls++;
    this.pollSizes.push(handles.length);
    return handles.map((h): RunnerStatus => {
      const j = this.jobs.get(h.jobKey);
      if (!j) return { state: 'lost', reason: 'unknown key' };
      j.polls++;
      if (!this.hold && (j.state === 'queued' || j.state === 'running')) j.state = j.outcome;
      return {
        state: j.state,
        ...(j.state === 'succeeded'
          ? { exitCode: 0 }
          : j.state === 'failed'
            ? { exitCode: 3 }
            : {}),
      };
    });
  }

  async cancel(h: RunnerHandle): Promise<void> {
    this.cancelled.push(h.jobKey);
    const j = this.jobs.get(h.jobKey);
    if (j && (j.state === 'queued' || j.state === 'running')) j.state = 'cancelled';
  }

  async find(key: string): Promise<RunnerHandle | null> {
    return this.jobs.has(key) ? { kind: this.kind, jobKey: key, data: {} } : null;
  }

  /** Ends held jobs (all live ones, or those whose key matches) with `outcome`. */
  finish(outcome: RunnerState, match: (key: string) => boolean = () => true): number {
    let n = 0;
    for (const j of this.jobs.values()) {
      if ((j.state === 'queued' || j.state === 'running') && match(j.key)) {
        j.state = outcome;
        n++;
      }
    }
    return n;
  }

  /** Keys of jobs the runner still runs. */
  live(): string[] {
    return [...this.jobs.values()]
      .filter((j) => j.state === 'queued' || j.state === 'running')
      .map((j) => j.key);
  }
}

/** Faults a real runner cannot produce on demand, injected around a NoopRunner. */
export class FaultRunner extends NoopRunner {
  /** Next submits that throw before the runner records anything. */
  failSubmitBefore = 0;
  /** Next submits that throw AFTER the job was accepted (a lost reply). */
  failSubmitAfter = 0;
  /** Next polls that throw. */
  failPoll = 0;
  /** Next finds that throw. */
  failFind = 0;

  override async submit(job: RunnerJob): Promise<RunnerHandle> {
    if (this.failSubmitBefore > 0) {
      this.failSubmitBefore--;
      throw new Error('[fault] submit refused');
    }
    const handle = await super.submit(job);
    if (this.failSubmitAfter > 0) {
      this.failSubmitAfter--;
      throw new Error('[fault] connection lost after submit');
    }
    return handle;
  }

  override async poll(handles: readonly RunnerHandle[]): Promise<RunnerStatus[]> {
    if (this.failPoll > 0) {
      this.failPoll--;
      throw new Error('[fault] poll failed');
    }
    return super.poll(handles);
  }

  override async find(key: string): Promise<RunnerHandle | null> {
    if (this.failFind > 0) {
      this.failFind--;
      throw new Error('[fault] find failed');
    }
    return super.find(key);
  }
}

export const spec = (name = 'job', argv: readonly string[] = ['true']) => ({ name, argv });

/** Opens a queue with fast scheduler defaults for tests. */
export function open(
  store: TestStore,
  options: Omit<OpenQueueOptions, 'store'> & { onQuery?: (sql: string) => void },
): Promise<Queue> {
  const { onQuery, ...rest } = options;
  return openQueue({
    store: store.factory(onQuery ? { onQuery } : {}),
    ...rest,
    scheduler: { pollIntervalMs: 0, tickMs: 20, ...rest.scheduler },
  });
}

/** Runs tick() until `done()` or `max` rounds. */
export async function tickUntil(
  queue: Queue,
  done: () => boolean | Promise<boolean>,
  max = 200,
): Promise<void> {
  for (let i = 0; i < max; i++) {
    if (await done()) return;
    await queue.tick();
  }
  if (!(await done())) throw new Error(`condition not reached after ${max} ticks`);
}

/**
 * Waits until `check()` holds, re-checking every 25 ms, or throws after `timeoutMs` naming
 * `what`: a wait on a condition of real processes, whose duration is no part of the assertion.
 */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Everything an async iterable yields, e.g. the event log with `follow: false`. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
