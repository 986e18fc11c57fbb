// The `collecting` phase: after a runner reports that a job ended, its declared outputs are
// copied into a private staging folder through `runner.collect`, streamed into the artifact
// store (temporary name, checksum, rename) and recorded in the same transaction that ends the
// job. Every step may be repeated: a crash mid-way leaves the job `collecting`, and the next
// scheduler serving its target collects it again; the guarded end records it once.

import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type ArtifactStore,
  applicableOutputs,
  globToRegExp,
  isTransientTargetError,
  type JsonValue,
  type Runner,
  type RunnerHandle,
  type RunnerStatus,
  rootErrorCode,
} from '@crystalmath/core';
import type { ResolvedTarget } from './attorney.js';
import { decodeSpec, errorMessage } from './codec.js';
import type { RunnerOperation } from './runner-call.js';
import type { CollectOutcome, JobRow, QueueStore, RetryPolicy } from './store/store.js';
import type { Clock, Logger } from './types.js';

/** A collected `result.json` larger than this is not read as the job's result. */
export const RESULT_MAX_BYTES = 1024 * 1024;
/** Waits between tries of a collection that met a transient fault: 1 s doubling to 60 s, +-20 %. */
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 60_000;

export interface CollectorOptions {
  readonly store: QueueStore;
  readonly artifacts: ArtifactStore;
  /** Private folder of this machine for copies on their way into the artifact store. */
  readonly stagingDir: string;
  readonly targets: ReadonlyMap<string, ResolvedTarget>;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly concurrency: number;
  readonly retry: RetryPolicy;
  readonly call: <T>(
    target: string,
    operation: RunnerOperation,
    call: (signal: AbortSignal) => Promise<T>,
  ) => Promise<T>;
  readonly error: (error: unknown, context: string) => void;
  /** A collection ended a job (dependents may have been released), or more work is due. */
  readonly ended: () => void;
}

/** Whether a runner status, once the job ends, goes through `collecting` (see `wants`). */
export class Collector {
  readonly #o: CollectorOptions;
  readonly #lanes = new Map<string, Promise<void>>();
  readonly #inFlight = new Set<number>();
  readonly #waitUntil = new Map<number, { at: number; failures: number }>();
  #due = true;
  #nextLook = 0;

  constructor(options: CollectorOptions) {
    this.#o = options;
  }

  /**
   * True when a job that ended with `status` has something to do in `collecting`: outputs that
   * apply to that ending, or files to clean up on the target. A cancelled job is not collected.
   */
  wants(row: JobRow, status: RunnerStatus): boolean {
    const t = this.#o.targets.get(row.target);
    if (t === undefined || status.state === 'cancelled') return false;
    const caps = t.runner.capabilities;
    if (caps.collect && typeof t.runner.collect === 'function') {
      const outputs = applicableOutputs(decodeSpec(row.spec).outputs, status.state === 'succeeded');
      if (outputs.length > 0) return true;
    }
    return t.cleanup !== 'keep' && caps.cleanup && typeof t.runner.cleanup === 'function';
  }

  /** Something may be collecting now (a poll moved jobs there). */
  kick(): void {
    this.#due = true;
  }

  /** The collections in flight (stop() and tick() wait for them). */
  inFlight(): Promise<void>[] {
    return [...this.#lanes.values()];
  }

  /**
   * Starts a lane for each given target without one, when something may be collecting: after a
   * kick, when a retry is due, and now and then (another process's collections left behind).
   */
  start(targets: readonly string[], everyMs: number): void {
    const now = this.#o.clock.now();
    const retryDue = [...this.#waitUntil.values()].some((w) => w.at <= now);
    if (!this.#due && !retryDue && now < this.#nextLook) return;
    this.#due = false;
    this.#nextLook = now + everyMs;
    for (const target of targets) {
      if (this.#lanes.has(target)) {
        this.#due = true; // what woke us may be new to that lane: look again after it
        continue;
      }
      const lane = this.#lane(target)
        .catch((error: unknown) => this.#o.error(error, `collect on target ${target}`))
        .finally(() => {
          this.#lanes.delete(target);
          if (this.#due) this.#o.ended(); // work came in meanwhile: a round soon, not at tickMs
        });
      this.#lanes.set(target, lane);
    }
  }

  async #lane(target: string): Promise<void> {
    const rows = await this.#o.store.collectingJobs([target]);
    const now = this.#o.clock.now();
    const todo = rows.filter((r) => {
      const id = Number(r.id);
      const w = this.#waitUntil.get(id);
      return !this.#inFlight.has(id) && (w === undefined || w.at <= now);
    });
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let row = todo[next++]; row !== undefined; row = todo[next++]) {
        const id = Number(row.id);
        this.#inFlight.add(id);
        try {
          await this.#collect(target, row);
        } finally {
          this.#inFlight.delete(id);
        }
      }
    };
    const width = Math.min(this.#o.concurrency, todo.length);
    await Promise.all(Array.from({ length: width }, worker));
  }

  async #collect(target: string, row: JobRow): Promise<void> {
    const id = Number(row.id);
    const attempt = Number(row.attempt);
    const t = this.#o.targets.get(target)!;
    const runner = t.runner;
    const status = JSON.parse(row.runner_status ?? '{"state":"failed"}') as RunnerStatus;
    const handle = JSON.parse(row.handle ?? 'null') as RunnerHandle | null;
    const outputs = applicableOutputs(decodeSpec(row.spec).outputs, status.state === 'succeeded');
    const staging = join(this.#o.stagingDir, `${id}-a${attempt}-${randomBytes(4).toString('hex')}`);
    let outcome: CollectOutcome;
    try {
      if (handle === null) throw new Error('the job has no runner handle');
      await sweep(this.#o.artifacts, String(id));
      const files =
        outputs.length > 0 && canCollect(runner)
          ? await this.#fetch(
              target,
              runner,
              handle,
              staging,
              outputs.map((o) => o.glob),
            )
          : [];
      const artifacts: CollectOutcome['artifacts'][number][] = [];
      for (const rel of files) {
        const local = join(staging, ...rel.split('/'));
        const st = await lstat(local);
        if (!st.isFile()) continue; // runners copy regular files only; never follow anything else
        const put = await this.#o.artifacts.put(String(id), rel, createReadStream(local), {
          mode: st.mode & 0o777,
          size: st.size,
        });
        artifacts.push({ path: put.path, size: put.size, sha256: put.sha256, mode: put.mode });
      }
      const missing = outputs.filter(
        (o) => o.required && !files.some((f) => globToRegExp(o.glob).test(f)),
      );
      let failure =
        missing.length === 0
          ? null
          : `E_ARTIFACT_MISSING: required output ${missing.map((m) => `"${m.glob}"`).join(', ')} matched no file`;
      let result: string | undefined;
      if (files.includes('result.json')) {
        const r = await readResult(join(staging, 'result.json'));
        if ('error' in r) failure = failure ?? r.error;
        else result = JSON.stringify(r.value);
      }
      outcome = { id, attempt, artifacts, failure, ...(result === undefined ? {} : { result }) };
    } catch (error) {
      if (isTransientTargetError(error)) {
        this.#later(id, target, error);
        return;
      }
      const code = rootErrorCode(error);
      const message = errorMessage(error);
      const why = `collect failed: ${code && !message.includes(code) ? `${code}: ` : ''}${message}`;
      outcome = { id, attempt, artifacts: [], failure: why };
    } finally {
      await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    }
    this.#waitUntil.delete(id);
    const ended = await this.#o.store.finishCollect(outcome, this.#o.retry, this.#o.clock.now());
    if (ended === null) return; // another scheduler finished it first
    this.#o.ended();
    if (
      canCleanup(runner) &&
      (t.cleanup === 'always' || (t.cleanup === 'on-success' && ended === 'succeeded'))
    ) {
      await this.#o
        .call(target, 'cleanup', (signal) => runner.cleanup(handle!, { signal }))
        .catch((error: unknown) => this.#o.error(error, `cleanup of job ${id} on ${target}`));
    }
  }

  async #fetch(
    target: string,
    runner: Runner & { collect: NonNullable<Runner['collect']> },
    handle: RunnerHandle,
    staging: string,
    globs: readonly string[],
  ): Promise<string[]> {
    await mkdir(staging, { recursive: true, mode: 0o700 });
    const r = await this.#o.call(target, 'collect', (signal) =>
      runner.collect(handle, staging, { globs, signal }),
    );
    return [...new Set(r.files)];
  }

  /** A transient fault: the job stays `collecting` and is tried again after a backoff. */
  #later(id: number, target: string, error: unknown): void {
    const failures = (this.#waitUntil.get(id)?.failures ?? 0) + 1;
    const base = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (failures - 1));
    const at = this.#o.clock.now() + Math.round(base * (0.8 + Math.random() * 0.4));
    this.#waitUntil.set(id, { at, failures });
    this.#o.logger.warn?.('[queue] collection interrupted: trying again', {
      job: id,
      target,
      failures,
      error: errorMessage(error),
    });
  }
}

function canCollect(r: Runner): r is Runner & { collect: NonNullable<Runner['collect']> } {
  return r.capabilities.collect && typeof r.collect === 'function';
}

function canCleanup(r: Runner): r is Runner & { cleanup: NonNullable<Runner['cleanup']> } {
  return r.capabilities.cleanup && typeof r.cleanup === 'function';
}

/** Removes a FileArtifactStore's leftovers of an interrupted put (other stores: nothing). */
async function sweep(store: ArtifactStore, jobId: string): Promise<void> {
  const s = store as ArtifactStore & { sweep?: (id: string) => Promise<number> };
  if (typeof s.sweep === 'function') await s.sweep(jobId);
}

async function readResult(file: string): Promise<{ value: JsonValue } | { error: string }> {
  const size = (await stat(file)).size;
  if (size > RESULT_MAX_BYTES)
    return { error: `result.json is ${size} bytes, more than ${RESULT_MAX_BYTES}` };
  try {
    return { value: JSON.parse(await readFile(file, 'utf8')) as JsonValue };
  } catch (error) {
    return { error: `result.json is not JSON: ${(error as Error).message}` };
  }
}

/**
 * Removes staging folders older than `maxAgeMs` (collections a crash interrupted); a younger
 * one may belong to a collection in flight in another process.
 */
export async function sweepStaging(dir: string, maxAgeMs: number, now: number): Promise<void> {
  const entries = await readdir(dir).catch(() => [] as string[]);
  for (const e of entries) {
    const p = join(dir, e);
    const st = await stat(p).catch(() => null);
    if (st !== null && now - st.mtimeMs > maxAgeMs)
      await rm(p, { recursive: true, force: true }).catch(() => undefined);
  }
}
