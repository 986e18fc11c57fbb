// Option parsers shared by the commands: integers with bounds, and an abortable sleep.

import { InvalidArgumentError } from 'commander';

/** A commander option parser for an integer of at least `min`. */
export function intOption(flag: string, min = Number.MIN_SAFE_INTEGER): (value: string) => number {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`${flag} must be an integer`);
    const n = Number(value);
    if (n < min) throw new InvalidArgumentError(`${flag} must be at least ${min}`);
    return n;
  };
}

/** Resolves after `ms`, or at once when `signal` fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
