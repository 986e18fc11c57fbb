// Turns the validated configuration into live pieces: one Transport and one Runner per target
// (LocalRunner, SshRunner over a shared SshPool, SlurmRunner and SgeRunner locally or over SSH). The CLI is
// the only place in CrystalMath that wires concrete packages together. A target's `defaults` go
// to its runner, which merges them under each job's resources (core's `mergeResources`) the same
// way for every target type. Nothing here connects:
// SSH connections open on first use, so read-only commands never touch the network.

import { LocalTransport, type Resources, type Runner, type Transport } from '@crystalmath/core';
import { LocalRunner, SshRunner } from '@crystalmath/runner-process';
import { type SgeDefaults, SgeRunner } from '@crystalmath/runner-sge';
import { type SlurmDefaults, SlurmRunner } from '@crystalmath/runner-slurm';
import type { SshPool } from '@crystalmath/ssh-pool';
import type { SshConfig, TargetConfig } from './config/config-schema.js';
import type { ResolvedConfig } from './config/load-config.js';
import { sshHostOptions } from './ssh-host-options.js';

/** A target's runner and the transport under it, as wired from the configuration. */
export interface WiredTarget {
  readonly name: string;
  readonly config: TargetConfig;
  readonly transport: Transport;
  readonly runner: Runner;
}

export interface WiredTargets {
  readonly targets: Readonly<Record<string, WiredTarget>>;
  /** Closes runners and the SSH pool (open connections end). */
  close(): Promise<void>;
}

/**
 * The SSH pool of the CLI's targets. The scheduler already spaces its tries of an unreachable
 * target (one probe per target every 0.5 to 1 s, `DEFAULT_UNREACHABLE_BACKOFF`), so the pool's
 * breaker only has to stop a burst of calls; with the pool's default cool-down (5 s doubling
 * to 60 s) a host back after a one-minute outage was seen only 23 s later (measured), because
 * every probe met the open circuit. A 1 s cool-down keeps a dead host failing fast and lets
 * the queue see its return within about a second.
 */
const SCHEDULER_POOL = {
  circuitBreaker: { cooldownMs: 1_000, maxCooldownMs: 1_000 },
} as const;

/**
 * Builds a runner for every target of `config` without connecting anywhere.
 *
 * @example
 * const wired = await wireTargets(config);
 * await wired.targets.laptop?.transport.exec(['true']);
 * await wired.close();
 */
export async function wireTargets(config: ResolvedConfig): Promise<WiredTargets> {
  let pool: SshPool | undefined;
  const transports = new Map<string, Transport>();
  const sshTransport = async (ssh: SshConfig): Promise<Transport> => {
    const key = JSON.stringify(ssh);
    const existing = transports.get(key);
    if (existing) return existing;
    // Loaded on first use: a configuration without SSH never loads ssh2.
    const mod = await import('@crystalmath/ssh-pool');
    pool ??= new mod.SshPool(SCHEDULER_POOL);
    const transport = new mod.SshTransport({ pool, host: await sshHostOptions(ssh, mod) });
    transports.set(key, transport);
    return transport;
  };
  const local = new LocalTransport();
  const targets: Record<string, WiredTarget> = {};
  for (const [name, t] of Object.entries(config.targets)) {
    let transport: Transport;
    let runner: Runner;
    if (t.type === 'local') {
      transport = local;
      runner = new LocalRunner({
        root: t.root ?? '.crystalmath/runs',
        ...(t.defaults ? { defaults: t.defaults as Resources } : {}),
      });
    } else if (t.type === 'ssh') {
      transport = await sshTransport(t.ssh);
      runner = new SshRunner({
        transport,
        root: t.root ?? '.crystalmath/runs',
        ...(t.defaults ? { defaults: t.defaults as Resources } : {}),
      });
    } else if (t.type === 'sge') {
      transport = t.ssh ? await sshTransport(t.ssh) : local;
      runner = new SgeRunner({
        transport,
        root: t.root,
        ...(t.defaults ? { defaults: t.defaults as SgeDefaults } : {}),
        ...(t.pollIntervalMs !== undefined ? { pollMinIntervalMs: t.pollIntervalMs } : {}),
        ...(t.deleteErrorJobs !== undefined ? { deleteErrorJobs: t.deleteErrorJobs } : {}),
      });
    } else {
      transport = t.ssh ? await sshTransport(t.ssh) : local;
      runner = new SlurmRunner({
        transport,
        root: t.root,
        ...(t.defaults ? { defaults: t.defaults as SlurmDefaults } : {}),
        ...(t.pollIntervalMs !== undefined ? { pollMinIntervalMs: t.pollIntervalMs } : {}),
        ...(t.skipDirectives ? { skipDirectives: t.skipDirectives } : {}),
        ...(t.accounting ? { accounting: t.accounting } : {}),
      });
    }
    targets[name] = { name, config: t, transport, runner };
  }
  return {
    targets,
    async close() {
      await Promise.allSettled(Object.values(targets).map((t) => t.runner.close?.()));
      await Promise.allSettled([...transports.values()].map((t) => t.close?.()));
      await pool?.close();
    },
  };
}
