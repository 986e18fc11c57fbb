// The default ArtifactStore: one folder per job under a root on this machine (beside the SQLite
// file by default). A put streams into a temporary name in the destination folder, fsyncs,
// checks size and checksum, then renames, so a crash never leaves a half file visible.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, open, readdir, realpath, rename, rm, unlink } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import {
  type ArtifactEntry,
  type ArtifactGetOptions,
  type ArtifactPutOptions,
  type ArtifactPutResult,
  type ArtifactStore,
  isValidArtifactJobId,
} from '../artifact-store.js';
import {
  AbortError,
  CrystalMathError,
  isCrystalMathError,
  throwIfAborted,
  UnsafePathError,
  ValidationError,
} from '../errors.js';
import { safeRelativePath } from '../safe-path.js';

/** Prefix of a write in progress; never listed, never a valid artifact name. */
const PART = '.cm-part-';

export interface FileArtifactStoreOptions {
  /** The folder that holds one sub-folder per job. Created on the first put. */
  readonly root: string;
}

/**
 * Artifacts as plain files: `<root>/<jobId>/<path>`. Safe for several processes on one machine
 * (each write has its own temporary name; the last rename wins with identical content).
 *
 * @example
 * const store = new FileArtifactStore({ root: '/data/jobs.db.artifacts' });
 * await store.put('42', 'scf.out', createReadStream('scf.out'));
 */
export class FileArtifactStore implements ArtifactStore {
  readonly root: string;
  readonly description: string;

  constructor(options: FileArtifactStoreOptions) {
    if (typeof options?.root !== 'string' || options.root === '')
      throw new ValidationError('root', 'must be a folder path');
    this.root = options.root;
    this.description = `file://${options.root}`;
  }

  #jobDir(jobId: string): string {
    if (!isValidArtifactJobId(jobId))
      throw new ValidationError('jobId', 'must be letters, digits and ._- (a job id)');
    return join(this.root, jobId);
  }

  #path(jobId: string, path: string): { dir: string; rel: string; file: string } {
    const dir = this.#jobDir(jobId);
    const rel = safeRelativePath(path, 'path');
    if (rel.split('/').some((s) => s.startsWith(PART)))
      throw new UnsafePathError('path', `must not have a segment starting with ${PART}`);
    return { dir, rel, file: join(dir, ...rel.split('/')) };
  }

  /** Creates the folders of `file` and checks, on the real paths, that it stays in `dir`. */
  async #prepare(dir: string, file: string): Promise<void> {
    await mkdir(dirname(file), { recursive: true });
    const [realDir, realParent] = await Promise.all([realpath(dir), realpath(dirname(file))]);
    if (realParent !== realDir && !realParent.startsWith(realDir + sep))
      throw new UnsafePathError('path', 'escapes the job folder');
  }

  async put(
    jobId: string,
    path: string,
    data: Readable | AsyncIterable<Uint8Array>,
    options: ArtifactPutOptions = {},
  ): Promise<ArtifactPutResult> {
    const { dir, rel, file } = this.#path(jobId, path);
    const mode = options.mode ?? 0o644;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)
      throw new ValidationError('mode', 'must be permission bits (0 to 0o7777)');
    throwIfAborted(options.signal, 'artifact put');
    await this.#prepare(dir, file);
    const tmp = join(dirname(file), `${PART}${randomBytes(6).toString('hex')}`);
    const hash = createHash('sha256');
    let size = 0;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      try {
        for await (const chunk of data) {
          throwIfAborted(options.signal, 'artifact put');
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Uint8Array);
          hash.update(buf);
          size += buf.length;
          await fh.write(buf);
        }
        await fh.sync();
        await fh.chmod(mode);
      } finally {
        await fh.close();
      }
      const sha256 = hash.digest('hex');
      if (options.size !== undefined && options.size !== size)
        throw checksumError(jobId, rel, `size ${size}, expected ${options.size}`);
      if (options.sha256 !== undefined && options.sha256.toLowerCase() !== sha256)
        throw checksumError(jobId, rel, `sha256 ${sha256}, expected ${options.sha256}`);
      await rename(tmp, file);
      await syncDir(dirname(file));
      return { path: rel, size, mode, sha256 };
    } catch (error) {
      await unlink(tmp).catch(() => undefined);
      if (isCrystalMathError(error)) throw error;
      throw storeError(`cannot write ${jobId}/${rel}`, error);
    }
  }

  async get(jobId: string, path: string, options: ArtifactGetOptions = {}): Promise<Readable> {
    const { rel, file } = this.#path(jobId, path);
    throwIfAborted(options.signal, 'artifact get');
    const st = await lstat(file).catch(() => null);
    if (st === null || !st.isFile())
      throw new CrystalMathError('E_NOT_FOUND', `[core] no artifact ${jobId}/${rel}`, {
        details: { jobId, path: rel },
      });
    const stream = createReadStream(file, options.signal ? { signal: options.signal } : {});
    const expected = options.sha256;
    if (expected === undefined) return stream;
    const hash = createHash('sha256');
    const check = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        done(null, chunk);
      },
      flush(done) {
        const got = hash.digest('hex');
        done(
          got === expected.toLowerCase()
            ? null
            : checksumError(jobId, rel, `sha256 ${got}, expected ${expected}`),
        );
      },
    });
    stream.on('error', (e) => check.destroy(e));
    return stream.pipe(check);
  }

  async stat(jobId: string, path: string): Promise<ArtifactEntry | null> {
    const { rel, file } = this.#path(jobId, path);
    const st = await lstat(file).catch(() => null);
    if (st === null || !st.isFile()) return null;
    return { path: rel, size: st.size, mode: st.mode & 0o7777 };
  }

  async list(jobId: string): Promise<ArtifactEntry[]> {
    const dir = this.#jobDir(jobId);
    const out: ArtifactEntry[] = [];
    const walk = async (abs: string, rel: string): Promise<void> => {
      const entries = await readdir(abs, { withFileTypes: true }).catch(() => []);
      for (const e of entries) {
        if (e.name.startsWith(PART)) continue;
        const r = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) await walk(join(abs, e.name), r);
        else if (e.isFile()) {
          const st = await lstat(join(abs, e.name)).catch(() => null);
          if (st?.isFile()) out.push({ path: r, size: st.size, mode: st.mode & 0o7777 });
        }
      }
    };
    await walk(dir, '');
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  async remove(jobId: string, path?: string): Promise<void> {
    const target = path === undefined ? this.#jobDir(jobId) : this.#path(jobId, path).file;
    await rm(target, { recursive: true, force: true });
  }

  /**
   * Removes the temporary files interrupted writes left in a job's folder (a crash mid-put).
   * Never touches complete artifacts.
   */
  async sweep(jobId: string): Promise<number> {
    const dir = this.#jobDir(jobId);
    let n = 0;
    const walk = async (abs: string): Promise<void> => {
      const entries = await readdir(abs, { withFileTypes: true }).catch(() => []);
      for (const e of entries) {
        const p = join(abs, e.name);
        if (e.name.startsWith(PART)) {
          await rm(p, { force: true });
          n++;
        } else if (e.isDirectory()) await walk(p);
      }
    };
    await walk(dir);
    return n;
  }
}

function checksumError(jobId: string, path: string, what: string): CrystalMathError {
  return new CrystalMathError('E_ARTIFACT_CHECKSUM', `[core] artifact ${jobId}/${path}: ${what}`, {
    details: { jobId, path },
  });
}

function storeError(message: string, cause: unknown): CrystalMathError {
  if (cause instanceof AbortError) return cause;
  return new CrystalMathError('E_ARTIFACT_STORE', `[core] ${message}`, { cause });
}

async function syncDir(dir: string): Promise<void> {
  // A rename is durable once its folder is synced; platforms that cannot open a folder skip it.
  const fh = await open(dir, 'r').catch(() => null);
  if (fh === null) return;
  await fh.sync().catch(() => undefined);
  await fh.close();
}
