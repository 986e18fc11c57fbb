// An observer for tests: a transport wrapper that counts exec calls (how a test proves a check
// made no I/O, or a poll cost one round trip). It watches a real transport; it replaces nothing.
// Typed structurally (any object with `exec`), so testkit needs no dependency on core.

/**
 * Observes a transport: counts exec calls and keeps each command (or its stdin, for scripts
 * sent that way), delegating everything.
 */
export function countingTransport<T extends object>(
  inner: T,
): {
  transport: T;
  execs: () => number;
  commands: unknown[];
  reset: () => void;
} {
  let n = 0;
  const commands: unknown[] = [];
  const transport = new Proxy(inner, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      if (prop !== 'exec') return value.bind(target);
      return (...args: unknown[]) => {
        n++;
        const options = args[1] as { stdin?: unknown } | undefined;
        commands.push(options?.stdin === undefined ? args[0] : String(options.stdin));
        return Reflect.apply(value, target, args);
      };
    },
  });
  return {
    transport,
    execs: () => n,
    commands,
    reset: () => {
      n = 0;
      commands.length = 0;
    },
  };
}
