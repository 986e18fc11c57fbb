// Every runner call the queue makes goes through here: it gets its own AbortSignal, a
// deadline from its target's options, and the scheduler's stop signal. A call past its
// deadline is abandoned (its signal aborted, its late result ignored) and rejects with
// E_RUNNER_TIMEOUT, which counts as an unreachable target, never as the job's fault.

import { AbortError, CrystalMathError } from '@crystalmath/core';

/** The runner operations the queue bounds, named as in `TargetDeadlines`. */
export type RunnerOperation =
  | 'submit'
  | 'poll'
  | 'cancel'
  | 'find'
  | 'tail'
  | 'collect'
  | 'cleanup';

/**
 * Runs `call` with a fresh signal that aborts after `deadlineMs` or when `stop` aborts, and
 * settles no later than that, whatever the runner does. The abandoned call's own promise is
 * observed (its rejection is not unhandled) but no longer awaited.
 */
export function callRunner<T>(
  target: string,
  operation: RunnerOperation,
  deadlineMs: number,
  stop: AbortSignal | undefined,
  call: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  return new Promise<T>((resolve, reject) => {
    const finish = (): void => {
      clearTimeout(timer);
      stop?.removeEventListener('abort', onStop);
    };
    const giveUp = (error: Error): void => {
      finish();
      controller.abort(error);
      reject(error);
    };
    const onStop = (): void =>
      giveUp(
        new AbortError(
          `[queue] ${operation} on target "${target}" abandoned: the scheduler stopped`,
          {
            details: { target, operation },
          },
        ),
      );
    const timer = setTimeout(
      () =>
        giveUp(
          new CrystalMathError(
            'E_RUNNER_TIMEOUT',
            `[queue] ${operation} on target "${target}" did not answer within ${deadlineMs} ms: abandoned`,
            { details: { target, operation, deadlineMs } },
          ),
        ),
      deadlineMs,
    );
    if (stop?.aborted) return onStop();
    stop?.addEventListener('abort', onStop, { once: true });
    let pending: Promise<T>;
    try {
      pending = call(controller.signal);
    } catch (error) {
      finish();
      reject(error);
      return;
    }
    pending.then(
      (value) => {
        if (controller.signal.aborted) return; // too late: the caller has moved on
        finish();
        resolve(value);
      },
      (error: unknown) => {
        if (controller.signal.aborted) return;
        finish();
        reject(error);
      },
    );
  });
}

/**
 * Whether a target answers, as this process sees it. An outage starts at the first call that
 * fails as unreachable and ends at the first call that succeeds; in between, the target is
 * tried again after an exponential delay with jitter.
 */
export class TargetHealth {
  #since: number | null = null;
  #lastError = '';
  #failures = 0;
  #retryAt = 0;

  constructor(
    private readonly backoff: {
      readonly initialMs: number;
      readonly factor: number;
      readonly maxMs: number;
      readonly jitter: number;
    },
  ) {}

  get unreachable(): { since: number; lastError: string; retryAt: number } | null {
    return this.#since === null
      ? null
      : { since: this.#since, lastError: this.#lastError, retryAt: this.#retryAt };
  }

  /** True while the target is unreachable and its next try is not due. */
  waiting(now: number): boolean {
    return this.#since !== null && now < this.#retryAt;
  }

  /** A call failed as unreachable; true when this starts an outage. */
  failed(now: number, error: string): boolean {
    const started = this.#since === null;
    if (started) this.#since = now;
    this.#lastError = error;
    const b = this.backoff;
    const base = Math.min(b.maxMs, b.initialMs * b.factor ** this.#failures);
    this.#failures++;
    const spread = base * b.jitter * (Math.random() * 2 - 1);
    this.#retryAt = now + Math.max(0, Math.round(base + spread));
    return started;
  }

  /** A call succeeded; the start of the outage it ends, or null when there was none. */
  answered(): number | null {
    const since = this.#since;
    this.#since = null;
    this.#failures = 0;
    this.#retryAt = 0;
    return since;
  }
}
