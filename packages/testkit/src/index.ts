// Test-only helpers: where the testbed's real services are (read from env.json written by
// scripts/testbed), whether a test may skip when one is missing (never in CI), and fault
// helpers that stop and start the sshd.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { join } from 'node:path';

export interface SshService {
  readonly host: string;
  readonly port: number;
  /** A normal user with key login. */
  readonly user: string;
  readonly rootUser: string;
  readonly privateKeyPath: string;
  readonly knownHostsPath: string;
  readonly hostPublicKey: string;
  readonly hostKeyPath: string;
  readonly sshdConfigPath: string;
  readonly pidFile: string;
}

export interface SlurmService {
  readonly conf: string;
  readonly partition: string;
  readonly node: string;
  readonly cpus: number;
  readonly jobcompLoc: string;
}

export interface PostgresService {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  readonly connectionString: string;
}

export interface Testbed {
  readonly dir: string;
  readonly ssh?: SshService;
  readonly slurm?: SlurmService;
  readonly postgres?: PostgresService;
}

type ServiceMap = { ssh: SshService; slurm: SlurmService; postgres: PostgresService };

export function testbedDir(): string {
  return process.env.CRYSTALMATH_TESTBED_DIR ?? '/tmp/crystalmath-testbed';
}

/** Reads env.json of the running testbed; services that are down are absent. */
export function loadTestbed(): Testbed {
  const dir = testbedDir();
  const file = join(dir, 'env.json');
  if (!existsSync(file)) return { dir };
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const out: { dir: string; ssh?: SshService; slurm?: SlurmService; postgres?: PostgresService } = { dir };
  if (raw.ssh) out.ssh = raw.ssh as SshService;
  if (raw.slurm) out.slurm = raw.slurm as SlurmService;
  if (raw.postgres) out.postgres = raw.postgres as PostgresService;
  return out;
}

const warned = new Set<string>();

/**
 * The service's config. When it is not up: throws under CI (`CI` set), so a missing service can
 * never pass as a skipped test there; elsewhere returns undefined (use `describe.skipIf(!cfg)`)
 * and says once on stderr how to start it.
 */
export function requireService<K extends keyof ServiceMap>(name: K): ServiceMap[K] | undefined {
  const svc = loadTestbed()[name] as ServiceMap[K] | undefined;
  if (svc) return svc;
  const msg = `testbed service ${name} is not up: run scripts/testbed up`;
  if (process.env.CI) throw new Error(msg);
  if (!warned.has(name)) {
    warned.add(name);
    process.stderr.write(`[testkit] ${msg} (its tests are skipped)\n`);
  }
  return undefined;
}

/** `{ SLURM_CONF }` for commands run through LocalTransport. */
export function slurmEnv(): { SLURM_CONF: string } {
  const slurm = loadTestbed().slurm;
  if (!slurm) throw new Error('testbed service slurm is not up: run scripts/testbed up');
  return { SLURM_CONF: slurm.conf };
}

function sshOrThrow(): SshService {
  const ssh = loadTestbed().ssh;
  if (!ssh) throw new Error('testbed service ssh is not up: run scripts/testbed up');
  return ssh;
}

/** Resolves when a TCP connect to host:port succeeds (true) or the time is up (false). */
export async function waitForPort(host: string, port: number, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = new Socket();
      s.setTimeout(500);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.once('timeout', () => {
        s.destroy();
        resolve(false);
      });
      s.connect(port, host);
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** Stops the testbed's sshd (existing sessions end too: sshd children are killed). */
export async function stopSshd(): Promise<void> {
  const ssh = sshOrThrow();
  if (!existsSync(ssh.pidFile)) return;
  const pid = Number(readFileSync(ssh.pidFile, 'utf8').trim());
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    /* already gone */
  }
  // Kill the per-connection children so established sessions drop as on a real outage.
  spawnSync('pkill', ['-f', `sshd: .*@`], { stdio: 'ignore' });
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
      await new Promise((r) => setTimeout(r, 50));
    } catch {
      return;
    }
  }
}

/** Starts the testbed's sshd again with the same config and keys; resolves when it accepts. */
export async function startSshd(): Promise<void> {
  const ssh = sshOrThrow();
  const child = spawnSync('/usr/sbin/sshd', ['-f', ssh.sshdConfigPath, '-E', join(testbedDir(), 'ssh', 'sshd.log')], {
    stdio: 'ignore',
  });
  if (child.status !== 0) throw new Error(`sshd did not start (exit ${child.status})`);
  if (!(await waitForPort(ssh.host, ssh.port))) throw new Error('sshd did not accept connections in 10 s');
}

export async function restartSshd(): Promise<void> {
  await stopSshd();
  await startSshd();
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Runs a command synchronously and returns stdout (throws on a non-zero exit). For test setup only. */
export function sh(cmd: string, args: readonly string[], env?: Record<string, string>): string {
  return execFileSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env } });
}
