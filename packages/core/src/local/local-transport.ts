// Transport over this machine's own process and file APIs. Commands given as argv are spawned
// without a shell; each command gets its own process group so a timeout or abort kills the
// whole tree, not just the first process.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import {
  copyFile,
  lstat,
  mkdir,
  open,
  readFile,
  rename,
  rm,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import {
  AbortError,
  type CrystalMathError,
  TransportError,
  throwIfAborted,
  ValidationError,
} from '../errors.js';
import { assertEnvName } from '../quote.js';
import type {
  Command,
  ExecOptions,
  ExecResult,
  FileOpOptions,
  FileStat,
  ReadFileOptions,
  Transport,
  WriteFileOptions,
} from '../transport.js';

export interface LocalTransportOptions {
  /** Directory that relative paths and relative `cwd`s are resolved against. Default: `process.cwd()`. */
  readonly home?: string;
  /** Base environment for commands. Default: `process.env`. `ExecOptions.env` is added on top. */
  readonly baseEnv?: Readonly<Record<string, string | undefined>>;
  /** Grace between SIGTERM and SIGKILL when a command times out or is aborted. Default 2000 ms. */
  readonly killGraceMs?: number;
}

function tmpName(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}

function mapFsError(err: unknown, op: string, path: string): CrystalMathError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') {
    return new TransportError('E_NOT_FOUND', `[core] ${op}: no such file: ${path}`, {
      cause: err,
      details: { path },
    });
  }
  return new TransportError(
    'E_TRANSPORT',
    `[core] ${op} failed for ${path}: ${code ?? String(err)}`,
    {
      cause: err,
      details: { path },
    },
  );
}

/** Throws a ValidationError naming `field` unless `value` is a string without a NUL byte. */
function assertExecString(value: unknown, field: string): void {
  if (typeof value !== 'string') throw new ValidationError(field, 'must be a string');
  if (value.includes('\0')) throw new ValidationError(field, 'must not contain a NUL byte');
}

/**
 * Runs commands and file operations on this machine.
 *
 * @example
 * const local = new LocalTransport({ home: '/scratch/me' });
 * await local.mkdir('jobs/a');
 * const { stdout } = await local.exec(['ls', '-1'], { cwd: 'jobs' });
 */
export class LocalTransport implements Transport {
  readonly description = 'local';
  readonly #home: string;
  readonly #baseEnv: Readonly<Record<string, string | undefined>>;
  readonly #killGraceMs: number;

  constructor(options: LocalTransportOptions = {}) {
    this.#home = resolve(options.home ?? process.cwd());
    this.#baseEnv = options.baseEnv ?? process.env;
    this.#killGraceMs = options.killGraceMs ?? 2_000;
  }

  /** The absolute path a target path refers to. */
  resolvePath(path: string): string {
    return resolve(this.#home, path);
  }

  async exec(command: Command, options: ExecOptions = {}): Promise<ExecResult> {
    throwIfAborted(options.signal, 'exec');
    const [file, args] = Array.isArray(command)
      ? [(command as readonly string[])[0], (command as readonly string[]).slice(1)]
      : ['/bin/sh', ['-c', (command as { script: string }).script]];
    if (file === undefined) {
      throw new TransportError('E_VALIDATION', '[core] exec: argv must not be empty');
    }
    // Node would refuse these too, but with its own ERR_INVALID_ARG_* naming no field of ours;
    // the SSH transport refuses the same inputs with the same fields (core's shQuote).
    if (Array.isArray(command)) {
      (command as readonly unknown[]).forEach((arg, i) => {
        assertExecString(arg, `argv[${i}]`);
      });
    } else {
      assertExecString((command as { script?: unknown }).script, 'command.script');
    }
    if (options.cwd !== undefined) assertExecString(options.cwd, 'options.cwd');
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.#baseEnv)) if (v !== undefined) env[k] = v;
    for (const [k, v] of Object.entries(options.env ?? {})) {
      assertEnvName(k, 'options.env');
      assertExecString(v, `options.env.${k}`);
      env[k] = v;
    }
    const cwd = options.cwd === undefined ? this.#home : this.resolvePath(options.cwd);

    return new Promise<ExecResult>((resolvePromise, reject) => {
      const child = spawn(file, args, {
        cwd,
        env,
        detached: true, // own process group: kill(-pid) reaches the whole tree
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let failure: CrystalMathError | undefined;
      let settled = false;
      let killTimer: NodeJS.Timeout | undefined;

      const killTree = (): void => {
        const pid = child.pid;
        if (pid === undefined) return;
        try {
          process.kill(-pid, 'SIGTERM');
        } catch {
          /* already gone */
        }
        killTimer = setTimeout(() => {
          try {
            process.kill(-pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }, this.#killGraceMs);
        killTimer.unref();
      };
      const timeout =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              failure = new TransportError(
                'E_TRANSPORT_TIMEOUT',
                `[core] command timed out after ${options.timeoutMs} ms`,
                { details: { timeoutMs: options.timeoutMs } },
              );
              killTree();
            }, options.timeoutMs);
      const onAbort = (): void => {
        failure = new AbortError('[core] exec aborted', { cause: options.signal?.reason });
        killTree();
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      const finish = (): void => {
        settled = true;
        if (timeout) clearTimeout(timeout);
        options.signal?.removeEventListener('abort', onAbort);
      };

      child.stdout.on('data', (chunk: Buffer) => {
        stdout.push(chunk);
        options.onStdout?.(chunk);
      });
      child.stderr.on('data', (chunk: Buffer) => {
        stderr.push(chunk);
        options.onStderr?.(chunk);
      });
      child.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return;
        finish();
        if (err.code === 'ENOENT' || err.code === 'EACCES') {
          // Match what a shell reports for a missing or non-executable program, so local and
          // remote transports give the same result for the same command.
          resolvePromise({
            stdout: '',
            stderr: `${file}: ${err.code === 'ENOENT' ? 'command not found or cwd missing' : 'permission denied'}\n`,
            exitCode: err.code === 'ENOENT' ? 127 : 126,
            signal: null,
          });
          return;
        }
        reject(
          new TransportError('E_TRANSPORT', `[core] spawn failed: ${err.code ?? err.message}`, {
            cause: err,
          }),
        );
      });
      child.on('close', (code, signal) => {
        if (settled) return;
        finish();
        if (killTimer) clearTimeout(killTimer);
        if (failure) {
          reject(failure);
          return;
        }
        resolvePromise({
          stdout: Buffer.concat(stdout).toString('utf8'),
          stderr: Buffer.concat(stderr).toString('utf8'),
          exitCode: code,
          signal,
        });
      });
      child.stdin.on('error', () => {
        /* the command may exit without reading its stdin */
      });
      if (options.stdin !== undefined) child.stdin.end(options.stdin);
      else child.stdin.end();
    });
  }

  async writeFile(
    path: string,
    data: string | Uint8Array,
    options: WriteFileOptions & FileOpOptions = {},
  ): Promise<void> {
    throwIfAborted(options.signal, 'writeFile');
    const target = this.resolvePath(path);
    const mode = options.mode ?? 0o644;
    if (options.atomic === false) {
      await writeFile(target, data, { mode }).catch((e) => {
        throw mapFsError(e, 'writeFile', path);
      });
      return;
    }
    const tmp = tmpName(target);
    try {
      await writeFile(tmp, data, { mode, flag: 'wx' });
      await rename(tmp, target);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw mapFsError(e, 'writeFile', path);
    }
  }

  async readFile(path: string, options: ReadFileOptions & FileOpOptions = {}): Promise<Buffer> {
    throwIfAborted(options.signal, 'readFile');
    const target = this.resolvePath(path);
    try {
      if (options.offset === undefined && options.length === undefined)
        return await readFile(target);
      const handle = await open(target, fsConstants.O_RDONLY);
      try {
        const { size } = await handle.stat();
        const offset = Math.min(options.offset ?? 0, size);
        const length = Math.min(options.length ?? size - offset, size - offset);
        const buf = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buf, 0, length, offset);
        return buf.subarray(0, bytesRead);
      } finally {
        await handle.close();
      }
    } catch (e) {
      throw mapFsError(e, 'readFile', path);
    }
  }

  async mkdir(
    path: string,
    options: { readonly mode?: number } & FileOpOptions = {},
  ): Promise<void> {
    throwIfAborted(options.signal, 'mkdir');
    await mkdir(this.resolvePath(path), { recursive: true, mode: options.mode ?? 0o755 }).catch(
      (e) => {
        throw mapFsError(e, 'mkdir', path);
      },
    );
  }

  async remove(path: string, options: FileOpOptions = {}): Promise<void> {
    throwIfAborted(options.signal, 'remove');
    await rm(this.resolvePath(path), { recursive: true, force: true }).catch((e) => {
      throw mapFsError(e, 'remove', path);
    });
  }

  async stat(path: string, options: FileOpOptions = {}): Promise<FileStat | null> {
    throwIfAborted(options.signal, 'stat');
    try {
      const s = await lstat(this.resolvePath(path));
      return {
        size: s.size,
        mtimeMs: s.mtimeMs,
        isFile: s.isFile(),
        isDirectory: s.isDirectory(),
        mode: s.mode & 0o7777,
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw mapFsError(e, 'stat', path);
    }
  }

  async rename(from: string, to: string, options: FileOpOptions = {}): Promise<void> {
    throwIfAborted(options.signal, 'rename');
    await rename(this.resolvePath(from), this.resolvePath(to)).catch((e) => {
      throw mapFsError(e, 'rename', from);
    });
  }

  async upload(localPath: string, remotePath: string, options: FileOpOptions = {}): Promise<void> {
    await this.#copyAtomic(resolve(localPath), this.resolvePath(remotePath), 'upload', options);
  }

  async download(
    remotePath: string,
    localPath: string,
    options: FileOpOptions = {},
  ): Promise<void> {
    await this.#copyAtomic(this.resolvePath(remotePath), resolve(localPath), 'download', options);
  }

  async #copyAtomic(from: string, to: string, op: string, options: FileOpOptions): Promise<void> {
    throwIfAborted(options.signal, op);
    const tmp = tmpName(to);
    try {
      await mkdir(dirname(to), { recursive: true });
      await copyFile(from, tmp);
      await rename(tmp, to);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw mapFsError(e, op, from);
    }
  }
}
