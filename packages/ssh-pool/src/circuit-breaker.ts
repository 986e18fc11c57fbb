// Per-host circuit breaker: after `failureThreshold` consecutive connection failures the host
// fails fast (open) for a cool-down, then lets one trial connection through (half-open); its
// success closes the circuit, its failure reopens it with a doubled cool-down.

/** `closed`: normal; `open`: failing fast; `half-open`: one trial connection allowed. */
export type CircuitState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerSettings {
  readonly failureThreshold: number;
  readonly cooldownMs: number;
  readonly maxCooldownMs: number;
}

export class CircuitBreaker {
  readonly #settings: CircuitBreakerSettings;
  readonly #onChange: (state: CircuitState, error: unknown) => void;
  #state: CircuitState = 'closed';
  #failures = 0;
  #cooldownMs: number;
  #openUntil = 0;
  #trialInFlight = false;
  #lastError: unknown;

  constructor(
    settings: CircuitBreakerSettings,
    onChange: (state: CircuitState, error: unknown) => void = () => undefined,
  ) {
    this.#settings = settings;
    this.#cooldownMs = settings.cooldownMs;
    this.#onChange = onChange;
  }

  /** The state now (an open circuit whose cool-down has passed reports `half-open`). */
  state(now = Date.now()): CircuitState {
    if (this.#state === 'open' && now >= this.#openUntil) {
      this.#state = 'half-open';
      this.#trialInFlight = false;
      this.#onChange('half-open', this.#lastError);
    }
    return this.#state;
  }

  /** When an open circuit lets a trial through (0 when not open). */
  get openUntil(): number {
    return this.#state === 'open' ? this.#openUntil : 0;
  }

  get lastError(): unknown {
    return this.#lastError;
  }

  get consecutiveFailures(): number {
    return this.#failures;
  }

  /** Whether a new connection attempt may start now. */
  canAttempt(now = Date.now()): boolean {
    const state = this.state(now);
    if (state === 'closed') return true;
    if (state === 'half-open') return !this.#trialInFlight;
    return false;
  }

  /** Call when an attempt starts (marks the half-open trial). */
  attemptStarted(now = Date.now()): void {
    if (this.state(now) === 'half-open') this.#trialInFlight = true;
  }

  success(): void {
    this.#failures = 0;
    this.#trialInFlight = false;
    this.#cooldownMs = this.#settings.cooldownMs;
    if (this.#state !== 'closed') {
      this.#state = 'closed';
      this.#onChange('closed', undefined);
    }
  }

  /** Keeps `error` as the last one without counting a failure (same round as a counted one). */
  recordError(error: unknown): void {
    this.#lastError = error;
  }

  failure(error: unknown, now = Date.now()): void {
    this.#failures++;
    this.#lastError = error;
    const state = this.state(now);
    if (state === 'half-open') {
      this.#cooldownMs = Math.min(this.#cooldownMs * 2, this.#settings.maxCooldownMs);
      this.#open(now, error);
    } else if (state === 'closed' && this.#failures >= this.#settings.failureThreshold) {
      this.#open(now, error);
    }
  }

  #open(now: number, error: unknown): void {
    this.#state = 'open';
    this.#trialInFlight = false;
    this.#openUntil = now + this.#cooldownMs;
    this.#onChange('open', error);
  }
}
