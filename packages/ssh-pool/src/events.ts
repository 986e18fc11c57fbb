// The pool's typed events and its statistics snapshot. Payloads name hosts as the secret-free
// `user@host:port` label and never carry key material or passwords.

import type { CircuitState } from './circuit-breaker.js';
import type { SshError } from './errors.js';

/** Why a connection was closed. */
export type DisconnectReason =
  | 'idle'
  | 'max-age'
  | 'probe-failed'
  | 'invalidated'
  | 'closed-by-peer'
  | 'pool-closed';

/** Event name -> payload. Subscribe with `pool.on(name, listener)`. */
export interface SshPoolEvents {
  /** A connection is established and ready for sessions. */
  connect: { readonly host: string; readonly connectionId: string; readonly durationMs: number };
  /** A connection attempt failed; the next one waits `retryInMs` (backoff, breaker, rate limit). */
  connectError: {
    readonly host: string;
    readonly error: SshError;
    readonly consecutiveFailures: number;
    readonly retryInMs: number;
  };
  /** A connection was closed (by the pool or the peer). */
  disconnect: {
    readonly host: string;
    readonly connectionId: string;
    readonly reason: DisconnectReason;
    readonly error?: unknown;
  };
  /** A session was handed out after waiting `waitMs`. */
  acquire: { readonly host: string; readonly connectionId: string; readonly waitMs: number };
  /** A session was given back. */
  release: { readonly host: string; readonly connectionId: string };
  /** An acquire gave up (timeout, abort, circuit open, pool closed, connection failure). */
  acquireError: { readonly host: string; readonly error: unknown; readonly waitMs: number };
  /** A health probe finished. */
  probe: {
    readonly host: string;
    readonly connectionId: string;
    readonly ok: boolean;
    readonly durationMs: number;
    readonly error?: unknown;
  };
  /** A host's circuit breaker changed state. */
  circuit: { readonly host: string; readonly state: CircuitState; readonly error?: unknown };
}

export type SshPoolEventName = keyof SshPoolEvents;

/** Acquire latency over the most recent acquires (up to 1 024). */
export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** One host's state. */
export interface SshHostStats {
  /** `user@host:port`. */
  readonly host: string;
  /** Connections open or opening (never above `max`). */
  readonly connections: number;
  readonly connecting: number;
  /** Ready with no session in use. */
  readonly idle: number;
  /** Ready with at least one session in use. */
  readonly busy: number;
  /** Being probed (not handed out meanwhile). */
  readonly probing: number;
  /** No longer handed out; closed once its sessions end. */
  readonly retiring: number;
  /** Sessions in use. */
  readonly leases: number;
  /** Callers waiting for a session. */
  readonly waiters: number;
  readonly circuit: CircuitState;
  /** Totals since the pool started. */
  readonly opened: number;
  readonly connectFailures: number;
  readonly probeFailures: number;
  readonly acquireTimeouts: number;
  /** Most connections open at once. */
  readonly peakConnections: number;
  /**
   * Exec sessions per connection: `maxChannels`, or the lower limit learned when the server
   * refused a session (its `MaxSessions`, less the SFTP session when one is open).
   */
  readonly channelLimit: number;
  /** Commands may use a persistent command channel on this host (false once it refused one). */
  readonly commandChannel: boolean;
  /**
   * Commands run, per route: on a connection's command channel (one round trip) or in an exec
   * channel of their own.
   */
  readonly commands: { readonly channel: number; readonly exec: number };
  readonly acquireLatencyMs: LatencySummary;
}

/** A snapshot of the whole pool. */
export interface SshPoolStats {
  readonly closed: boolean;
  readonly draining: boolean;
  readonly connections: number;
  readonly connecting: number;
  readonly idle: number;
  readonly busy: number;
  readonly probing: number;
  readonly leases: number;
  readonly waiters: number;
  readonly connectFailures: number;
  readonly probeFailures: number;
  readonly acquireLatencyMs: LatencySummary;
  readonly hosts: readonly SshHostStats[];
}
