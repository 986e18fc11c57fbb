// The pool's option and host types, their documented defaults, and the normalisation that
// turns a host config into a pool key (hosts with the same identity share connections).

import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CrystalMathError, ValidationError } from '@crystalmath/core';
import type { HostKeyPolicy } from './known-hosts.js';

/**
 * How to reach one SSH host. Secrets are given as callbacks or key material; none of them is
 * ever logged or put into an error or event.
 *
 * @example
 * const host: SshHostConfig = {
 *   host: 'login.cluster.org',
 *   username: 'me',
 *   privateKeyPath: '~/.ssh/id_ed25519',
 * };
 */
export interface SshHostConfig {
  readonly host: string;
  /** Default 22. */
  readonly port?: number;
  readonly username: string;
  /** Private key material (OpenSSH, PEM or PuTTY format). */
  readonly privateKey?: string | Buffer;
  /** Private key file (`~` expanded). Read when a connection is made. */
  readonly privateKeyPath?: string;
  /** Asked once per pool when the private key is encrypted; the answer stays in memory. */
  readonly passphrase?: () => Promise<string>;
  /** Asked once per pool when the server wants a password (also answers keyboard-interactive). */
  readonly password?: () => Promise<string>;
  /** Path of an ssh-agent socket (e.g. `process.env.SSH_AUTH_SOCK`). */
  readonly agent?: string;
  /** known_hosts file to verify the host key against (`~` expanded). Default `~/.ssh/known_hosts`. */
  readonly knownHostsPath?: string;
  /**
   * `strict` (default): an unknown host key is an error. `tofu`: an unknown host's key is
   * written to `knownHostsPath` on first connection; a changed key is still an error.
   */
  readonly hostKeyPolicy?: HostKeyPolicy;
  /** Write hashed (`|1|...`) names when recording keys under `tofu`. Default false. */
  readonly hashKnownHosts?: boolean;
  /** Jump hosts, first to last (like `ProxyJump a,b`): each hop is reached through the previous. */
  readonly jump?: readonly SshHostConfig[];
  /** SSH keep-alive interval for this host. Default: the pool's `keepaliveIntervalMs`. */
  readonly keepaliveIntervalMs?: number;
  /** Time to establish a connection (TCP, handshake, authentication). Default: the pool's. */
  readonly connectTimeoutMs?: number;
  /** Connections kept to this host at most. Default: the pool's `max`. */
  readonly maxConnections?: number;
  /** Connections kept open to this host at least. Default: the pool's `min`. */
  readonly minConnections?: number;
}

/** Per-host circuit breaker: after `failureThreshold` consecutive connection failures, the
 * host fails fast for `cooldownMs` (doubling up to `maxCooldownMs` while it keeps failing). */
export interface CircuitBreakerOptions {
  /** Default 5. */
  readonly failureThreshold?: number;
  /** Default 5 000 ms. */
  readonly cooldownMs?: number;
  /** Default 60 000 ms. */
  readonly maxCooldownMs?: number;
}

/** At most `limit` new connections to one host per sliding `intervalMs`. */
export interface ConnectRateLimitOptions {
  /** Default 10. */
  readonly limit?: number;
  /** Default 10 000 ms. */
  readonly intervalMs?: number;
}

/** Delay before reconnecting after a failed attempt: exponential with jitter. */
export interface ReconnectBackoffOptions {
  /** Default 250 ms. */
  readonly initialMs?: number;
  /** Default 30 000 ms. */
  readonly maxMs?: number;
}

/** A minimal structured logger (console works). Never receives secrets. */
export interface SshPoolLogger {
  debug?(message: string, fields?: Record<string, unknown>): void;
  info?(message: string, fields?: Record<string, unknown>): void;
  warn?(message: string, fields?: Record<string, unknown>): void;
}

/** How a connection's health is probed: an SSH keep-alive request (default) or `true` run in a channel. */
export type ProbeMethod = 'ping' | 'exec';

export interface SshPoolOptions {
  /** Connections kept open per host once it has been used. Default 0. */
  readonly min?: number;
  /** Connections per host at most (connecting ones included). Default 4. */
  readonly max?: number;
  /** Concurrent sessions (leases) per connection at most. Default 8, below OpenSSH's
   * MaxSessions=10 with room for the connection's SFTP session. An upper bound: when the
   * server refuses a session, the host's limit drops to what the connection held open
   * (`stats().hosts[].channelLimit`) and the refused request waits for a channel instead. */
  readonly maxChannels?: number;
  /** Close a connection unused for this long (down to `min`). Default 300 000 ms; 0 = never. */
  readonly idleTimeoutMs?: number;
  /** Retire a connection this old (once its sessions end). Default 3 600 000 ms; 0 = never. */
  readonly maxAgeMs?: number;
  /** How long `acquire` waits for a session by default. Default 30 000 ms. */
  readonly acquireTimeoutMs?: number;
  /** Probe connections idle for this long. Default 30 000 ms; 0 = no probes. */
  readonly probeIntervalMs?: number;
  /**
   * A probe that takes longer fails, and its connection is replaced. Also: a connection with
   * any request (channel open, exec start, SFTP open, probe, ping) unanswered this long, while
   * the server sent nothing at all for as long, is hung and replaced at once, busy or idle.
   * Default 5 000 ms.
   */
  readonly probeTimeoutMs?: number;
  /**
   * A connection with sessions in use that received nothing for this long (or for
   * `probeIntervalMs`, when shorter) is pinged with an SSH keep-alive request, so a command
   * running on a connection that hangs ends with `E_SSH_CHANNEL` (`started: true`) within
   * `busyProbeIntervalMs + probeTimeoutMs` (+ up to 250 ms). Default 5 000 ms (10 s in all
   * with the default `probeTimeoutMs`); 0 = no pings.
   */
  readonly busyProbeIntervalMs?: number;
  /** Default `ping`. */
  readonly probeMethod?: ProbeMethod;
  /** TCP connect + handshake + authentication, per hop. Default 10 000 ms. */
  readonly connectTimeoutMs?: number;
  /** SSH keep-alive interval. Default 15 000 ms; 0 = off. */
  readonly keepaliveIntervalMs?: number;
  /** Unanswered keep-alives before the connection is dropped. Default 3. */
  readonly keepaliveCountMax?: number;
  /** Opening an exec channel (until the command starts). Default 20 000 ms. */
  readonly channelOpenTimeoutMs?: number;
  /** After a timeout or abort: SIGTERM, then SIGKILL and close after this long. Default 2 000 ms. */
  readonly killGraceMs?: number;
  /** How long `close()` waits for sessions in use before cutting them. Default 5 000 ms. */
  readonly closeTimeoutMs?: number;
  /**
   * Run small commands on a persistent command channel per connection (a POSIX sh helper in
   * one long-lived session: one round trip per command instead of a new session). Default
   * true; false = an exec channel per command, as before.
   */
  readonly commandChannel?: boolean;
  readonly circuitBreaker?: CircuitBreakerOptions;
  readonly connectRateLimit?: ConnectRateLimitOptions;
  readonly reconnectBackoff?: ReconnectBackoffOptions;
  readonly logger?: SshPoolLogger;
}

/** Options with every default applied. */
export interface ResolvedPoolOptions {
  readonly min: number;
  readonly max: number;
  readonly maxChannels: number;
  readonly idleTimeoutMs: number;
  readonly maxAgeMs: number;
  readonly acquireTimeoutMs: number;
  readonly probeIntervalMs: number;
  readonly probeTimeoutMs: number;
  readonly busyProbeIntervalMs: number;
  readonly probeMethod: ProbeMethod;
  readonly connectTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly keepaliveCountMax: number;
  readonly channelOpenTimeoutMs: number;
  readonly killGraceMs: number;
  readonly closeTimeoutMs: number;
  readonly commandChannel: boolean;
  readonly circuitBreaker: Required<CircuitBreakerOptions>;
  readonly connectRateLimit: Required<ConnectRateLimitOptions>;
  readonly reconnectBackoff: Required<ReconnectBackoffOptions>;
  readonly logger: SshPoolLogger | undefined;
}

function configError(field: string, message: string): CrystalMathError {
  return new CrystalMathError('E_CONFIG', `[ssh-pool] options.${field}: ${message}`, {
    details: { field: `options.${field}` },
  });
}

function int(value: number | undefined, field: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || !Number.isInteger(value) || value < min) {
    throw configError(field, `must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

function bool(value: boolean | undefined, field: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean')
    throw configError(field, `must be a boolean, got ${String(value)}`);
  return value;
}

/** Applies defaults and validates; throws `E_CONFIG` naming the field. */
export function resolvePoolOptions(o: SshPoolOptions = {}): ResolvedPoolOptions {
  const max = int(o.max, 'max', 4, 1);
  const min = int(o.min, 'min', 0, 0);
  if (min > max) throw configError('min', `must not exceed max (${max}), got ${min}`);
  const cb = o.circuitBreaker ?? {};
  const rl = o.connectRateLimit ?? {};
  const bo = o.reconnectBackoff ?? {};
  const probeMethod = o.probeMethod ?? 'ping';
  if (probeMethod !== 'ping' && probeMethod !== 'exec') {
    throw configError('probeMethod', `must be 'ping' or 'exec', got ${String(probeMethod)}`);
  }
  return {
    min,
    max,
    maxChannels: int(o.maxChannels, 'maxChannels', 8, 1),
    idleTimeoutMs: int(o.idleTimeoutMs, 'idleTimeoutMs', 300_000, 0),
    maxAgeMs: int(o.maxAgeMs, 'maxAgeMs', 3_600_000, 0),
    acquireTimeoutMs: int(o.acquireTimeoutMs, 'acquireTimeoutMs', 30_000, 1),
    probeIntervalMs: int(o.probeIntervalMs, 'probeIntervalMs', 30_000, 0),
    probeTimeoutMs: int(o.probeTimeoutMs, 'probeTimeoutMs', 5_000, 1),
    busyProbeIntervalMs: int(o.busyProbeIntervalMs, 'busyProbeIntervalMs', 5_000, 0),
    probeMethod,
    connectTimeoutMs: int(o.connectTimeoutMs, 'connectTimeoutMs', 10_000, 1),
    keepaliveIntervalMs: int(o.keepaliveIntervalMs, 'keepaliveIntervalMs', 15_000, 0),
    keepaliveCountMax: int(o.keepaliveCountMax, 'keepaliveCountMax', 3, 1),
    channelOpenTimeoutMs: int(o.channelOpenTimeoutMs, 'channelOpenTimeoutMs', 20_000, 1),
    killGraceMs: int(o.killGraceMs, 'killGraceMs', 2_000, 0),
    closeTimeoutMs: int(o.closeTimeoutMs, 'closeTimeoutMs', 5_000, 0),
    commandChannel: bool(o.commandChannel, 'commandChannel', true),
    circuitBreaker: {
      failureThreshold: int(cb.failureThreshold, 'circuitBreaker.failureThreshold', 5, 1),
      cooldownMs: int(cb.cooldownMs, 'circuitBreaker.cooldownMs', 5_000, 0),
      maxCooldownMs: int(cb.maxCooldownMs, 'circuitBreaker.maxCooldownMs', 60_000, 0),
    },
    connectRateLimit: {
      limit: int(rl.limit, 'connectRateLimit.limit', 10, 1),
      intervalMs: int(rl.intervalMs, 'connectRateLimit.intervalMs', 10_000, 0),
    },
    reconnectBackoff: {
      initialMs: int(bo.initialMs, 'reconnectBackoff.initialMs', 250, 0),
      maxMs: int(bo.maxMs, 'reconnectBackoff.maxMs', 30_000, 0),
    },
    logger: o.logger,
  };
}

/** `~` and `~/x` expanded against the home directory; other paths unchanged. */
export function expandHome(path: string): string {
  if (path === '~') return homedir();
  if (path.startsWith('~/')) return join(homedir(), path.slice(2));
  return path;
}

/** A host config with defaults applied and paths expanded. */
export interface NormalizedHost {
  readonly config: SshHostConfig;
  readonly host: string;
  readonly port: number;
  readonly username: string;
  readonly knownHostsPath: string;
  readonly hostKeyPolicy: HostKeyPolicy;
  readonly privateKeyPath: string | undefined;
  readonly jump: readonly NormalizedHost[];
  /** Secret-free identity: `user@host:port` (with ` via ...` for jumps). */
  readonly label: string;
  /** Equal for configs that may share connections. */
  readonly key: string;
}

function field(path: string, name: string): string {
  return path === '' ? name : `${path}.${name}`;
}

/** Validates a host config (throws `E_VALIDATION` naming the field) and computes its key. */
export function normalizeHost(config: SshHostConfig, path = 'host', depth = 0): NormalizedHost {
  if (typeof config !== 'object' || config === null) {
    throw new ValidationError(path, 'must be an object');
  }
  if (typeof config.host !== 'string' || config.host.trim() === '') {
    throw new ValidationError(field(path, 'host'), 'must be a non-empty string');
  }
  if (typeof config.username !== 'string' || config.username === '') {
    throw new ValidationError(field(path, 'username'), 'must be a non-empty string');
  }
  const port = config.port ?? 22;
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new ValidationError(field(path, 'port'), `must be an integer in 1..65535, got ${port}`);
  }
  const policy = config.hostKeyPolicy ?? 'strict';
  if (policy !== 'strict' && policy !== 'tofu') {
    throw new ValidationError(field(path, 'hostKeyPolicy'), `must be 'strict' or 'tofu'`);
  }
  for (const name of ['passphrase', 'password'] as const) {
    if (config[name] !== undefined && typeof config[name] !== 'function') {
      throw new ValidationError(field(path, name), 'must be a function returning a promise');
    }
  }
  for (const name of [
    'keepaliveIntervalMs',
    'connectTimeoutMs',
    'maxConnections',
    'minConnections',
  ] as const) {
    const v = config[name];
    if (v !== undefined && (!Number.isInteger(v) || v < 0)) {
      throw new ValidationError(field(path, name), `must be a non-negative integer, got ${v}`);
    }
  }
  if (config.maxConnections === 0) {
    throw new ValidationError(field(path, 'maxConnections'), 'must be at least 1');
  }
  if (depth > 8) throw new ValidationError(field(path, 'jump'), 'is nested too deeply');
  const jump = (config.jump ?? []).map((j, i) =>
    normalizeHost(j, `${field(path, 'jump')}[${i}]`, depth + 1),
  );
  const knownHostsPath = expandHome(config.knownHostsPath ?? '~/.ssh/known_hosts');
  if (config.privateKeyPath !== undefined && config.privateKeyPath === '') {
    throw new ValidationError(field(path, 'privateKeyPath'), 'must not be empty');
  }
  const privateKeyPath =
    config.privateKeyPath === undefined ? undefined : expandHome(config.privateKeyPath);
  const host = config.host.trim();
  const hostPart = host.includes(':') ? `[${host}]` : host;
  const label = `${config.username}@${hostPart}:${port}${
    jump.length ? ` via ${jump.map((j) => j.label).join(' -> ')}` : ''
  }`;
  const keyMaterial =
    config.privateKey === undefined
      ? null
      : createHash('sha256').update(config.privateKey).digest('hex');
  const key = JSON.stringify([
    config.username,
    host.toLowerCase(),
    port,
    privateKeyPath ?? null,
    keyMaterial,
    config.agent ?? null,
    config.password ? 1 : 0,
    config.passphrase ? 1 : 0,
    knownHostsPath,
    policy,
    jump.map((j) => j.key),
  ]);
  return {
    config,
    host,
    port,
    username: config.username,
    knownHostsPath,
    hostKeyPolicy: policy,
    privateKeyPath,
    jump,
    label,
    key,
  };
}
