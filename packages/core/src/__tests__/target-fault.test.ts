import { describe, expect, it } from 'vitest';
import { AbortError, CrystalMathError, ValidationError } from '../errors.js';
import { isPermanentTargetError, isTransientTargetError, rootErrorCode } from '../target-fault.js';

function wrapped(inner: unknown): CrystalMathError {
  return new CrystalMathError('E_RUNNER_SUBMIT', '[runner-process] mkdir failed', { cause: inner });
}

describe('isTransientTargetError', () => {
  it('sees an unreachable host through the runner and transport wrappers', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), {
      code: 'ECONNREFUSED',
    });
    expect(isTransientTargetError(wrapped(refused))).toBe(true);
    expect(isTransientTargetError(wrapped(new CrystalMathError('E_SSH_CONNECT', 'refused')))).toBe(
      true,
    );
    expect(isTransientTargetError(new CrystalMathError('E_SSH_CIRCUIT_OPEN', 'open'))).toBe(true);
    expect(isTransientTargetError(new CrystalMathError('E_RUNNER_TIMEOUT', 'deadline'))).toBe(true);
  });

  it('is false for permanent faults, even under a transient-looking wrapper', () => {
    const auth = new CrystalMathError('E_SSH_AUTH', 'refused every key');
    expect(isTransientTargetError(wrapped(auth))).toBe(false);
    expect(
      isTransientTargetError(new CrystalMathError('E_SSH_TIMEOUT', 'x', { cause: auth })),
    ).toBe(false);
    expect(isTransientTargetError(new CrystalMathError('E_SSH_HOSTKEY_MISMATCH', 'x'))).toBe(false);
    expect(isTransientTargetError(new ValidationError('spec.argv', 'empty'))).toBe(false);
  });

  it('is false for job faults and plain errors', () => {
    expect(isTransientTargetError(wrapped(new Error('mkdir: Permission denied')))).toBe(false);
    expect(isTransientTargetError(new AbortError())).toBe(false);
    expect(isTransientTargetError('ECONNREFUSED')).toBe(false);
    expect(isTransientTargetError(undefined)).toBe(false);
  });

  it('survives a cause cycle', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    const b = new Error('b', { cause: a });
    a.cause = b;
    expect(isTransientTargetError(a)).toBe(false);
  });
});

describe('rootErrorCode', () => {
  it('names the innermost typed code', () => {
    expect(rootErrorCode(wrapped(new CrystalMathError('E_SSH_AUTH', 'no')))).toBe('E_SSH_AUTH');
    expect(rootErrorCode(new Error('plain'))).toBeNull();
  });
});

describe('isPermanentTargetError', () => {
  it('finds a refused key or host key under the runner wrapper', () => {
    expect(isPermanentTargetError(wrapped(new CrystalMathError('E_SSH_AUTH', 'no')))).toBe(true);
    expect(isPermanentTargetError(new CrystalMathError('E_SSH_HOSTKEY_MISMATCH', 'x'))).toBe(true);
    expect(isPermanentTargetError(wrapped(new CrystalMathError('E_SSH_CONNECT', 'x')))).toBe(false);
  });
});
