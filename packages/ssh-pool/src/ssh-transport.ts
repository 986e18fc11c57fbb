// SshTransport: core's Transport over an SshPool. Each call takes one session from the pool
// and gives it back on every path; commands run through the remote login shell with argv
// quoted by core's shQuote; files move over the connection's shared SFTP session.

import {
  AbortError,
  type Command,
  type ExecOptions,
  type ExecResult,
  type FileOpOptions,
  type FileStat,
  isCrystalMathError,
  type ReadFileOptions,
  type Transport,
  TransportError,
  ValidationError,
  type WriteFileOptions,
} from '@crystalmath/core';
import { buildCommandLine } from './command-line.js';
import type { SshLease } from './connection.js';
import { normalizeHost, type SshHostConfig } from './options.js';
import { SftpOps } from './sftp-ops.js';
import { resolveSshConfig } from './ssh-config.js';
import type { SshPool } from './ssh-pool.js';

export interface SshTransportOptions {
  /** The pool the transport takes sessions from (shared with other transports; not closed by `close()`). */
  readonly pool: SshPool;
  /**
   * The host: options, an `~/.ssh/config` alias (resolved on first use), or a function that
   * returns options (called once, on first use).
   */
  readonly host: SshHostConfig | string | (() => Promise<SshHostConfig>);
  /** Wait at most this long for a session. Default: the pool's `acquireTimeoutMs`. */
  readonly acquireTimeoutMs?: number;
  /** Shown in logs. Default `ssh://user@host:port` (or `ssh://<alias>`). */
  readonly description?: string;
}

/** True for a failure that happened before the command or operation started on the server. */
function notStarted(error: unknown): boolean {
  if (!isCrystalMathError(error)) return false;
  if (error.code !== 'E_SSH_CHANNEL' && error.code !== 'E_SSH_TIMEOUT') return false;
  return error.details.started === false;
}

function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      // The SFTP request cannot be taken back; its late answer is ignored.
      work.catch(() => undefined);
      reject(new AbortError(`[ssh-pool] ${what} aborted`, { cause: signal.reason }));
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function nonNegativeInt(value: number | undefined, field: string): void {
  if (value !== undefined && (!Number.isInteger(value) || value < 0)) {
    throw new ValidationError(field, `must be a non-negative integer, got ${value}`);
  }
}

/**
 * Runs commands and moves files on an SSH host through a shared `SshPool`.
 *
 * Commands run through the remote login shell (which must be a POSIX shell: sh, bash, dash,
 * zsh, ksh): argv becomes `exec 'arg' ...`, scripts `exec /bin/sh -c '<script>'`, with `cd` and
 * `export` in front for cwd and env, every value quoted. A timeout or abort sends SIGTERM to
 * the command's whole process group, then SIGKILL.
 *
 * @example
 * const pool = new SshPool();
 * const t = new SshTransport({ pool, host: { host: 'cluster', username: 'me', privateKeyPath: '~/.ssh/id_ed25519' } });
 * const { stdout } = await t.exec(['squeue', '--me'], { timeoutMs: 30_000 });
 * await t.writeFile('jobs/a/input.txt', 'data');
 */
export class SshTransport implements Transport {
  readonly description: string;
  readonly pool: SshPool;
  readonly #acquireTimeoutMs: number | undefined;
  #host: SshHostConfig | undefined;
  #resolveHost: (() => Promise<SshHostConfig>) | undefined;
  #resolving: Promise<SshHostConfig> | undefined;
  #closed = false;

  constructor(options: SshTransportOptions) {
    this.pool = options.pool;
    this.#acquireTimeoutMs = options.acquireTimeoutMs;
    const host = options.host;
    if (typeof host === 'string') {
      this.#resolveHost = () => resolveSshConfig(host);
      this.description = options.description ?? `ssh://${host}`;
    } else if (typeof host === 'function') {
      this.#resolveHost = host;
      this.description = options.description ?? 'ssh://(resolved on first use)';
    } else {
      const normalized = normalizeHost(host);
      this.#host = host;
      this.description = options.description ?? `ssh://${normalized.label}`;
    }
  }

  /** The host options (resolving the alias or calling the function on first use). */
  async hostConfig(): Promise<SshHostConfig> {
    if (this.#host) return this.#host;
    if (!this.#resolving) {
      const resolve = this.#resolveHost as () => Promise<SshHostConfig>;
      const p = resolve().then((h) => {
        normalizeHost(h);
        this.#host = h;
        return h;
      });
      this.#resolving = p;
      p.catch(() => {
        if (this.#resolving === p) this.#resolving = undefined;
      });
    }
    return this.#resolving;
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new TransportError(
        'E_TRANSPORT_CLOSED',
        `[ssh-pool] ${this.description}: the transport is closed`,
      );
    }
  }

  #acquire(
    host: SshHostConfig,
    signal: AbortSignal | undefined,
    timeoutMs?: number,
  ): Promise<SshLease> {
    const limit = this.#acquireTimeoutMs ?? this.pool.options.acquireTimeoutMs;
    return this.pool.acquire(host, {
      signal,
      timeoutMs: timeoutMs === undefined ? limit : Math.max(1, Math.min(limit, timeoutMs)),
    });
  }

  async exec(command: Command, options: ExecOptions = {}): Promise<ExecResult> {
    this.#assertOpen();
    const line = buildCommandLine(command, { cwd: options.cwd, env: options.env });
    nonNegativeInt(options.timeoutMs, 'options.timeoutMs');
    if (options.signal?.aborted) {
      throw new AbortError('[ssh-pool] exec aborted', { cause: options.signal.reason });
    }
    const host = await this.hostConfig();
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    for (let attempt = 1; ; attempt++) {
      const remaining = deadline === undefined ? undefined : deadline - Date.now();
      const lease = await this.#acquire(host, options.signal, remaining);
      try {
        return await lease.execCommandLine(line, {
          stdin: options.stdin,
          signal: options.signal,
          onStdout: options.onStdout,
          onStderr: options.onStderr,
          timeoutMs: deadline === undefined ? undefined : Math.max(1, deadline - Date.now()),
        });
      } catch (error) {
        // The connection died before the command started (a stale connection after a server
        // restart): safe to run it once more on another connection.
        if (attempt === 1 && notStarted(error)) continue;
        throw error;
      } finally {
        lease.release();
      }
    }
  }

  /** Runs `fn` with SFTP operations on a pooled session; retries once if the session could not start. */
  async #files<T>(
    op: string,
    options: FileOpOptions,
    fn: (ops: SftpOps) => Promise<T>,
  ): Promise<T> {
    this.#assertOpen();
    if (options.signal?.aborted) {
      throw new AbortError(`[ssh-pool] ${op} aborted`, { cause: options.signal.reason });
    }
    const host = await this.hostConfig();
    for (let attempt = 1; ; attempt++) {
      const lease = await this.#acquire(host, options.signal);
      let started = false;
      try {
        const sftp = await lease.sftp();
        started = true;
        return await abortable(fn(new SftpOps(sftp, lease.host)), options.signal, op);
      } catch (error) {
        if (
          !started &&
          attempt === 1 &&
          (isCrystalMathError(error, 'E_SSH_CHANNEL') || isCrystalMathError(error, 'E_SSH_TIMEOUT'))
        ) {
          lease.invalidate(error);
          continue;
        }
        if (isCrystalMathError(error, 'E_SSH_CHANNEL')) lease.invalidate(error);
        throw error;
      } finally {
        lease.release();
      }
    }
  }

  writeFile(
    path: string,
    data: string | Uint8Array,
    options: WriteFileOptions & FileOpOptions = {},
  ): Promise<void> {
    const bytes =
      typeof data === 'string'
        ? Buffer.from(data, 'utf8')
        : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const mode = options.mode ?? 0o644;
    return this.#files('writeFile', options, (ops) =>
      ops.writeFile(path, bytes, mode, options.atomic ?? true),
    );
  }

  async readFile(path: string, options: ReadFileOptions & FileOpOptions = {}): Promise<Buffer> {
    nonNegativeInt(options.offset, 'options.offset');
    nonNegativeInt(options.length, 'options.length');
    return this.#files('readFile', options, (ops) =>
      ops.readFile(path, options.offset, options.length),
    );
  }

  mkdir(path: string, options: { readonly mode?: number } & FileOpOptions = {}): Promise<void> {
    return this.#files('mkdir', options, (ops) => ops.mkdir(path, options.mode ?? 0o755));
  }

  remove(path: string, options: FileOpOptions = {}): Promise<void> {
    return this.#files('remove', options, (ops) => ops.remove(path));
  }

  stat(path: string, options: FileOpOptions = {}): Promise<FileStat | null> {
    return this.#files('stat', options, (ops) => ops.stat(path));
  }

  rename(from: string, to: string, options: FileOpOptions = {}): Promise<void> {
    return this.#files('rename', options, (ops) => ops.rename(from, to));
  }

  upload(localPath: string, remotePath: string, options: FileOpOptions = {}): Promise<void> {
    return this.#files('upload', options, (ops) => ops.upload(localPath, remotePath));
  }

  download(remotePath: string, localPath: string, options: FileOpOptions = {}): Promise<void> {
    return this.#files('download', options, (ops) => ops.download(remotePath, localPath));
  }

  /** Marks the transport closed (later calls throw `E_TRANSPORT_CLOSED`). The pool stays open. */
  async close(): Promise<void> {
    this.#closed = true;
  }
}
