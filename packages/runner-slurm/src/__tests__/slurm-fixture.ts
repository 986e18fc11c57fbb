// Test wiring for the real one-node SLURM of the testbed: transports with SLURM_CONF, a
// registry that scancels every job a suite submitted, and observers that count commands.

import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalTransport, type Runner, type RunnerHandle, type Transport } from '@crystalmath/core';
import { requireService, slurmEnv } from '@crystalmath/testkit';
import { SlurmRunner, type SlurmRunnerOptions } from '../slurm-runner.js';

export { countingTransport, squeueWrapper } from './observers.js';

/** The testbed's SLURM, or undefined outside CI when it is not running. */
export const slurm = requireService('slurm');

export function localSlurmTransport(): LocalTransport {
  return new LocalTransport({ baseEnv: { ...process.env, ...slurmEnv() } });
}

/** Small defaults: the cluster has 2 CPUs shared by every engineer's tests. */
export const TEST_DEFAULTS = { cpusPerTask: 1, memoryMb: 64 } as const;

export function makeRunner(
  transport: Transport,
  root: string,
  options: Partial<SlurmRunnerOptions> = {},
): SlurmRunner {
  return new SlurmRunner({
    transport,
    root,
    defaults: { ...TEST_DEFAULTS, ...(slurm?.partition ? { partition: slurm.partition } : {}) },
    pollMinIntervalMs: 0,
    ...options,
  });
}

/** Remembers the SLURM job ids of every handle it sees, and scancels them all at the end. */
export class JobRegistry {
  readonly ids = new Set<string>();

  track(handle: RunnerHandle): RunnerHandle {
    const id = handle.data.jobId;
    if (typeof id === 'string') this.ids.add(id);
    return handle;
  }

  /** A runner that records every submitted handle here. */
  wrap<R extends Runner>(runner: R): R {
    return new Proxy(runner, {
      get: (target, prop) => {
        const value = Reflect.get(target, prop, target);
        if (prop === 'submit') {
          return async (...args: Parameters<Runner['submit']>) =>
            this.track(await (value as Runner['submit']).apply(target, args));
        }
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  async cancelAll(transport: Transport): Promise<void> {
    const ids = [...this.ids];
    for (let i = 0; i < ids.length; i += 200) {
      await transport
        .exec(['scancel', ...ids.slice(i, i + 200)], { timeoutMs: 60_000 })
        .catch(() => undefined);
    }
  }
}

export function uniqueRoot(): string {
  return join(tmpdir(), `cm-slurm-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`);
}
