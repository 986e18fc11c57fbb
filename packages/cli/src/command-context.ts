// What every command handler gets: the IO, the global options (`--config`, `--json`), lazy
// access to the configuration and the queue, and the output helpers that switch between human
// text and JSON.

import type { CliIo } from './cli-io.js';
import { type LoadConfigOptions, loadConfig, type ResolvedConfig } from './config/load-config.js';
import { type Colors, colors } from './format.js';
import { type ConfiguredQueue, openConfiguredQueue } from './open-configured-queue.js';

export interface GlobalOptions {
  readonly config?: string;
  readonly json?: boolean;
  readonly color?: boolean;
}

export class CommandContext {
  /** Exit code the command asks for when it returns normally (e.g. `targets check` with a failure). */
  exitCode = 0;
  private configPromise: Promise<ResolvedConfig> | undefined;

  constructor(
    readonly io: CliIo,
    private readonly globals: () => GlobalOptions,
  ) {}

  get json(): boolean {
    return this.globals().json === true;
  }

  /** Colours for stdout: on a terminal, unless `--no-color` or `NO_COLOR`. */
  get c(): Colors {
    const g = this.globals();
    const enabled =
      !this.json &&
      g.color !== false &&
      this.io.stdout.isTTY === true &&
      (this.io.env.NO_COLOR === undefined || this.io.env.NO_COLOR === '');
    return colors(enabled);
  }

  /** The configuration, read once. */
  config(): Promise<ResolvedConfig> {
    const path = this.globals().config;
    const options: LoadConfigOptions = {
      cwd: this.io.cwd,
      env: this.io.env,
      ...(path !== undefined ? { path } : {}),
    };
    this.configPromise ??= loadConfig(options);
    return this.configPromise;
  }

  /** Opens the configured queue, runs `fn`, and always closes it. */
  async withQueue<T>(fn: (q: ConfiguredQueue, config: ResolvedConfig) => Promise<T>): Promise<T> {
    const config = await this.config();
    const cq = await openConfiguredQueue(config);
    try {
      return await fn(cq, config);
    } finally {
      await cq.close();
    }
  }

  /** Writes a line to stdout. */
  out(text = ''): void {
    this.io.stdout.write(`${text}\n`);
  }

  /** Writes a line to stderr. */
  err(text: string): void {
    this.io.stderr.write(`${text}\n`);
  }

  /** Prints `value` as JSON (with `--json`) or calls `human` to print it for people. */
  emit(value: unknown, human: () => void): void {
    if (this.json) this.out(JSON.stringify(value, null, 2));
    else human();
  }
}
