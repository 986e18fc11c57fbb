// SshPool: ssh2 connections kept per host and shared as session slots. The original tool froze
// for 50 s because its health check held the global lock during network I/O; here every change
// to pool state happens in a synchronous section (no `await` inside: JavaScript runs it to the
// end, so it is the lock, held for microseconds), and all network I/O — connecting, probing,
// closing — runs outside it and reports back through another such section. A connection
// being probed is not handed out; a connection in use is never closed by the pool until its
// sessions end (or `close()` gives up waiting), unless it stops answering: a connection with
// a request unanswered for `probeTimeoutMs` while the server sent nothing at all is hung and
// closed at once, idle or busy (callers whose channel had not opened yet are told it ran
// nothing; a command running there ends with `E_SSH_CHANNEL`, `started: true`).

import { EventEmitter, setMaxListeners } from 'node:events';
import { AbortError, isCrystalMathError, ValidationError } from '@crystalmath/core';
import { CircuitBreaker, type CircuitState } from './circuit-breaker.js';
import { Credentials, establish } from './connect.js';
import {
  type ConnectionOwner,
  Lease,
  type LeaseSettings,
  PooledConnection,
  type SshLease,
} from './connection.js';
import {
  connectErrorFrom,
  SshAcquireTimeoutError,
  SshChannelError,
  SshCircuitOpenError,
  type SshError,
  SshPoolClosedError,
  SshTimeoutError,
} from './errors.js';
import type {
  DisconnectReason,
  LatencySummary,
  SshHostStats,
  SshPoolEventName,
  SshPoolEvents,
  SshPoolStats,
} from './events.js';
import {
  type NormalizedHost,
  normalizeHost,
  type ResolvedPoolOptions,
  resolvePoolOptions,
  type SshHostConfig,
  type SshPoolOptions,
} from './options.js';
import { RateLimiter } from './rate-limiter.js';

/** Options of one `acquire`. */
export interface AcquireOptions {
  /** Give up (with `E_ABORTED`) when this fires. */
  readonly signal?: AbortSignal | undefined;
  /** Give up (with `E_SSH_ACQUIRE_TIMEOUT`) after this long. Default: the pool's `acquireTimeoutMs`. */
  readonly timeoutMs?: number | undefined;
  /**
   * Wait (up to the timeout) even while the host cannot be reached: through an open circuit
   * and failed connection attempts, until one succeeds. Default false: with no live
   * connection to the host, an open circuit fails at once (`E_SSH_CIRCUIT_OPEN`), and so does
   * a failed attempt whose retry is not due before your deadline (its own error).
   */
  readonly waitForConnection?: boolean | undefined;
}

interface Waiter {
  readonly enqueuedAt: number;
  /** Asked to wait through connection failures (`waitForConnection`). */
  readonly patient: boolean;
  readonly resolve: (lease: Lease) => void;
  readonly reject: (error: unknown) => void;
  done: boolean;
  /** Marks it done and stops its timer and abort listener. */
  finish(): void;
}

const LATENCY_SAMPLES = 1024;

class LatencyRing {
  readonly #samples = new Float64Array(LATENCY_SAMPLES);
  #count = 0;

  add(ms: number): void {
    this.#samples[this.#count % LATENCY_SAMPLES] = ms;
    this.#count++;
  }

  summary(): LatencySummary {
    const n = Math.min(this.#count, LATENCY_SAMPLES);
    if (n === 0) return { count: 0, p50: 0, p99: 0, max: 0 };
    const sorted = Array.from(this.#samples.subarray(0, n)).sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(n - 1, Math.ceil(q * n) - 1)] as number;
    return { count: this.#count, p50: at(0.5), p99: at(0.99), max: sorted[n - 1] as number };
  }

  values(): number[] {
    return Array.from(this.#samples.subarray(0, Math.min(this.#count, LATENCY_SAMPLES)));
  }
}

/** Connections, waiters and failure state of one host (one pool key). */
class HostBucket {
  readonly host: NormalizedHost;
  readonly min: number;
  readonly max: number;
  readonly connections = new Set<PooledConnection>();
  /** FIFO; finished waiters are skipped and dropped lazily. */
  waiters: Waiter[] = [];
  liveWaiters = 0;
  readonly breaker: CircuitBreaker;
  readonly limiter: RateLimiter;
  /** Failed rounds in a row: attempts running at the same time fail as one round. */
  consecutiveFailures = 0;
  /** Bumped by each counted failure; an attempt started before the bump is in that round. */
  failureRound = 0;
  nextAttemptAt = 0;
  /** Exec channels per connection: `maxChannels`, lowered when the server refuses one. */
  channelLimit: number;
  /** False once the host refused a command channel's session twice. */
  commandChannel = true;
  commandChannelRefusals = 0;
  /** Commands run, per route. */
  readonly commands = { channel: 0, exec: 0 };
  retryTimer: NodeJS.Timeout | undefined;
  retryAt = 0;
  lastConnectError: SshError | undefined;
  readonly latency = new LatencyRing();
  opened = 0;
  connectFailures = 0;
  probeFailures = 0;
  acquireTimeouts = 0;
  peakConnections = 0;

  constructor(
    host: NormalizedHost,
    o: ResolvedPoolOptions,
    onCircuit: (s: CircuitState, e: unknown) => void,
  ) {
    this.host = host;
    this.max = host.config.maxConnections ?? o.max;
    this.min = Math.min(host.config.minConnections ?? o.min, this.max);
    this.channelLimit = o.maxChannels;
    this.breaker = new CircuitBreaker(o.circuitBreaker, onCircuit);
    this.limiter = new RateLimiter(o.connectRateLimit.limit, o.connectRateLimit.intervalMs);
  }

  get label(): string {
    return this.host.label;
  }

  nextWaiter(): Waiter | undefined {
    while (this.waiters.length > 0) {
      const w = this.waiters.shift() as Waiter;
      if (!w.done) return w;
    }
    return undefined;
  }

  compact(): void {
    if (this.waiters.length > 2 * this.liveWaiters + 64) {
      this.waiters = this.waiters.filter((w) => !w.done);
    }
  }

  /** Connections that hold a TCP connection or are opening one (all count against `max`). */
  count(): number {
    return this.connections.size;
  }

  /** Some connection will hand out a slot eventually (ready, being probed, or connecting). */
  hasProspect(): boolean {
    for (const c of this.connections) {
      if (c.state === 'ready' || c.state === 'probing' || c.state === 'connecting') return true;
    }
    return false;
  }

  /** Fails the waiters that did not ask to wait through connection failures. */
  rejectImpatient(error: unknown): void {
    // Marked done first (dropped from the queue lazily), rejected after: a listener that
    // acquires again from inside the rejection finds a consistent queue.
    const impatient = this.waiters.filter((w) => !w.done && !w.patient);
    for (const w of impatient) w.finish();
    for (const w of impatient) w.reject(error);
  }
}

/**
 * A pool of SSH connections per host, each carrying up to `maxChannels` concurrent sessions
 * and one shared SFTP session.
 *
 * - `acquire` never overshoots `max` (a slot is reserved before a connection is opened),
 *   serves waiters first-in first-out, and gives up after `acquireTimeoutMs`
 *   (`E_SSH_ACQUIRE_TIMEOUT`) or when its AbortSignal fires (`E_ABORTED`).
 * - Idle connections are probed in parallel without blocking anyone; a connection that does
 *   not answer is closed and replaced. Idle and old connections are closed; failed connects
 *   back off exponentially with jitter; a per-host circuit breaker makes a dead host fail fast
 *   (`E_SSH_CIRCUIT_OPEN`); a per-host rate limit bounds new connections.
 * - `close()` leaves no timer or socket behind.
 *
 * @example
 * const pool = new SshPool({ max: 4 });
 * const host = { host: 'login.cluster.org', username: 'me', privateKeyPath: '~/.ssh/id_ed25519' };
 * const out = await pool.withSession(host, (s) => s.exec(['squeue', '--me']));
 * await pool.close();
 */
export class SshPool {
  readonly options: ResolvedPoolOptions;
  readonly #events = new EventEmitter();
  readonly #byConfig = new WeakMap<SshHostConfig, HostBucket>();
  readonly #buckets = new Map<string, HostBucket>();
  readonly #bucketByConn = new WeakMap<PooledConnection, HostBucket>();
  readonly #credentials = new Map<string, Credentials>();
  readonly #leaseSettings: LeaseSettings;
  readonly #shutdown = new AbortController();
  readonly #pendingConnects = new Set<Promise<unknown>>();
  readonly #closingConnections = new Set<Promise<void>>();
  readonly #latency = new LatencyRing();
  #tickTimer: NodeJS.Timeout | undefined;
  /** Silence after which a busy connection is pinged: never longer than for an idle one. */
  readonly #busyInterval: number;
  /** A request unanswered (and nothing heard) this long: no new caller is routed there. */
  readonly #suspectAfterMs: number;
  /** No new acquires (draining or closing). */
  #stopped = false;
  #draining = false;
  #closed = false;
  #closePromise: Promise<void> | undefined;
  #drainPromise: Promise<void> | undefined;
  #idleListeners: Array<() => void> = [];

  constructor(options: SshPoolOptions = {}) {
    this.options = resolvePoolOptions(options);
    this.#leaseSettings = {
      channelOpenTimeoutMs: this.options.channelOpenTimeoutMs,
      killGraceMs: this.options.killGraceMs,
      commandChannel: this.options.commandChannel,
    };
    const { busyProbeIntervalMs, probeIntervalMs } = this.options;
    this.#busyInterval =
      busyProbeIntervalMs > 0 && probeIntervalMs > 0
        ? Math.min(busyProbeIntervalMs, probeIntervalMs)
        : busyProbeIntervalMs;
    this.#suspectAfterMs = Math.min(1_000, Math.ceil(this.options.probeTimeoutMs / 2));
    this.#events.setMaxListeners(0);
    // Every connection attempt in flight listens for close(): no limit is meaningful.
    setMaxListeners(0, this.#shutdown.signal);
  }

  // ---- events ---------------------------------------------------------------------------

  /** Subscribes to a pool event. */
  on<E extends SshPoolEventName>(event: E, listener: (payload: SshPoolEvents[E]) => void): this {
    this.#events.on(event, listener);
    return this;
  }

  once<E extends SshPoolEventName>(event: E, listener: (payload: SshPoolEvents[E]) => void): this {
    this.#events.once(event, listener);
    return this;
  }

  off<E extends SshPoolEventName>(event: E, listener: (payload: SshPoolEvents[E]) => void): this {
    this.#events.off(event, listener);
    return this;
  }

  #emit<E extends SshPoolEventName>(event: E, payload: SshPoolEvents[E]): void {
    if (this.#events.listenerCount(event) === 0) return;
    try {
      this.#events.emit(event, payload);
    } catch (error) {
      this.options.logger?.warn?.(`[ssh-pool] a '${event}' listener threw`, { error });
    }
  }

  // ---- acquire / release ----------------------------------------------------------------

  /**
   * A session slot on a connection to `host`, opening a connection when needed and allowed.
   * Release it with `lease.release()` (or use `withSession`).
   */
  acquire(host: SshHostConfig, options: AcquireOptions = {}): Promise<SshLease> {
    const started = performance.now();
    try {
      if (this.#stopped) throw new SshPoolClosedError('acquire: the pool is closed or draining');
      if (options.signal?.aborted) {
        throw new AbortError('[ssh-pool] acquire aborted', { cause: options.signal.reason });
      }
      const t = options.timeoutMs;
      if (t !== undefined && !(Number.isFinite(t) && t >= 0)) {
        throw new ValidationError('options.timeoutMs', `must be a non-negative number, got ${t}`);
      }
      const bucket = this.#bucketFor(host);
      if (bucket.liveWaiters === 0) {
        const conn = this.#pick(bucket);
        if (conn) return Promise.resolve(this.#lease(bucket, conn, started));
      }
      return this.#enqueue(bucket, started, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Runs `fn` with a session and releases it on every path. A transport failure inside
   * (`E_SSH_CHANNEL`, `E_SSH_TIMEOUT`) retires the connection.
   *
   * @example
   * const r = await pool.withSession(host, (s) => s.exec(['hostname']));
   */
  async withSession<T>(
    host: SshHostConfig,
    fn: (lease: SshLease) => Promise<T>,
    options: AcquireOptions = {},
  ): Promise<T> {
    const lease = await this.acquire(host, options);
    try {
      return await fn(lease);
    } catch (error) {
      if (
        isCrystalMathError(error, 'E_SSH_CHANNEL') ||
        isCrystalMathError(error, 'E_SSH_TIMEOUT')
      ) {
        lease.invalidate(error);
      }
      throw error;
    } finally {
      lease.release();
    }
  }

  /** Opens connections to `host` up to its `min` (or one) ahead of use. Resolves when one is ready. */
  async warmup(host: SshHostConfig, options: AcquireOptions = {}): Promise<void> {
    const lease = await this.acquire(host, options);
    lease.release();
  }

  #bucketFor(config: SshHostConfig): HostBucket {
    const cached = this.#byConfig.get(config);
    if (cached) return cached;
    const host = normalizeHost(config);
    let bucket = this.#buckets.get(host.key);
    if (!bucket) {
      const b: HostBucket = new HostBucket(host, this.options, (state, error) => {
        this.#emit('circuit', { host: b.label, state, ...(error === undefined ? {} : { error }) });
        this.options.logger?.warn?.(`[ssh-pool] ${b.label}: circuit ${state}`);
      });
      bucket = b;
      this.#buckets.set(host.key, bucket);
      this.#startTicking();
      if (bucket.min > 0) queueMicrotask(() => this.#grow(b));
    }
    this.#byConfig.set(config, bucket);
    return bucket;
  }

  /**
   * The ready connection with the most free slots (spreads sessions over connections), never
   * one that looks hung (see `#routable`).
   */
  #pick(bucket: HostBucket): PooledConnection | undefined {
    let best: PooledConnection | undefined;
    const now = Date.now();
    for (const c of bucket.connections) {
      if (!this.#routable(c, now) || c.used >= c.channelLimit) continue;
      if (!best || c.used < best.used) best = c;
    }
    return best;
  }

  #lease(bucket: HostBucket, conn: PooledConnection, startedAt: number): Lease {
    const lease = new Lease(conn, this.#owner, this.#leaseSettings);
    conn.leases.add(lease);
    conn.lastUsedAt = Date.now();
    const waitMs = performance.now() - startedAt;
    bucket.latency.add(waitMs);
    this.#latency.add(waitMs);
    this.#emit('acquire', { host: bucket.label, connectionId: conn.id, waitMs });
    return lease;
  }

  #enqueue(bucket: HostBucket, startedAt: number, options: AcquireOptions): Promise<SshLease> {
    const now = Date.now();
    const timeoutMs = options.timeoutMs ?? this.options.acquireTimeoutMs;
    const hopeless = options.waitForConnection ? undefined : this.#hopeless(bucket, now, timeoutMs);
    if (hopeless) {
      this.#emit('acquireError', { host: bucket.label, error: hopeless, waitMs: 0 });
      return Promise.reject(hopeless);
    }
    return new Promise<SshLease>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const signal = options.signal;
      const onAbort = (): void => {
        if (waiter.done) return;
        waiter.finish();
        const error = new AbortError('[ssh-pool] acquire aborted', { cause: signal?.reason });
        this.#emit('acquireError', {
          host: bucket.label,
          error,
          waitMs: performance.now() - startedAt,
        });
        reject(error);
      };
      const waiter: Waiter = {
        enqueuedAt: startedAt,
        patient: options.waitForConnection === true,
        resolve,
        reject: (error) => {
          this.#emit('acquireError', {
            host: bucket.label,
            error,
            waitMs: performance.now() - startedAt,
          });
          reject(error);
        },
        done: false,
        finish: () => {
          if (waiter.done) return;
          waiter.done = true;
          bucket.liveWaiters--;
          if (timer) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          bucket.compact();
          this.#checkIdle();
        },
      };
      timer = setTimeout(() => {
        if (waiter.done) return;
        waiter.finish();
        bucket.acquireTimeouts++;
        const busy = [...bucket.connections].filter((c) => c.state === 'ready').length;
        const connecting = [...bucket.connections].filter((c) => c.state === 'connecting').length;
        const cause = bucket.lastConnectError;
        waiter.reject(
          new SshAcquireTimeoutError(
            `${bucket.label}: no session became free within ${timeoutMs} ms ` +
              `(${busy} connections busy, ${connecting} connecting, max ${bucket.max}, ` +
              `${bucket.liveWaiters} other callers waiting)${cause ? `; last connection error: ${cause.message}` : ''}`,
            { ...(cause ? { cause } : {}), details: { host: bucket.label, timeoutMs } },
          ),
        );
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      bucket.waiters.push(waiter);
      bucket.liveWaiters++;
      this.#grow(bucket);
    });
  }

  /**
   * Ready, and not silent with a request unanswered for `min(1 s, probeTimeoutMs / 2)`: such a
   * connection is probably hanging, and new callers wait for another (or a new) one instead.
   * It becomes routable again as soon as the server answers, or is closed at probeTimeoutMs.
   */
  #routable(conn: PooledConnection, now: number): boolean {
    return conn.state === 'ready' && !conn.silentFor(this.#suspectAfterMs, now);
  }

  /**
   * The error a caller gets at once, instead of queueing, when the host has no live
   * connection and none can start in time: `E_SSH_CIRCUIT_OPEN` while the circuit is open, or
   * the last connection error while the next attempt (backoff) is not due before the caller's
   * deadline. Undefined when it may wait.
   */
  #hopeless(bucket: HostBucket, now: number, timeoutMs: number): SshError | undefined {
    if (bucket.hasProspect()) return undefined;
    const last = bucket.lastConnectError;
    if (bucket.breaker.state(now) === 'open') {
      const cause = bucket.breaker.lastError;
      const at = this.#nextAttemptAt(bucket, now);
      return new SshCircuitOpenError(
        `${bucket.label}: failing fast after ${bucket.consecutiveFailures} failed connection rounds; ` +
          `the circuit lets one trial connection through in ${Math.max(0, at - now)} ms. Last error: ${
            cause instanceof Error ? cause.message : String(cause)
          }`,
        { cause, details: { host: bucket.label, retryInMs: Math.max(0, at - now) } },
      );
    }
    if (last && bucket.nextAttemptAt > now + timeoutMs) return last;
    return undefined;
  }

  /** When the next connection attempt to `bucket` may start (breaker, backoff, rate limit). */
  #nextAttemptAt(bucket: HostBucket, now: number): number {
    const state = bucket.breaker.state(now);
    // The breaker's cool-down replaces the backoff: its trial starts when the cool-down ends.
    let at =
      state === 'open' ? bucket.breaker.openUntil : state === 'closed' ? bucket.nextAttemptAt : now;
    at = Math.max(at, now);
    return Math.max(at, bucket.limiter.nextFreeAt(at));
  }

  /** Hands free slots to waiters in FIFO order, then opens connections if still needed. */
  #dispatch(bucket: HostBucket): void {
    while (bucket.liveWaiters > 0) {
      const conn = this.#pick(bucket);
      if (!conn) break;
      const waiter = bucket.nextWaiter();
      if (!waiter) break;
      waiter.finish();
      waiter.resolve(this.#lease(bucket, conn, waiter.enqueuedAt));
    }
    if (bucket.liveWaiters > 0) this.#grow(bucket);
  }

  #rejectWaiters(bucket: HostBucket, error: unknown): void {
    for (let w = bucket.nextWaiter(); w; w = bucket.nextWaiter()) {
      w.finish();
      w.reject(error);
    }
  }

  // What connections and leases report back (kept off the public API) ------------------------

  readonly #owner: ConnectionOwner = {
    leaseReleased: (lease) => this.#leaseReleased(lease),
    retire: (conn, reason) => this.#retire(conn, reason),
    slotFreed: (conn) => this.#slotFreed(conn),
    connectionLost: (conn, error) => this.#connectionLost(conn, error),
    channelLimitLearned: (conn, limit) => this.#channelLimitLearned(conn, limit),
    commandChannelAllowed: (conn) =>
      this.options.commandChannel && this.#bucketByConn.get(conn)?.commandChannel !== false,
    commandChannelRefused: (conn) => {
      const bucket = this.#bucketByConn.get(conn);
      if (!bucket?.commandChannel) return;
      // Twice: a refusal under load can be OpenSSH still counting a channel we closed.
      if (++bucket.commandChannelRefusals < 2) return;
      bucket.commandChannel = false;
      this.options.logger?.info?.(
        `[ssh-pool] ${bucket.label}: the server has no session to spare for a command channel; ` +
          'running every command in an exec channel',
      );
    },
    commandRan: (conn, via) => {
      const bucket = this.#bucketByConn.get(conn);
      if (bucket) bucket.commands[via]++;
    },
  };

  /** The server's session limit applies to every connection of the host. */
  #channelLimitLearned(conn: PooledConnection, limit: number): void {
    const bucket = this.#bucketByConn.get(conn);
    if (!bucket || limit >= bucket.channelLimit) return;
    bucket.channelLimit = limit;
    for (const c of bucket.connections) c.channelLimit = Math.min(c.channelLimit, limit);
    this.options.logger?.info?.(
      `[ssh-pool] ${bucket.label}: the server refused a session beyond ${limit} per connection; ` +
        `using ${limit} (maxChannels ${this.options.maxChannels})`,
    );
  }

  #leaseReleased(lease: Lease): void {
    const conn = lease.connection;
    conn.lastUsedAt = Date.now();
    this.#emit('release', { host: conn.label, connectionId: conn.id });
    const bucket = this.#bucketByConn.get(conn);
    if (bucket) this.#afterSlotChange(bucket, conn);
    this.#checkIdle();
  }

  #retire(conn: PooledConnection, reason: unknown): void {
    if (conn.state !== 'ready' && conn.state !== 'probing') return;
    conn.state = 'retiring';
    conn.closeReason ??= 'invalidated';
    this.options.logger?.debug?.(`[ssh-pool] ${conn.label}: connection ${conn.id} retired`, {
      reason: reason instanceof Error ? reason.message : String(reason),
    });
    const bucket = this.#bucketByConn.get(conn);
    if (bucket) this.#afterSlotChange(bucket, conn);
  }

  #slotFreed(conn: PooledConnection): void {
    const bucket = this.#bucketByConn.get(conn);
    if (bucket) this.#afterSlotChange(bucket, conn);
    this.#checkIdle();
  }

  #connectionLost(conn: PooledConnection, error: unknown): void {
    if (conn.state === 'closed') return;
    const bucket = this.#bucketByConn.get(conn);
    this.#closeConnection(conn, 'closed-by-peer', error, true);
    if (bucket && !this.#closed) this.#grow(bucket);
  }

  #afterSlotChange(bucket: HostBucket, conn: PooledConnection): void {
    if (conn.state === 'retiring' && conn.used === 0) {
      this.#closeConnection(conn, conn.closeReason ?? 'invalidated', undefined, false);
      if (!this.#closed) this.#grow(bucket);
    } else if (conn.state === 'ready') {
      this.#dispatch(bucket);
    }
  }

  // ---- growing, connecting ----------------------------------------------------------------

  /**
   * Opens as many connections as waiters (and `min`) need, within `max`, the circuit breaker,
   * the reconnect backoff and the rate limit; schedules a retry when one of them says "later".
   */
  #grow(bucket: HostBucket): void {
    if (this.#closed) return;
    const maxChannels = bucket.channelLimit;
    const now = Date.now();
    let total = 0;
    let connecting = 0;
    let free = 0;
    for (const c of bucket.connections) {
      total++;
      if (c.state === 'connecting') connecting++;
      else if (this.#routable(c, now)) free += Math.max(0, c.channelLimit - c.used);
    }
    const demand = bucket.liveWaiters - free - connecting * maxChannels;
    let want = Math.max(demand > 0 ? Math.ceil(demand / maxChannels) : 0, bucket.min - total);
    want = Math.min(want, bucket.max - total);
    if (this.#stopped && bucket.liveWaiters === 0) want = 0; // no refill to `min` while draining
    while (want-- > 0) {
      const now = Date.now();
      const blockedUntil = this.#blockedUntil(bucket, now);
      if (blockedUntil !== 0) {
        if (blockedUntil > 0) this.#scheduleRetry(bucket, blockedUntil);
        return;
      }
      bucket.limiter.tryTake(now);
      bucket.breaker.attemptStarted(now);
      this.#connect(bucket);
    }
  }

  /** 0 when a connection may start now; a time to retry at; or -1 to wait for an event. */
  #blockedUntil(bucket: HostBucket, now: number): number {
    if (!bucket.breaker.canAttempt(now)) {
      const until = bucket.breaker.openUntil;
      return until > now ? until : -1; // half-open with its trial in flight: wait for it
    }
    // Half-open: the trial starts now, whatever the backoff says (the cool-down replaced it).
    if (bucket.breaker.state(now) === 'closed' && bucket.nextAttemptAt > now) {
      return bucket.nextAttemptAt;
    }
    const free = bucket.limiter.nextFreeAt(now);
    return free > now ? free : 0;
  }

  #scheduleRetry(bucket: HostBucket, at: number): void {
    if (bucket.retryTimer && bucket.retryAt <= at) return;
    if (bucket.retryTimer) clearTimeout(bucket.retryTimer);
    bucket.retryAt = at;
    bucket.retryTimer = setTimeout(
      () => {
        bucket.retryTimer = undefined;
        this.#grow(bucket);
      },
      Math.max(1, at - Date.now()),
    );
    // Waiters keep the process alive through their own timeouts; this timer never does.
    bucket.retryTimer.unref();
  }

  #backoffMs(failures: number): number {
    const { initialMs, maxMs } = this.options.reconnectBackoff;
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(failures - 1, 30));
    return Math.round(base / 2 + Math.random() * (base / 2)); // "equal jitter"
  }

  #connect(bucket: HostBucket): void {
    // The slot is reserved here, synchronously, before any I/O: `max` cannot be overshot.
    const conn = new PooledConnection(bucket.label, this.#owner, bucket.channelLimit);
    const round = bucket.failureRound;
    bucket.connections.add(conn);
    this.#bucketByConn.set(conn, bucket);
    bucket.peakConnections = Math.max(bucket.peakConnections, bucket.connections.size);
    const started = performance.now();
    const attempt = establish(bucket.host, {
      connectTimeoutMs: this.options.connectTimeoutMs,
      keepaliveIntervalMs: this.options.keepaliveIntervalMs,
      keepaliveCountMax: this.options.keepaliveCountMax,
      credentials: (h) => this.#credentialsFor(h),
      signal: this.#shutdown.signal,
    }).then(
      (established) => {
        if (conn.state !== 'connecting' || this.#closed) {
          conn.attach(established);
          conn.state = 'closed';
          bucket.connections.delete(conn);
          this.#track(conn.end(true));
          return;
        }
        conn.attach(established);
        conn.state = 'ready';
        conn.readyAt = Date.now();
        conn.lastUsedAt = conn.readyAt;
        bucket.opened++;
        bucket.consecutiveFailures = 0;
        bucket.nextAttemptAt = 0;
        bucket.lastConnectError = undefined;
        bucket.breaker.success();
        this.#emit('connect', {
          host: bucket.label,
          connectionId: conn.id,
          durationMs: performance.now() - started,
        });
        this.#dispatch(bucket);
        this.#checkIdle();
      },
      (cause: unknown) => {
        bucket.connections.delete(conn);
        conn.state = 'closed';
        if (this.#closed) {
          this.#rejectWaiters(bucket, new SshPoolClosedError());
          return;
        }
        const error = connectErrorFrom(cause, bucket.label);
        bucket.connectFailures++;
        bucket.lastConnectError = error;
        const now = Date.now();
        // Attempts that ran side by side (a burst to reach `min`, or several waiters) fail as
        // one round: the backoff and the breaker count rounds, not sockets.
        if (round === bucket.failureRound) {
          bucket.failureRound++;
          bucket.consecutiveFailures++;
          bucket.breaker.failure(error, now);
          bucket.nextAttemptAt = now + this.#backoffMs(bucket.consecutiveFailures);
        } else {
          bucket.breaker.recordError(error);
        }
        const retryAt = this.#nextAttemptAt(bucket, now);
        this.#emit('connectError', {
          host: bucket.label,
          error,
          consecutiveFailures: bucket.consecutiveFailures,
          retryInMs: Math.max(0, retryAt - now),
        });
        this.options.logger?.warn?.(`[ssh-pool] ${bucket.label}: connection failed`, {
          code: error.code,
          message: error.message,
        });
        // Callers with nothing else to wait for learn the cause now, not at their timeout
        // (unless they asked to wait for a connection).
        if (!bucket.hasProspect()) bucket.rejectImpatient(error);
        this.#grow(bucket);
        this.#checkIdle();
      },
    );
    this.#track(attempt);
  }

  #credentialsFor(host: NormalizedHost): Credentials {
    let c = this.#credentials.get(host.key);
    if (!c) {
      c = new Credentials(host);
      this.#credentials.set(host.key, c);
    }
    return c;
  }

  #track(p: Promise<unknown>): void {
    const tracked = p.then(
      () => undefined,
      () => undefined,
    );
    this.#pendingConnects.add(tracked);
    void tracked.then(() => this.#pendingConnects.delete(tracked));
  }

  // ---- closing connections ----------------------------------------------------------------

  #closeConnection(
    conn: PooledConnection,
    reason: DisconnectReason,
    error: unknown,
    force: boolean,
  ): void {
    if (conn.state === 'closed') return;
    const bucket = this.#bucketByConn.get(conn);
    conn.state = 'closed';
    conn.closeReason ??= reason;
    bucket?.connections.delete(conn);
    this.#emit('disconnect', {
      host: conn.label,
      connectionId: conn.id,
      reason: conn.closeReason,
      ...(error === undefined ? {} : { error }),
    });
    const ending = conn.end(force);
    this.#closingConnections.add(ending);
    void ending.then(() => this.#closingConnections.delete(ending));
  }

  // ---- health: probes, idle and age eviction ------------------------------------------------

  #startTicking(): void {
    if (this.#tickTimer || this.#closed) return;
    const o = this.options;
    const periods = [
      o.probeIntervalMs,
      o.probeTimeoutMs,
      o.busyProbeIntervalMs,
      o.idleTimeoutMs,
      o.maxAgeMs,
    ].filter((p) => p > 0);
    // A hung connection is found at most one period after its request's probeTimeoutMs.
    const period = Math.max(20, Math.min(250, ...periods.map((p) => Math.ceil(p / 4))));
    this.#tickTimer = setInterval(() => this.#tick(), period);
    this.#tickTimer.unref();
  }

  #tick(): void {
    if (this.#closed) return;
    const now = Date.now();
    const { probeIntervalMs, idleTimeoutMs, maxAgeMs } = this.options;
    for (const bucket of this.#buckets.values()) {
      for (const conn of [...bucket.connections]) {
        if (conn.state === 'connecting' || conn.state === 'closed') continue;
        if (this.#hung(bucket, conn, now)) continue;
        if (conn.used > 0) this.#busyPing(conn, now);
        if (conn.state !== 'ready') continue;
        if (maxAgeMs > 0 && now - conn.readyAt >= maxAgeMs) {
          conn.closeReason = 'max-age';
          if (conn.used === 0) this.#closeConnection(conn, 'max-age', undefined, false);
          else conn.state = 'retiring';
          continue;
        }
        if (conn.used > 0) continue;
        if (
          idleTimeoutMs > 0 &&
          now - conn.lastUsedAt >= idleTimeoutMs &&
          bucket.count() > bucket.min
        ) {
          this.#closeConnection(conn, 'idle', undefined, false);
          continue;
        }
        if (
          probeIntervalMs > 0 &&
          now - Math.max(conn.lastUsedAt, conn.lastProbeAt) >= probeIntervalMs
        ) {
          this.#probe(bucket, conn);
        }
      }
      if (bucket.count() < bucket.min && !this.#stopped) this.#grow(bucket);
      // A connection that looked hung may have answered: serve whoever waits.
      if (bucket.liveWaiters > 0) this.#dispatch(bucket);
    }
  }

  /**
   * A connection with a request (channel open, exec start, SFTP open, probe or ping)
   * unanswered for `probeTimeoutMs`, while the server sent nothing at all for as long, is
   * hung: closed at once, idle or busy. A server that is only slow still sends something (a
   * running command's output, a keep-alive's reply) and is left alone.
   */
  #hung(bucket: HostBucket, conn: PooledConnection, now: number): boolean {
    const { probeTimeoutMs } = this.options;
    const oldest = conn.oldestUnansweredAt();
    if (oldest === undefined || now - oldest < probeTimeoutMs) return false;
    if (now - conn.lastHeardAt < probeTimeoutMs) return false;
    const silentMs = now - Math.max(conn.lastHeardAt, conn.readyAt);
    const error = new SshTimeoutError(
      `${conn.label}: connection ${conn.id} stopped answering (a request unanswered for ${
        now - oldest
      } ms, nothing received for ${silentMs} ms)`,
      { details: { host: conn.label, probeTimeoutMs } },
    );
    bucket.probeFailures++;
    this.#emit('probe', {
      host: conn.label,
      connectionId: conn.id,
      ok: false,
      durationMs: now - oldest,
      error,
    });
    this.options.logger?.warn?.(
      `[ssh-pool] ${conn.label}: connection ${conn.id} hung, replacing it`,
      {
        message: error.message,
      },
    );
    // Channels that never opened ran nothing: their callers may go elsewhere (SshTransport
    // does). Commands already running end when the connection closes (`started: true`).
    conn.closeReason = 'probe-failed';
    conn.abandonPending(
      new SshChannelError(
        `${conn.label}: the connection stopped answering before the channel opened (nothing ran)`,
        { cause: error, details: { host: conn.label, started: false } },
      ),
    );
    this.#closeConnection(conn, 'probe-failed', error, true);
    if (!this.#closed) this.#grow(bucket);
    return true;
  }

  /**
   * Sessions in use on a connection that sent nothing for `busyProbeIntervalMs`: a keep-alive
   * request, which `#hung` watches like any other request. No state change: it stays in use.
   */
  #busyPing(conn: PooledConnection, now: number): void {
    const interval = this.#busyInterval;
    if (interval <= 0) return;
    if (now - Math.max(conn.lastHeardAt, conn.lastBusyPingAt) < interval) return;
    conn.lastBusyPingAt = now;
    // Its timeout is a fallback only: #hung closes the connection first.
    conn.ping(2 * this.options.probeTimeoutMs, 'ping').then(
      () => undefined,
      () => undefined,
    );
  }

  /** Probes one idle connection; it is not handed out until the probe answers. */
  #probe(bucket: HostBucket, conn: PooledConnection): void {
    conn.state = 'probing';
    conn.lastProbeAt = Date.now();
    const started = performance.now();
    conn.ping(this.options.probeTimeoutMs, this.options.probeMethod).then(
      () => {
        if (conn.state !== 'probing') return; // closed meanwhile
        conn.state = 'ready';
        conn.lastProbeAt = Date.now();
        this.#emit('probe', {
          host: conn.label,
          connectionId: conn.id,
          ok: true,
          durationMs: performance.now() - started,
        });
        this.#dispatch(bucket);
      },
      (error: unknown) => {
        if (conn.state === 'closed') return;
        bucket.probeFailures++;
        this.#emit('probe', {
          host: conn.label,
          connectionId: conn.id,
          ok: false,
          durationMs: performance.now() - started,
          error,
        });
        this.options.logger?.warn?.(
          `[ssh-pool] ${conn.label}: probe failed, replacing connection ${conn.id}`,
          {
            message: error instanceof Error ? error.message : String(error),
          },
        );
        this.#closeConnection(conn, 'probe-failed', error, true);
        this.#grow(bucket);
      },
    );
  }

  // ---- stats --------------------------------------------------------------------------------

  /** A snapshot of connections, sessions, waiters, failures and acquire latency. */
  stats(): SshPoolStats {
    const hosts: SshHostStats[] = [];
    const sum = {
      connections: 0,
      connecting: 0,
      idle: 0,
      busy: 0,
      probing: 0,
      leases: 0,
      waiters: 0,
      connectFailures: 0,
      probeFailures: 0,
    };
    for (const b of this.#buckets.values()) {
      const h = {
        connections: 0,
        connecting: 0,
        idle: 0,
        busy: 0,
        probing: 0,
        retiring: 0,
        leases: 0,
      };
      for (const c of b.connections) {
        h.connections++;
        h.leases += c.leases.size;
        if (c.state === 'connecting') h.connecting++;
        else if (c.state === 'probing') h.probing++;
        else if (c.state === 'retiring') h.retiring++;
        else if (c.state === 'ready') {
          if (c.used === 0) h.idle++;
          else h.busy++;
        }
      }
      hosts.push({
        host: b.label,
        ...h,
        waiters: b.liveWaiters,
        circuit: b.breaker.state(),
        opened: b.opened,
        connectFailures: b.connectFailures,
        probeFailures: b.probeFailures,
        acquireTimeouts: b.acquireTimeouts,
        peakConnections: b.peakConnections,
        channelLimit: b.channelLimit,
        commandChannel: b.commandChannel && this.options.commandChannel,
        commands: { ...b.commands },
        acquireLatencyMs: b.latency.summary(),
      });
      sum.connections += h.connections;
      sum.connecting += h.connecting;
      sum.idle += h.idle;
      sum.busy += h.busy;
      sum.probing += h.probing;
      sum.leases += h.leases;
      sum.waiters += b.liveWaiters;
      sum.connectFailures += b.connectFailures;
      sum.probeFailures += b.probeFailures;
    }
    return {
      closed: this.#closed,
      draining: this.#draining,
      ...sum,
      acquireLatencyMs: this.#latency.summary(),
      hosts,
    };
  }

  /** The most recent acquire wait times in ms (up to 1 024), for percentiles of your own. */
  acquireLatencies(): number[] {
    return this.#latency.values();
  }

  // ---- drain / close ------------------------------------------------------------------------

  #busy(includeWaiters: boolean): boolean {
    for (const b of this.#buckets.values()) {
      if (includeWaiters && b.liveWaiters > 0) return true;
      for (const c of b.connections) if (c.used > 0) return true;
    }
    return false;
  }

  #checkIdle(): void {
    if (this.#idleListeners.length === 0) return;
    const listeners = this.#idleListeners;
    this.#idleListeners = [];
    for (const l of listeners) l();
  }

  /** Resolves once `busy(includeWaiters)` is false. */
  async #whenIdle(includeWaiters: boolean): Promise<void> {
    while (this.#busy(includeWaiters)) {
      await new Promise<void>((resolve) => this.#idleListeners.push(resolve));
    }
  }

  /**
   * Stops accepting new acquires, lets callers already waiting and sessions in use finish,
   * then closes every connection.
   */
  drain(): Promise<void> {
    this.#drainPromise ??= (async () => {
      this.#stopped = true;
      this.#draining = true;
      await this.#whenIdle(true);
      await this.close();
    })();
    return this.#drainPromise;
  }

  /**
   * Stops accepting new acquires, fails callers still waiting (`E_SSH_POOL_CLOSED`), waits up
   * to `closeTimeoutMs` for sessions in use, then closes every connection. Afterwards no timer
   * or socket of the pool keeps the process alive. Idempotent.
   */
  close(): Promise<void> {
    this.#closePromise ??= this.#close();
    return this.#closePromise;
  }

  async #close(): Promise<void> {
    this.#stopped = true;
    for (const b of this.#buckets.values()) this.#rejectWaiters(b, new SshPoolClosedError());
    if (this.#busy(false)) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.#whenIdle(false),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.options.closeTimeoutMs);
        }),
      ]);
      if (timer) clearTimeout(timer);
    }
    this.#closed = true;
    this.#draining = false;
    if (this.#tickTimer) clearInterval(this.#tickTimer);
    this.#tickTimer = undefined;
    this.#shutdown.abort();
    for (const b of this.#buckets.values()) {
      if (b.retryTimer) clearTimeout(b.retryTimer);
      b.retryTimer = undefined;
      for (const c of [...b.connections]) {
        if (c.state === 'connecting') continue; // its attempt is aborted and cleans up
        c.closeReason = 'pool-closed';
        this.#closeConnection(c, 'pool-closed', undefined, c.used > 0);
      }
    }
    await Promise.allSettled([...this.#pendingConnects]);
    await Promise.allSettled([...this.#closingConnections]);
    this.#checkIdle();
  }
}
