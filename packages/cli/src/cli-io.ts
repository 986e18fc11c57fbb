// What a command may touch of the outside world, gathered in one object so the whole CLI runs
// in-process in tests (`main(argv, io)`) exactly as it runs from `bin.ts`.

/** A place to write text: `process.stdout` or a buffer in tests. */
export interface OutputStream {
  write(chunk: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
  readonly rows?: number;
}

/** The outside world of one `crystalmath` invocation. */
export interface CliIo {
  readonly stdout: OutputStream;
  readonly stderr: OutputStream;
  readonly cwd: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  /**
   * Fires when the user asks to stop (SIGINT/SIGTERM in `bin.ts`). Long-running commands
   * (`run`, `watch`, `logs --follow`, `--wait`) end cleanly on it.
   */
  readonly signal?: AbortSignal;
}

/** The real process's streams, directory, environment, and a signal for SIGINT/SIGTERM. */
export function processIo(signal?: AbortSignal): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    cwd: process.cwd(),
    env: process.env,
    ...(signal ? { signal } : {}),
  };
}
