// The errors this package throws: one small class per `E_SSH_*` code, all CrystalMath errors
// (match them with `isCrystalMathError(err, 'E_SSH_AUTH')`). Messages start with
// `[ssh-pool]`, name the host as `user@host:port` and never carry a secret.

import {
  CrystalMathError,
  type CrystalMathErrorOptions,
  type ErrorCode,
  isCrystalMathError,
} from '@crystalmath/core';

/** The codes of this package's own errors. */
export type SshErrorCode = Extract<ErrorCode, `E_SSH_${string}`>;

/** Base class of every `E_SSH_*` error. */
export class SshError extends CrystalMathError {
  declare readonly code: SshErrorCode;
  constructor(code: SshErrorCode, message: string, options: CrystalMathErrorOptions = {}) {
    super(code, message.startsWith('[ssh-pool]') ? message : `[ssh-pool] ${message}`, options);
  }
}

/** Thrown when the TCP connection or the SSH handshake to a host fails (refused, reset, DNS). */
export class SshConnectError extends SshError {
  constructor(message: string, options: CrystalMathErrorOptions = {}) {
    super('E_SSH_CONNECT', message, options);
  }
}

/** Thrown when the server refused every authentication method offered. */
export class SshAuthError extends SshError {
  constructor(message: string, options: CrystalMathErrorOptions = {}) {
    super('E_SSH_AUTH', message, options);
  }
}

/** What `SshHostKeyError` reports about the key the server presented. */
export interface HostKeyErrorDetails {
  /** The name looked up in known_hosts: `host`, or `[host]:port` when the port is not 22. */
  readonly hostname: string;
  readonly port: number;
  /** Key type presented by the server, e.g. `ssh-ed25519`. */
  readonly keyType: string;
  /** `SHA256:...` fingerprint of the presented key, as `ssh-keygen -lf` prints it. */
  readonly fingerprint: string;
  readonly knownHostsPath: string;
  /** Fingerprints on record for this host (mismatch), when any. */
  readonly expected?: readonly string[];
}

/**
 * Thrown when a host key cannot be trusted: `E_SSH_HOSTKEY_UNKNOWN` (not on record, or no
 * known_hosts file), `E_SSH_HOSTKEY_MISMATCH` (a different key is on record) or
 * `E_SSH_HOSTKEY_REVOKED` (marked `@revoked`).
 */
export class SshHostKeyError extends SshError {
  readonly fingerprint: string;
  readonly hostname: string;
  constructor(
    code: 'E_SSH_HOSTKEY_UNKNOWN' | 'E_SSH_HOSTKEY_MISMATCH' | 'E_SSH_HOSTKEY_REVOKED',
    message: string,
    details: HostKeyErrorDetails,
  ) {
    super(code, message, { details: { ...details } });
    this.fingerprint = details.fingerprint;
    this.hostname = details.hostname;
  }
}

/** Thrown when no pooled session became free within the acquire timeout. */
export class SshAcquireTimeoutError extends SshError {
  constructor(message: string, options: CrystalMathErrorOptions = {}) {
    super('E_SSH_ACQUIRE_TIMEOUT', message, options);
  }
}

/** Thrown at once while a host's circuit breaker is open after repeated connection failures. */
export class SshCircuitOpenError extends SshError {
  constructor(message: string, options: CrystalMathErrorOptions = {}) {
    super('E_SSH_CIRCUIT_OPEN', message, options);
  }
}

/** Thrown when a channel cannot be opened, or its connection dropped while it was in use. */
export class SshChannelError extends SshError {
  constructor(message: string, options: CrystalMathErrorOptions = {}) {
    super('E_SSH_CHANNEL', message, options);
  }
}

/** Thrown when an SFTP operation fails; `details.path` names the remote path. */
export class SshSftpError extends SshError {
  constructor(message: string, options: CrystalMathErrorOptions = {}) {
    super('E_SSH_SFTP', message, options);
  }
}

/** Thrown when connecting, opening a channel or a probe takes longer than its timeout. */
export class SshTimeoutError extends SshError {
  constructor(message: string, options: CrystalMathErrorOptions = {}) {
    super('E_SSH_TIMEOUT', message, options);
  }
}

/** Thrown when the pool is closed or draining and no longer accepts work. */
export class SshPoolClosedError extends SshError {
  constructor(message = 'the pool is closed', options: CrystalMathErrorOptions = {}) {
    super('E_SSH_POOL_CLOSED', message, options);
  }
}

/** Thrown when host options or an `~/.ssh/config` entry cannot be used. */
export class SshConfigError extends SshError {
  constructor(message: string, options: CrystalMathErrorOptions = {}) {
    super('E_SSH_CONFIG', message, options);
  }
}

/**
 * Errors after which retrying the same connection settings cannot succeed by itself: the pool
 * fails waiters at once instead of retrying (host key, authentication, configuration).
 */
export function isPermanentConnectError(error: unknown): boolean {
  return (
    isCrystalMathError(error, 'E_SSH_HOSTKEY_UNKNOWN') ||
    isCrystalMathError(error, 'E_SSH_HOSTKEY_MISMATCH') ||
    isCrystalMathError(error, 'E_SSH_HOSTKEY_REVOKED') ||
    isCrystalMathError(error, 'E_SSH_AUTH') ||
    isCrystalMathError(error, 'E_SSH_CONFIG') ||
    isCrystalMathError(error, 'E_VALIDATION')
  );
}

/** Shape of the errors ssh2 and node:net emit. */
interface LowLevelError {
  readonly message?: string;
  readonly level?: string;
  readonly code?: string | number;
}

/**
 * Turns an ssh2 / socket error raised while connecting into a typed error. `label` is the
 * secret-free `user@host:port`.
 */
export function connectErrorFrom(error: unknown, label: string): SshError {
  if (error instanceof SshError) return error;
  const e = (error ?? {}) as LowLevelError;
  const what = e.code !== undefined ? `${e.code}` : (e.message ?? String(error));
  const details = { host: label };
  switch (e.level) {
    case 'client-authentication':
      return new SshAuthError(
        `${label}: authentication failed (the server refused every key, agent identity or password offered)`,
        { cause: error, details },
      );
    case 'client-timeout':
      return new SshTimeoutError(`${label}: ${e.message ?? 'timed out'}`, {
        cause: error,
        details,
      });
    default:
      return new SshConnectError(`${label}: connection failed: ${what}`, {
        cause: error,
        details,
      });
  }
}
