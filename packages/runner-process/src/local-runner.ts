// LocalRunner: the process runner on this machine, over core's LocalTransport. A preset: it
// only builds the transport; everything else is ProcessRunner.

import { LocalTransport } from '@crystalmath/core';
import { ProcessRunner, type ProcessRunnerOptions } from './process-runner.js';

/** Options of `new LocalRunner(...)`: ProcessRunner's, without the transport. */
export interface LocalRunnerOptions extends Omit<ProcessRunnerOptions, 'transport'> {
  /** Directory a relative `root` is resolved against. Default: `process.cwd()`. */
  readonly home?: string;
  /** Base environment of the jobs. Default: `process.env`. */
  readonly baseEnv?: Readonly<Record<string, string | undefined>>;
}

/**
 * Runs jobs as detached processes on this machine.
 *
 * @example
 * const runner = new LocalRunner({ root: '/scratch/me/cm-jobs', killGraceMs: 5_000 });
 * const h = await runner.submit({ key: 'job-1-a1', spec: { name: 'hello', argv: ['echo', 'hi'] } });
 * const [status] = await runner.poll([h]);
 */
export class LocalRunner extends ProcessRunner {
  constructor(options: LocalRunnerOptions) {
    const { home, baseEnv, ...rest } = options;
    super({
      ...rest,
      transport: new LocalTransport({
        ...(home === undefined ? {} : { home }),
        ...(baseEnv === undefined ? {} : { baseEnv }),
      }),
    });
  }
}
