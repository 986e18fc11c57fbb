// Where the testbed's real services are: env.json, written by `scripts/testbed up`, lists the
// services that are up. Tests ask for one with requireService(): outside CI a missing service
// skips its tests (with a note on stderr); under CI it is an error, so nothing passes by skipping.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The private sshd on loopback (key-only login for `user` and `rootUser`). */
export interface SshService {
  readonly host: string;
  readonly port: number;
  /** A normal user (`cmtest`) with key login and a home directory. */
  readonly user: string;
  readonly rootUser: string;
  /** ed25519, no passphrase, mode 0600, authorised for both users. */
  readonly privateKeyPath: string;
  /** One line: `[127.0.0.1]:2222 ssh-ed25519 AAAA...`. */
  readonly knownHostsPath: string;
  /** `ssh-ed25519 AAAA...` (type and key, no comment). */
  readonly hostPublicKey: string;
  readonly hostKeyPath: string;
  readonly sshdConfigPath: string;
  /** Written by sshd itself (the listener's pid). */
  readonly pidFile: string;
  /** sshd's stderr (`-e`); not always present in older env.json files. */
  readonly logPath?: string;
}

/** The one-node SLURM (slurmctld + slurmd); clients need `SLURM_CONF=conf`. */
export interface SlurmService {
  readonly conf: string;
  readonly partition: string;
  readonly node: string;
  readonly cpus: number;
  /** jobcomp/filetxt completion records (what `sacct -c` reads), mode 0666. */
  readonly jobcompLoc: string;
}

/** The private PostgreSQL 15 cluster; `user` may CREATE DATABASE. */
export interface PostgresService {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  readonly connectionString: string;
}

/**
 * Debian's Grid Engine: sge_qmaster and one sge_execd on this host, one queue. The clients need
 * no environment (Debian's wrapper finds the cell); root cannot submit (`min_uid 1000`), so jobs
 * are submitted as `user`.
 */
export interface SgeService {
  /** SGE_ROOT (`/var/lib/gridengine`). */
  readonly root: string;
  /** SGE_CELL (`default`). */
  readonly cell: string;
  /** The host name qmaster and execd run under. */
  readonly host: string;
  /** The one cluster queue (`all.q`). */
  readonly queue: string;
  /** A parallel environment with `allocation_rule $pe_slots` (`smp`). */
  readonly pe: string;
  /** A project jobs may name with `-P`. */
  readonly project: string;
  /** Slots of the queue on this host (2). */
  readonly slots: number;
  /** The unprivileged user (uid >= 1000) that submits: `cmtest`, the ssh service's user. */
  readonly user: string;
  readonly qmasterPidFile: string;
  readonly execdPidFile: string;
}

export interface TestbedServices {
  readonly ssh: SshService;
  readonly slurm: SlurmService;
  readonly postgres: PostgresService;
  readonly sge: SgeService;
}

export type ServiceName = keyof TestbedServices;

/** env.json as read: services that are down are absent. */
export type Testbed = { readonly [K in ServiceName]?: TestbedServices[K] } & {
  /** The state directory (`CRYSTALMATH_TESTBED_DIR` or /tmp/crystalmath-testbed). */
  readonly dir: string;
};

const DEFAULT_DIR = '/tmp/crystalmath-testbed';
const SERVICES: readonly ServiceName[] = ['ssh', 'slurm', 'postgres', 'sge'];

export function testbedDir(): string {
  return process.env.CRYSTALMATH_TESTBED_DIR || DEFAULT_DIR;
}

/** Reads `<dir>/env.json`; a missing file means nothing is up. */
export function loadTestbed(): Testbed {
  const dir = testbedDir();
  const file = join(dir, 'env.json');
  if (!existsSync(file)) return { dir };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new Error(`[testkit] ${file} is not valid JSON: rerun scripts/testbed up`, { cause });
  }
  if (typeof raw !== 'object' || raw === null) {
    throw new Error(`[testkit] ${file} is not a JSON object: rerun scripts/testbed up`);
  }
  const found: Partial<Record<ServiceName, unknown>> = {};
  for (const name of SERVICES) {
    const value = (raw as Record<string, unknown>)[name];
    if (typeof value === 'object' && value !== null) found[name] = value;
  }
  return { dir, ...(found as Partial<TestbedServices>) };
}

/** `CI` set to anything but '', '0' or 'false'. */
export function isCI(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

// One note per service and process, even though vitest re-imports this module per test file.
const WARNED = Symbol.for('crystalmath.testkit.warned');
const store = globalThis as { [WARNED]?: Set<string> };
store[WARNED] ??= new Set<string>();
const warned = store[WARNED];

/**
 * The config of a testbed service, for `describe.skipIf(!cfg)`.
 *
 * When the service is not up: under CI (`CI` set) this throws, so a missing service fails
 * the run instead of passing as skipped; elsewhere it returns undefined and says once on
 * stderr that those tests are skipped and how to start the service.
 *
 * @example
 * const ssh = requireService('ssh');
 * describe.skipIf(!ssh)('SshTransport', () => { ... });
 */
export function requireService<K extends ServiceName>(name: K): TestbedServices[K] | undefined {
  const testbed = loadTestbed();
  const config = testbed[name] as TestbedServices[K] | undefined;
  if (config) return config;
  if (isCI()) throw new Error(`testbed service ${name} is not up: run scripts/testbed up`);
  if (!warned.has(name)) {
    warned.add(name);
    process.stderr.write(
      `[testkit] testbed service ${name} is not up (no "${name}" in ${join(testbed.dir, 'env.json')}): ` +
        `the tests that need it are SKIPPED. Start it with \`sudo scripts/testbed up ${name}\` ` +
        `from the repository root (CI fails instead of skipping).\n`,
    );
  }
  return undefined;
}

/** `{ SLURM_CONF }` to add to a LocalTransport's env; empty when SLURM is not up. */
export function slurmEnv(): { readonly SLURM_CONF?: string } {
  const slurm = loadTestbed().slurm;
  return slurm ? { SLURM_CONF: slurm.conf } : {};
}

/** `{ SGE_ROOT, SGE_CELL }` to add to a LocalTransport's env; empty when Grid Engine is not up. */
export function sgeEnv(): { readonly SGE_ROOT?: string; readonly SGE_CELL?: string } {
  const sge = loadTestbed().sge;
  return sge ? { SGE_ROOT: sge.root, SGE_CELL: sge.cell } : {};
}
