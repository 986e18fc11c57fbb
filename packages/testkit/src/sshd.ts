// Fault helpers for SSH tests: stop, start and restart an sshd through its pid file, with the
// same config, and wait until it answers (or no longer answers) on its port. The testbed's
// sshd is shared by every package's tests; a test that kills sshd while others run can use
// privateSshd() instead: its own sshd, same host key and users, on a free port.

import { execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort, waitForPort, waitForPortClosed } from './net.js';
import { loadTestbed, type SshService } from './testbed.js';

/** Absolute: sshd re-executes itself for each connection and refuses a relative path. */
const SSHD = '/usr/sbin/sshd';

export interface SshdControllerOptions {
  readonly host: string;
  readonly port: number;
  readonly configPath: string;
  /** The `PidFile` of the config: sshd writes it, stop() reads it. */
  readonly pidFile: string;
  /** sshd's stderr (`-e`) is appended here. */
  readonly logPath: string;
}

export interface StopSshdOptions {
  /**
   * Also end the established sessions (SIGTERM to the listener's per-connection children),
   * as an outage would. Default true; false is a graceful restart where sessions survive.
   */
  readonly dropConnections?: boolean;
  /** Default 10 000 ms. */
  readonly timeoutMs?: number;
}

export interface StartSshdOptions {
  /** Default 10 000 ms. */
  readonly timeoutMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The fields of /proc/<pid>/stat after the command name: [state, ppid, ...]. */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function isLive(pid: number): boolean {
  const state = procStat(pid)?.[0];
  return state !== undefined && state !== 'Z' && state !== 'X';
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

function childrenOf(parent: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (Number.isInteger(pid) && procStat(pid)?.[1] === String(parent)) children.push(pid);
  }
  return children;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

function logTail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

/** One sshd, driven through its config and pid file. */
export class SshdController {
  readonly options: SshdControllerOptions;

  constructor(options: SshdControllerOptions) {
    this.options = options;
  }

  /** The listener's pid when it runs. */
  pid(): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(this.options.pidFile, 'utf8').trim());
    } catch {
      return undefined;
    }
    if (!Number.isInteger(pid) || pid <= 0 || !isLive(pid)) return undefined;
    return commandLine(pid).includes('sshd') ? pid : undefined;
  }

  /** Stops the listener (and by default its sessions); resolves once the port refuses. */
  async stop(options: StopSshdOptions = {}): Promise<void> {
    const { host, port } = this.options;
    const timeoutMs = options.timeoutMs ?? 10_000;
    const pid = this.pid();
    if (pid !== undefined) {
      const sessions = (options.dropConnections ?? true) ? childrenOf(pid) : [];
      signal(pid, 'SIGTERM');
      for (const session of sessions) signal(session, 'SIGTERM');
      const deadline = Date.now() + timeoutMs;
      while (isLive(pid) && Date.now() < deadline) await sleep(20);
      if (isLive(pid)) signal(pid, 'SIGKILL');
    }
    if (!(await waitForPortClosed(host, port, timeoutMs))) {
      throw new Error(`[testkit] ${host}:${port} still accepts connections after stopping sshd`);
    }
  }

  /** Starts sshd (detached, it outlives the test process) unless it runs; resolves once it greets. */
  async start(options: StartSshdOptions = {}): Promise<void> {
    const { host, port, configPath, logPath } = this.options;
    if (
      this.pid() !== undefined &&
      (await waitForPort(host, port, { banner: 'SSH-', timeoutMs: 0 }))
    )
      return;
    let exited: string | undefined;
    const log = openSync(logPath, 'a');
    try {
      const child = spawn(SSHD, ['-D', '-e', '-f', configPath], {
        detached: true,
        stdio: ['ignore', log, log],
      });
      child.once('error', (error) => {
        exited = error.message;
      });
      child.once('exit', (code, sig) => {
        exited = `exit ${code ?? sig}`;
      });
      child.unref();
    } finally {
      closeSync(log);
    }
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    for (;;) {
      if (exited !== undefined) {
        throw new Error(
          `[testkit] sshd -f ${configPath} stopped (${exited}):\n${logTail(logPath)}`,
        );
      }
      // Ready when it greets and has written its pid file (stop() needs it).
      if (
        (await waitForPort(host, port, { banner: 'SSH-', timeoutMs: 0 })) &&
        this.pid() !== undefined
      )
        return;
      if (Date.now() >= deadline) {
        throw new Error(`[testkit] sshd did not answer on ${host}:${port}:\n${logTail(logPath)}`);
      }
      await sleep(50);
    }
  }

  async restart(options: StopSshdOptions & StartSshdOptions = {}): Promise<void> {
    await this.stop(options);
    await this.start(options);
  }
}

function testbedSsh(): SshService {
  const ssh = loadTestbed().ssh;
  if (!ssh) throw new Error('[testkit] testbed service ssh is not up: run scripts/testbed up ssh');
  return ssh;
}

function controllerFor(ssh: SshService): SshdController {
  return new SshdController({
    host: ssh.host,
    port: ssh.port,
    configPath: ssh.sshdConfigPath,
    pidFile: ssh.pidFile,
    logPath: ssh.logPath ?? join(dirname(ssh.sshdConfigPath), 'sshd.log'),
  });
}

/** The testbed's shared sshd (every package's SSH tests use it: prefer privateSshd for faults). */
export function testbedSshd(): SshdController {
  return controllerFor(testbedSsh());
}

/** Stops the testbed's sshd; by default established sessions drop too. */
export function stopSshd(options?: StopSshdOptions): Promise<void> {
  return testbedSshd().stop(options);
}

/** Starts the testbed's sshd again with the same config and keys; resolves when it greets. */
export function startSshd(options?: StartSshdOptions): Promise<void> {
  return testbedSshd().start(options);
}

export function restartSshd(options?: StopSshdOptions & StartSshdOptions): Promise<void> {
  return testbedSshd().restart(options);
}

/**
 * The per-connection processes of an sshd listening on `port`: for each established
 * connection (optionally only those from the client ports given), the server-side processes
 * `ss -Htnp state established sport = :<port>` names, and their descendants (the sessions'
 * shells and commands). Never the listener itself (`listenerPid`), so new connections still work.
 */
export function sshdConnectionProcesses(
  port: number,
  options: { readonly clientPorts?: readonly number[]; readonly listenerPid?: number } = {},
): number[] {
  const out = execFileSync('ss', ['-Htnp', 'state', 'established', 'sport', '=', `:${port}`], {
    encoding: 'utf8',
  });
  const roots = new Set<number>();
  for (const line of out.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const peer = fields.find(
      (f, i) => i > 0 && /:\d+$/.test(f) && fields[i - 1]?.endsWith(`:${port}`),
    );
    const peerPort = Number(peer?.slice(peer.lastIndexOf(':') + 1));
    if (options.clientPorts && !options.clientPorts.includes(peerPort)) continue;
    for (const m of line.matchAll(/pid=(\d+)/g)) roots.add(Number(m[1]));
  }
  if (options.listenerPid !== undefined) roots.delete(options.listenerPid);
  const all = new Set<number>();
  const visit = (pid: number): void => {
    if (all.has(pid)) return;
    all.add(pid);
    for (const child of childrenOf(pid)) visit(child);
  };
  for (const pid of roots) visit(pid);
  return [...all];
}

/** Processes stopped with SIGSTOP by `suspendSshdConnections`; `resume()` (SIGCONT) is idempotent. */
export interface SuspendedSshdConnections {
  readonly pids: readonly number[];
  resume(): void;
}

/**
 * Hangs established SSH connections the way a frozen peer does: SIGSTOP to their sshd
 * processes (TCP stays open, nothing answers). Call `resume()` in a `finally`, always.
 */
export function suspendSshdConnections(
  port: number,
  options: { readonly clientPorts?: readonly number[]; readonly listenerPid?: number } = {},
): SuspendedSshdConnections {
  const pids = sshdConnectionProcesses(port, options);
  let resumed = false;
  for (const pid of pids) signal(pid, 'SIGSTOP');
  return {
    pids,
    resume: () => {
      if (resumed) return;
      resumed = true;
      for (const pid of pids) signal(pid, 'SIGCONT');
    },
  };
}

/** An sshd of a test's own: the testbed's config, keys and users on another loopback port. */
export interface PrivateSshd extends SshService {
  readonly controller: SshdController;
  stop(options?: StopSshdOptions): Promise<void>;
  start(options?: StartSshdOptions): Promise<void>;
  restart(options?: StopSshdOptions & StartSshdOptions): Promise<void>;
  /** Stops it and removes its files. */
  close(): Promise<void>;
  /** Hangs its established connections (or those from `clientPorts`): see suspendSshdConnections. */
  suspendConnections(clientPorts?: readonly number[]): SuspendedSshdConnections;
}

export interface PrivateSshdOptions {
  /** Default: a free port. */
  readonly port?: number;
  /** sshd_config lines that take precedence over the testbed's (e.g. `MaxSessions 2`). */
  readonly config?: readonly string[];
}

/**
 * Starts a private sshd for fault tests that must not disturb the shared one: same host key,
 * users and client key as the testbed's, its own port, pid file and known_hosts. Needs root
 * and the testbed's ssh service.
 */
export async function privateSshd(options: PrivateSshdOptions = {}): Promise<PrivateSshd> {
  const ssh = testbedSsh();
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'cm-sshd-'));
  const configPath = join(dir, 'sshd_config');
  const pidFile = join(dir, 'sshd.pid');
  const logPath = join(dir, 'sshd.log');
  const knownHostsPath = join(dir, 'known_hosts');
  const base = readFileSync(ssh.sshdConfigPath, 'utf8')
    .split('\n')
    .filter((line) => !/^\s*(Port|ListenAddress|PidFile)\s/i.test(line));
  // First value wins in sshd_config: ours go on top.
  writeFileSync(
    configPath,
    [
      `Port ${port}`,
      `ListenAddress ${ssh.host}`,
      `PidFile ${pidFile}`,
      ...(options.config ?? []),
      ...base,
    ].join('\n'),
  );
  writeFileSync(knownHostsPath, `[${ssh.host}]:${port} ${ssh.hostPublicKey}\n`);
  const controller = new SshdController({ host: ssh.host, port, configPath, pidFile, logPath });
  const close = async () => {
    await controller.stop();
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  };
  try {
    await controller.start();
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
  return {
    ...ssh,
    port,
    knownHostsPath,
    sshdConfigPath: configPath,
    pidFile,
    logPath,
    controller,
    stop: (o) => controller.stop(o),
    start: (o) => controller.start(o),
    restart: (o) => controller.restart(o),
    close,
    suspendConnections: (clientPorts) =>
      suspendSshdConnections(port, {
        ...(clientPorts ? { clientPorts } : {}),
        ...(controller.pid() !== undefined ? { listenerPid: controller.pid() as number } : {}),
      }),
  };
}
