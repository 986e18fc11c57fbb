// File operations over one SFTP session: atomic writes and uploads (temporary name in the same
// directory, then `posix-rename@openssh.com`, which replaces the target atomically), ranged
// and pipelined reads, recursive mkdir and remove. SFTP status codes become typed errors:
// "no such file" is core's `E_NOT_FOUND`, everything else `E_SSH_SFTP` naming the path.

import { randomBytes } from 'node:crypto';
import {
  mkdir as localMkdir,
  rename as localRename,
  stat as localStat,
  unlink as localUnlink,
} from 'node:fs/promises';
import { dirname as localDirname, posix } from 'node:path';
import {
  type CrystalMathError,
  type FileStat,
  isCrystalMathError,
  TransportError,
} from '@crystalmath/core';
import type { OpenMode, SFTPWrapper, Stats } from 'ssh2';
import { SshChannelError, SshSftpError } from './errors.js';

const NO_SUCH_FILE = 2;
const STATUS_NAMES: Record<number, string> = {
  1: 'end of file',
  2: 'no such file',
  3: 'permission denied',
  4: 'failure',
  5: 'bad message',
  6: 'no connection',
  7: 'connection lost',
  8: 'operation unsupported',
};

/** Bytes per SFTP read or write request, and how many are in flight at once. */
const CHUNK = 64 * 1024;
const IN_FLIGHT = 8;

function statusOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** A typed error for a failed SFTP operation on `path` of host `label`. */
export function sftpError(
  error: unknown,
  op: string,
  path: string,
  label: string,
): CrystalMathError {
  if (isCrystalMathError(error)) return error;
  const status = statusOf(error);
  const details = { host: label, path, op, ...(status === undefined ? {} : { status }) };
  if (status === NO_SUCH_FILE || (error as NodeJS.ErrnoException | null)?.code === 'ENOENT') {
    return new TransportError('E_NOT_FOUND', `[ssh-pool] ${op}: no such file: ${path}`, {
      cause: error,
      details,
    });
  }
  const message = error instanceof Error ? error.message : String(error);
  if (status === undefined && /no response|not connected|closed|channel/i.test(message)) {
    return new SshChannelError(`${label}: ${op} ${path}: the SFTP session was lost (${message})`, {
      cause: error,
      details,
    });
  }
  const name =
    status === undefined ? message : `${STATUS_NAMES[status] ?? `status ${status}`}: ${message}`;
  return new SshSftpError(`${label}: ${op} ${path}: ${name}`, { cause: error, details });
}

function call<T>(fn: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    try {
      fn((err, value) => (err ? reject(err) : resolve(value as T)));
    } catch (error) {
      reject(error);
    }
  });
}

/** A name next to `path` for writing before the rename. */
export function tempName(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Runs `fn` over `items`, at most `limit` at a time. */
async function eachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** SFTP operations on one session. `label` names the host in errors. */
export class SftpOps {
  readonly #sftp: SFTPWrapper;
  readonly #label: string;

  constructor(sftp: SFTPWrapper, label: string) {
    this.#sftp = sftp;
    this.#label = label;
  }

  #err(error: unknown, op: string, path: string): CrystalMathError {
    return sftpError(error, op, path, this.#label);
  }

  #open(path: string, flags: OpenMode, mode?: number): Promise<Buffer> {
    const attrs = mode === undefined ? {} : { mode };
    return call<Buffer>((cb) => this.#sftp.open(path, flags, attrs, cb));
  }

  #close(handle: Buffer): Promise<void> {
    return call<void>((cb) => this.#sftp.close(handle, cb));
  }

  async #writeAll(handle: Buffer, data: Buffer): Promise<void> {
    const offsets: number[] = [];
    for (let pos = 0; pos < data.length; pos += CHUNK) offsets.push(pos);
    await eachLimit(offsets, IN_FLIGHT, (pos) =>
      call<void>((cb) =>
        this.#sftp.write(handle, data, pos, Math.min(CHUNK, data.length - pos), pos, cb),
      ),
    );
  }

  /** Reads up to `length` bytes at `position` into buf[at..]; fewer only at end of file. */
  async #readFully(
    handle: Buffer,
    buf: Buffer,
    at: number,
    length: number,
    position: number,
  ): Promise<number> {
    let got = 0;
    while (got < length) {
      const n = await new Promise<number>((resolve, reject) => {
        try {
          this.#sftp.read(handle, buf, at + got, length - got, position + got, (err, bytesRead) =>
            err ? reject(err) : resolve(bytesRead),
          );
        } catch (error) {
          reject(error);
        }
      });
      if (n === 0) break;
      got += n;
    }
    return got;
  }

  /** Renames, replacing `to` atomically when the server has `posix-rename@openssh.com`. */
  async rename(from: string, to: string): Promise<void> {
    try {
      await call<void>((cb) => this.#sftp.ext_openssh_rename(from, to, cb));
      return;
    } catch (error) {
      if (!(error instanceof Error) || !/does not support/.test(error.message)) {
        throw this.#err(error, 'rename', from);
      }
    }
    // Plain SFTP rename refuses an existing target: remove it first (not atomic).
    try {
      await call<void>((cb) => this.#sftp.rename(from, to, cb));
    } catch (error) {
      if (statusOf(error) === NO_SUCH_FILE) throw this.#err(error, 'rename', from);
      await call<void>((cb) => this.#sftp.unlink(to, cb)).catch(() => undefined);
      await call<void>((cb) => this.#sftp.rename(from, to, cb)).catch((e: unknown) => {
        throw this.#err(e, 'rename', from);
      });
    }
  }

  async writeFile(path: string, data: Buffer, mode: number, atomic: boolean): Promise<void> {
    const target = atomic ? tempName(path) : path;
    let handle: Buffer;
    try {
      handle = await this.#open(target, atomic ? 'wx' : 'w', mode);
    } catch (error) {
      throw this.#err(error, 'writeFile', path);
    }
    try {
      // The server's umask applied to the open: set the exact mode asked for.
      if (atomic) await call<void>((cb) => this.#sftp.fchmod(handle, mode, cb));
      await this.#writeAll(handle, data);
    } catch (error) {
      await this.#close(handle).catch(() => undefined);
      if (atomic) await call<void>((cb) => this.#sftp.unlink(target, cb)).catch(() => undefined);
      throw this.#err(error, 'writeFile', path);
    }
    try {
      await this.#close(handle);
    } catch (error) {
      if (atomic) await call<void>((cb) => this.#sftp.unlink(target, cb)).catch(() => undefined);
      throw this.#err(error, 'writeFile', path);
    }
    if (!atomic) return;
    try {
      await this.rename(target, path);
    } catch (error) {
      await call<void>((cb) => this.#sftp.unlink(target, cb)).catch(() => undefined);
      throw isCrystalMathError(error) ? error : this.#err(error, 'writeFile', path);
    }
  }

  async readFile(path: string, offset?: number, length?: number): Promise<Buffer> {
    let handle: Buffer;
    try {
      handle = await this.#open(path, 'r');
    } catch (error) {
      throw this.#err(error, 'readFile', path);
    }
    try {
      const { size } = await call<Stats>((cb) => this.#sftp.fstat(handle, cb));
      const start = Math.min(Math.max(offset ?? 0, 0), size);
      const len = Math.max(0, Math.min(length ?? size - start, size - start));
      const buf = Buffer.alloc(len);
      const offsets: number[] = [];
      for (let pos = 0; pos < len; pos += CHUNK) offsets.push(pos);
      // A short chunk means the file shrank meanwhile: the result ends there.
      let end = len;
      await eachLimit(offsets, IN_FLIGHT, async (pos) => {
        const want = Math.min(CHUNK, len - pos);
        const got = await this.#readFully(handle, buf, pos, want, start + pos);
        if (got < want) end = Math.min(end, pos + got);
      });
      return buf.subarray(0, end);
    } catch (error) {
      throw this.#err(error, 'readFile', path);
    } finally {
      await this.#close(handle).catch(() => undefined);
    }
  }

  /** lstat, or null when the path does not exist. */
  async lstat(path: string): Promise<Stats | null> {
    try {
      return await call<Stats>((cb) => this.#sftp.lstat(path, cb));
    } catch (error) {
      if (statusOf(error) === NO_SUCH_FILE) return null;
      throw this.#err(error, 'stat', path);
    }
  }

  async stat(path: string): Promise<FileStat | null> {
    const s = await this.lstat(path);
    if (!s) return null;
    return {
      size: s.size,
      // SFTP v3 carries whole seconds only.
      mtimeMs: s.mtime * 1000,
      isFile: s.isFile(),
      isDirectory: s.isDirectory(),
      mode: s.mode & 0o7777,
    };
  }

  async mkdir(path: string, mode: number): Promise<void> {
    let failure = await this.#mkdirOnce(path, mode);
    if (failure === undefined) return;
    if (statusOf(failure) === NO_SUCH_FILE) {
      const parent = posix.dirname(path);
      if (parent === path || parent === '.' || parent === '/') {
        throw this.#err(failure, 'mkdir', path);
      }
      await this.mkdir(parent, mode);
      failure = await this.#mkdirOnce(path, mode);
      if (failure === undefined) return;
    }
    // OpenSSH reports an existing path as a generic failure: fine if it is a directory.
    const existing = await call<Stats>((cb) => this.#sftp.stat(path, cb)).catch(() => undefined);
    if (existing?.isDirectory()) return;
    throw this.#err(failure, 'mkdir', path);
  }

  /** One SFTP mkdir: undefined on success, the error otherwise. */
  #mkdirOnce(path: string, mode: number): Promise<unknown> {
    return call<void>((cb) => this.#sftp.mkdir(path, { mode }, cb)).then(
      () => undefined,
      (error: unknown) => error ?? new Error('mkdir failed'),
    );
  }

  async remove(path: string): Promise<void> {
    const s = await this.lstat(path);
    if (!s) return;
    const gone = (error: unknown) => {
      if (statusOf(error) !== NO_SUCH_FILE) throw this.#err(error, 'remove', path);
    };
    if (!s.isDirectory()) {
      await call<void>((cb) => this.#sftp.unlink(path, cb)).catch(gone);
      return;
    }
    let entries: { filename: string }[];
    try {
      entries = await call<{ filename: string }[]>((cb) => this.#sftp.readdir(path, cb));
    } catch (error) {
      gone(error);
      return;
    }
    await eachLimit(entries, IN_FLIGHT, (e) => this.remove(posix.join(path, e.filename)));
    await call<void>((cb) => this.#sftp.rmdir(path, cb)).catch(gone);
  }

  async upload(localPath: string, remotePath: string): Promise<void> {
    let mode: number;
    try {
      mode = (await localStat(localPath)).mode & 0o777;
    } catch (error) {
      throw this.#err(error, 'upload', localPath);
    }
    const tmp = tempName(remotePath);
    try {
      await call<void>((cb) => this.#sftp.fastPut(localPath, tmp, { mode }, cb));
      await this.rename(tmp, remotePath);
    } catch (error) {
      await call<void>((cb) => this.#sftp.unlink(tmp, cb)).catch(() => undefined);
      throw this.#err(error, 'upload', remotePath);
    }
  }

  async download(remotePath: string, localPath: string): Promise<void> {
    await localMkdir(localDirname(localPath), { recursive: true });
    const tmp = tempName(localPath);
    try {
      await call<void>((cb) => this.#sftp.fastGet(remotePath, tmp, {}, cb));
      await localRename(tmp, localPath);
    } catch (error) {
      await localUnlink(tmp).catch(() => undefined);
      throw this.#err(error, 'download', remotePath);
    }
  }
}
