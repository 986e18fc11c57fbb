// The ArtifactStore contract: where the queue keeps what jobs produced, by job and relative
// path. Small on purpose (five methods over streams) so an embedder can back it with S3 or any
// object store; the filesystem store (`FileArtifactStore`) is the default.

import type { Readable } from 'node:stream';

/** One stored artifact as the store sees it. */
export interface ArtifactEntry {
  /** Relative POSIX path inside the job's artifacts, e.g. `out/scf.out`. */
  readonly path: string;
  readonly size: number;
  /** Permission bits, e.g. 0o644 (stores that cannot keep them report 0o644). */
  readonly mode: number;
}

/** What `put` wrote: the entry plus the SHA-256 of the bytes, computed while streaming. */
export interface ArtifactPutResult extends ArtifactEntry {
  /** Lower-case hex SHA-256 of the stored bytes. */
  readonly sha256: string;
}

export interface ArtifactPutOptions {
  /** Permission bits to keep with the artifact. Default 0o644. */
  readonly mode?: number;
  /**
   * The SHA-256 the bytes must have (hex). A mismatch stores nothing and throws
   * `E_ARTIFACT_CHECKSUM`.
   */
  readonly sha256?: string;
  /** The size the bytes must have; a mismatch stores nothing and throws `E_ARTIFACT_CHECKSUM`. */
  readonly size?: number;
  readonly signal?: AbortSignal;
}

export interface ArtifactGetOptions {
  /**
   * Verify while streaming: the stream errors with `E_ARTIFACT_CHECKSUM` at its end when the
   * bytes read do not have this SHA-256 (a corrupted or swapped file is never passed off).
   */
  readonly sha256?: string;
  readonly signal?: AbortSignal;
}

/**
 * Stores what jobs produced, by job id and relative path.
 *
 * Rules every implementation keeps: `put` is atomic (a reader sees the whole new content or
 * the old one, never a part; an interrupted `put` leaves nothing visible); paths are confined
 * (`safeRelativePath`: no `..`, not absolute) and nothing is written outside the job's own
 * space; data moves as streams, so memory does not grow with the size of an artifact.
 * `put` of an existing path replaces it. Errors: `E_NOT_FOUND` (get of a missing artifact),
 * `E_ARTIFACT_CHECKSUM`, `E_PATH_UNSAFE`, `E_VALIDATION` (a bad job id), `E_ARTIFACT_STORE`
 * (the storage failed).
 *
 * @example
 * const store = new FileArtifactStore({ root: 'jobs.db.artifacts' });
 * const { sha256 } = await store.put('42', 'out/scf.out', createReadStream('scf.out'));
 * (await store.get('42', 'out/scf.out', { sha256 })).pipe(process.stdout);
 */
export interface ArtifactStore {
  /** A secret-free description for logs, e.g. `file:///data/jobs.db.artifacts`. */
  readonly description: string;
  /** Writes `data` under (jobId, path), atomically, and returns its size and SHA-256. */
  put(
    jobId: string,
    path: string,
    data: Readable | AsyncIterable<Uint8Array>,
    options?: ArtifactPutOptions,
  ): Promise<ArtifactPutResult>;
  /** A stream of the artifact's bytes; `E_NOT_FOUND` when there is none. */
  get(jobId: string, path: string, options?: ArtifactGetOptions): Promise<Readable>;
  /** The artifact's entry, or null when there is none. */
  stat(
    jobId: string,
    path: string,
    options?: { readonly signal?: AbortSignal },
  ): Promise<ArtifactEntry | null>;
  /** Every complete artifact of the job, by path (never a write in progress). */
  list(jobId: string, options?: { readonly signal?: AbortSignal }): Promise<ArtifactEntry[]>;
  /** Removes one artifact, or all of the job's when `path` is omitted; no error when absent. */
  remove(jobId: string, path?: string, options?: { readonly signal?: AbortSignal }): Promise<void>;
}

const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** True when `id` may name a job's space in an artifact store (letters, digits, `._-`). */
export function isValidArtifactJobId(id: unknown): id is string {
  return typeof id === 'string' && JOB_ID.test(id) && id !== '.' && !id.includes('..');
}
