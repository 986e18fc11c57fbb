// The Transport contract: run a command and move files on one machine. Runners are written
// against this interface only, so the same runner works locally and over SSH.

/** A command: an argv vector (run without a shell) or a POSIX `sh` script. */
export type Command = readonly string[] | { readonly script: string };

export interface ExecOptions {
  /** Working directory on the target. Relative paths are relative to the transport's home. */
  readonly cwd?: string;
  /** Variables added to the command's environment. Names must be portable identifiers. */
  readonly env?: Readonly<Record<string, string>>;
  /** Bytes written to the command's standard input, which is then closed. */
  readonly stdin?: string | Uint8Array;
  /** Kill the command and throw `E_TRANSPORT_TIMEOUT` after this long. Default: no limit. */
  readonly timeoutMs?: number;
  /** Kill the command and throw `E_ABORTED` when this fires. */
  readonly signal?: AbortSignal;
  /** Streaming callbacks, called with each chunk as it arrives (output is also buffered). */
  readonly onStdout?: (chunk: Buffer) => void;
  readonly onStderr?: (chunk: Buffer) => void;
}

/** What a finished command produced. A non-zero exit is a result, not an error. */
export interface ExecResult {
  /** Standard output decoded as UTF-8. */
  readonly stdout: string;
  readonly stderr: string;
  /** Exit code, or null when the command was ended by a signal. */
  readonly exitCode: number | null;
  /** The signal that ended the command (e.g. `SIGTERM`), or null. */
  readonly signal: string | null;
}

export interface FileStat {
  readonly size: number;
  readonly mtimeMs: number;
  readonly isFile: boolean;
  readonly isDirectory: boolean;
  /** Permission bits, e.g. 0o644. */
  readonly mode: number;
}

export interface WriteFileOptions {
  /** Permission bits for a new file. Default 0o644. */
  readonly mode?: number;
  /** Write to a temporary name in the same directory, then rename. Default true. */
  readonly atomic?: boolean;
}

export interface ReadFileOptions {
  /** Byte offset to start at (for tailing logs). Default 0. */
  readonly offset?: number;
  /** At most this many bytes. Default: to the end. */
  readonly length?: number;
}

export interface FileOpOptions {
  readonly signal?: AbortSignal;
}

/**
 * Runs commands and moves files on one machine.
 *
 * Paths are POSIX paths on the target; relative ones are relative to the transport's home
 * (its `home` option for `LocalTransport`, the login directory for SSH). Commands given as
 * argv are quoted by `shQuote` where a shell is involved; nothing concatenates user strings.
 *
 * @example
 * const t = new LocalTransport();
 * const r = await t.exec(['printf', '%s', 'hello world'], { timeoutMs: 5_000 });
 * r.stdout; // 'hello world'
 */
export interface Transport {
  /** A secret-free description for logs, e.g. `local` or `ssh://alice@cluster:22`. */
  readonly description: string;
  exec(command: Command, options?: ExecOptions): Promise<ExecResult>;
  /** Writes a file (atomically by default). Parent directories must exist. */
  writeFile(
    path: string,
    data: string | Uint8Array,
    options?: WriteFileOptions & FileOpOptions,
  ): Promise<void>;
  /** Reads a file, or part of it. Throws `E_NOT_FOUND` when it does not exist. */
  readFile(path: string, options?: ReadFileOptions & FileOpOptions): Promise<Buffer>;
  /** Creates a directory and its parents; no error when it exists. */
  mkdir(path: string, options?: { readonly mode?: number } & FileOpOptions): Promise<void>;
  /** Removes a file or a directory tree; no error when it does not exist. */
  remove(path: string, options?: FileOpOptions): Promise<void>;
  /** Stats a path, or returns null when it does not exist. Does not follow a final symlink. */
  stat(path: string, options?: FileOpOptions): Promise<FileStat | null>;
  /** Renames within the target, replacing the destination atomically. */
  rename(from: string, to: string, options?: FileOpOptions): Promise<void>;
  /** Copies a local file to the target (atomically: temporary name, then rename). */
  upload(localPath: string, remotePath: string, options?: FileOpOptions): Promise<void>;
  /** Copies a file from the target to a local path (atomically). */
  download(remotePath: string, localPath: string, options?: FileOpOptions): Promise<void>;
  /** Releases what the transport holds. Optional: stateless transports have nothing to close. */
  close?(): Promise<void>;
}
