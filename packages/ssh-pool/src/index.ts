// @crystalmath/ssh-pool: pooled ssh2 connections that never freeze (lock-free around network
// I/O, exact slot accounting, probes, circuit breaker, rate limit), host keys verified against
// known_hosts by default, `~/.ssh/config` aliases, and SshTransport for @crystalmath/core.

export type { CircuitState } from './circuit-breaker.js';
export {
  buildCommandLine,
  type CommandLineOptions,
  MAX_COMMAND_LINE_BYTES,
} from './command-line.js';
export { hostKeyAlgorithms } from './connect.js';
export type { LeaseExecOptions, SshLease } from './connection.js';
export {
  type HostKeyErrorDetails,
  SshAcquireTimeoutError,
  SshAuthError,
  SshChannelError,
  SshCircuitOpenError,
  SshConfigError,
  SshConnectError,
  SshError,
  type SshErrorCode,
  SshHostKeyError,
  SshPoolClosedError,
  SshSftpError,
  SshTimeoutError,
} from './errors.js';
export type {
  DisconnectReason,
  LatencySummary,
  SshHostStats,
  SshPoolEventName,
  SshPoolEvents,
  SshPoolStats,
} from './events.js';
export {
  checkHostKey,
  fingerprint,
  type HostKeyPolicy,
  type HostKeyStatus,
  type KnownHostEntry,
  knownHostsLine,
  knownHostsName,
  parseKnownHosts,
  type VerifyHostKeyOptions,
  verifyHostKey,
} from './known-hosts.js';
export type {
  CircuitBreakerOptions,
  ConnectRateLimitOptions,
  ProbeMethod,
  ReconnectBackoffOptions,
  ResolvedPoolOptions,
  SshHostConfig,
  SshPoolLogger,
  SshPoolOptions,
} from './options.js';
export { type ResolveSshConfigOptions, resolveSshConfig } from './ssh-config.js';
export { type AcquireOptions, SshPool } from './ssh-pool.js';
export { SshTransport, type SshTransportOptions } from './ssh-transport.js';
