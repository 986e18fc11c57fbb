// A running scheduler's row in the store (cm_schedulers): written at start, every heartbeat
// interval and at once when a target's health changes, deleted on a clean stop. It is how any
// process on the same store (`crystalmath submit`, `list`, `watch`, `targets`) learns whether a
// scheduler serves a target and whether that scheduler can reach it.

import { hostname } from 'node:os';
import { isCrystalMathError } from '@crystalmath/core';
import type { QueueStore, SchedulerRow } from './store/store.js';
import type { Clock, SchedulerInfo, TargetUnreachable } from './types.js';

/** Default `scheduler.heartbeatMs`. */
export const DEFAULT_HEARTBEAT_MS = 5_000;
/** A scheduler is live while its last heartbeat is younger than this many of its intervals. */
export const HEARTBEAT_LIVE_BEATS = 6;
/** Rows of schedulers dead for longer than this are deleted by the next heartbeat of another. */
const FORGET_AFTER_MS = 3_600_000;
/** Longest error message kept in a row (messages are secret-free; this bounds their size). */
const MAX_ERROR_CHARS = 500;

export interface HeartbeatOptions {
  readonly store: QueueStore;
  readonly clock: Clock;
  readonly owner: string;
  readonly targets: readonly string[];
  readonly intervalMs: number;
  /** The served targets that are unreachable now. */
  readonly health: () => ReadonlyMap<string, TargetUnreachable>;
  /**
   * True while the scheduler sees the store down: timed beats are skipped then (its rounds
   * already probe the store; a beat would add a connection attempt), and the scheduler beats at
   * once when the store is back.
   */
  readonly storeDown: () => boolean;
  /** A heartbeat write failed for another reason than the store being down. */
  readonly error: (error: unknown, context: string) => void;
}

/**
 * Writes the row on a timer. At most one write is in flight: a beat asked meanwhile is coalesced
 * into one more write after it, so a store that is slow or locked never piles writes up (on
 * SQLite each write waits for a lock on timers, never blocking the event loop). E_STORE while the
 * store is down is not reported here: the scheduling loop reports the outage once.
 */
export class Heartbeat {
  readonly #o: HeartbeatOptions;
  #startedAt = 0;
  #timer: NodeJS.Timeout | null = null;
  #inFlight: Promise<void> | null = null;
  #again = false;
  #stopped = true;

  constructor(options: HeartbeatOptions) {
    this.#o = options;
  }

  /** Writes the first row (awaited: a submit right after `start()` sees it), then every interval. */
  async start(): Promise<void> {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#startedAt = this.#o.clock.now();
    this.#timer = setInterval(() => {
      if (!this.#o.storeDown()) void this.beat();
    }, this.#o.intervalMs);
    this.#timer.unref();
    await this.beat();
  }

  /** Writes the row now (or right after the write in flight). */
  beat(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#inFlight) {
      this.#again = true;
      return this.#inFlight;
    }
    const run = async (): Promise<void> => {
      do {
        this.#again = false;
        await this.#write();
      } while (this.#again && !this.#stopped);
    };
    const p = run().finally(() => {
      this.#inFlight = null;
    });
    this.#inFlight = p;
    return p;
  }

  /** Stops the timer, waits for a write in flight, and deletes the row. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#inFlight;
    try {
      await this.#o.store.removeScheduler(this.#o.owner);
    } catch (error) {
      // The row goes stale by itself after HEARTBEAT_LIVE_BEATS intervals.
      this.#o.error(error, 'remove the scheduler row');
    }
  }

  async #write(): Promise<void> {
    const now = this.#o.clock.now();
    const health: Record<string, TargetUnreachable> = {};
    for (const [t, u] of this.#o.health())
      health[t] = { ...u, lastError: u.lastError.slice(0, MAX_ERROR_CHARS) };
    const row: SchedulerRow = {
      owner: this.#o.owner,
      host: hostname(),
      pid: process.pid,
      targets: JSON.stringify(this.#o.targets),
      started_at: this.#startedAt,
      heartbeat_at: now,
      heartbeat_ms: this.#o.intervalMs,
      health: JSON.stringify(health),
    };
    try {
      await this.#o.store.heartbeat(row, now - FORGET_AFTER_MS);
    } catch (error) {
      if (isCrystalMathError(error, 'E_STORE') || isCrystalMathError(error, 'E_QUEUE_CLOSED'))
        return;
      this.#o.error(error, 'scheduler heartbeat');
    }
  }
}

/** Whether a row's scheduler is live at `now` (its heartbeat younger than the live bound). */
export function isLive(row: SchedulerRow, now: number): boolean {
  return now - Number(row.heartbeat_at) < HEARTBEAT_LIVE_BEATS * Number(row.heartbeat_ms);
}

/** A stored row as the public SchedulerInfo. */
export function toSchedulerInfo(row: SchedulerRow): SchedulerInfo {
  const unreachable: Record<string, TargetUnreachable> = {};
  for (const [t, u] of Object.entries(parseJson<Record<string, TargetUnreachable>>(row.health, {})))
    unreachable[t] = { ...u, reportedBy: row.owner };
  return {
    owner: row.owner,
    host: row.host,
    pid: Number(row.pid),
    targets: parseJson<string[]>(row.targets, []),
    startedAt: Number(row.started_at),
    heartbeatAt: Number(row.heartbeat_at),
    heartbeatMs: Number(row.heartbeat_ms),
    unreachable,
  };
}

/**
 * The live schedulers serving one target, from `TargetRow.schedulers` (read with the target):
 * their owner ids and, from the first that reports it, why the target is unreachable.
 */
export function servingTarget(
  target: string,
  schedulers: string | null,
  now: number,
): { servedBy: string[]; unreachable: TargetUnreachable | null } {
  const rows = parseJson<
    Pick<SchedulerRow, 'owner' | 'heartbeat_at' | 'heartbeat_ms' | 'health'>[]
  >(schedulers ?? '[]', []);
  const live = rows
    .filter((r) => isLive(r as SchedulerRow, now))
    .sort((a, b) => (a.owner < b.owner ? -1 : 1));
  let unreachable: TargetUnreachable | null = null;
  for (const r of live) {
    const u = parseJson<Record<string, TargetUnreachable>>(r.health, {})[target];
    if (u) {
      unreachable = { ...u, reportedBy: r.owner };
      break;
    }
  }
  return { servedBy: live.map((r) => r.owner), unreachable };
}

function parseJson<T>(text: string, fallback: T): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}
