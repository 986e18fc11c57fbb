// Which runner and transport errors mean "the target cannot be reached right now" (wait and
// retry, the job is not at fault) and which mean "this can never work as configured" (fail
// fast). The queue decides with these whether a failed runner call uses up a job's attempt.

import { isCrystalMathError } from './errors.js';

/** Codes that say the target could not be reached or stopped answering. */
const TRANSIENT_CODES: ReadonlySet<string> = new Set([
  'E_TRANSPORT_TIMEOUT',
  'E_TRANSPORT_CLOSED',
  'E_SSH_CONNECT',
  'E_SSH_TIMEOUT',
  'E_SSH_CIRCUIT_OPEN',
  'E_SSH_ACQUIRE_TIMEOUT',
  'E_SSH_CHANNEL',
  'E_RUNNER_TIMEOUT',
]);

/** Codes after which retrying the same settings cannot succeed by itself. */
const PERMANENT_CODES: ReadonlySet<string> = new Set([
  'E_SSH_AUTH',
  'E_SSH_HOSTKEY_UNKNOWN',
  'E_SSH_HOSTKEY_MISMATCH',
  'E_SSH_HOSTKEY_REVOKED',
  'E_SSH_CONFIG',
  'E_CONFIG',
  'E_VALIDATION',
  'E_PATH_UNSAFE',
  'E_UNSUPPORTED',
]);

/** Socket and resolver codes (node:net, ssh2) of a peer that is down or out of reach. */
const TRANSIENT_ERRNO: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EPIPE',
  'EAI_AGAIN',
]);

const MAX_DEPTH = 8;

/** The error and its `cause` chain, outermost first (bounded: causes may form a cycle). */
function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = error; e !== undefined && e !== null && chain.length < MAX_DEPTH; ) {
    if (chain.includes(e)) break;
    chain.push(e);
    e = typeof e === 'object' ? (e as { cause?: unknown }).cause : undefined;
  }
  return chain;
}

/**
 * True when `error` (or any error in its `cause` chain) says the target could not be reached:
 * connection refused, reset or timed out, host or network unreachable, a circuit breaker open,
 * a call abandoned at its deadline (`E_RUNNER_TIMEOUT`). False as soon as the chain holds a
 * permanent fault (authentication refused, host key not trusted, bad configuration), which
 * must fail at once.
 *
 * @example
 * if (isTransientTargetError(err)) retryLater(); else failJob(err);
 */
export function isTransientTargetError(error: unknown): boolean {
  const chain = causeChain(error);
  if (chain.some(isPermanentCode)) return false;
  return chain.some((e) => {
    if (isCrystalMathError(e)) return TRANSIENT_CODES.has(e.code);
    const code = typeof e === 'object' ? (e as { code?: unknown }).code : undefined;
    return typeof code === 'string' && TRANSIENT_ERRNO.has(code);
  });
}

/**
 * True when `error` or a cause is a fault of the target's settings that retrying cannot cure:
 * authentication refused, host key unknown, changed or revoked, bad configuration.
 */
export function isPermanentTargetError(error: unknown): boolean {
  return causeChain(error).some(isPermanentCode);
}

function isPermanentCode(error: unknown): boolean {
  return isCrystalMathError(error) && PERMANENT_CODES.has(error.code);
}

/** The innermost CrystalMath error code in `error`'s cause chain (the typed reason), or null. */
export function rootErrorCode(error: unknown): string | null {
  let found: string | null = null;
  for (const e of causeChain(error)) if (isCrystalMathError(e)) found = e.code;
  return found;
}
