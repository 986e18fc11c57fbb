// A sliding-window limit on new connections per host, so a busy front-end (or a reconnect
// storm) cannot open more than `limit` connections per `intervalMs` to one computing centre.

export class RateLimiter {
  readonly #limit: number;
  readonly #intervalMs: number;
  readonly #starts: number[] = [];

  constructor(limit: number, intervalMs: number) {
    this.#limit = limit;
    this.#intervalMs = intervalMs;
  }

  #prune(now: number): void {
    while (this.#starts.length > 0 && (this.#starts[0] as number) <= now - this.#intervalMs) {
      this.#starts.shift();
    }
  }

  /** Takes a slot when one is free now. */
  tryTake(now = Date.now()): boolean {
    if (this.#intervalMs === 0) return true;
    this.#prune(now);
    if (this.#starts.length >= this.#limit) return false;
    this.#starts.push(now);
    return true;
  }

  /** When the next slot frees (now when one is free). */
  nextFreeAt(now = Date.now()): number {
    this.#prune(now);
    if (this.#starts.length < this.#limit) return now;
    return (this.#starts[0] as number) + this.#intervalMs;
  }
}
