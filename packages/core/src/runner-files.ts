// What every runner does with a job's files, written once so runners (and custom ones) agree:
// the submit preamble (job and key checks, inputs planned and staged outside the reserved `.cm`
// folder, commands run with a deadline), and after the end `collect` (match the listed files
// against the outputs globs and copy them down) and `tail` (read an output file from an offset
// in whole UTF-8 characters).

import { mkdir, readdir, stat } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { CrystalMathError, isCrystalMathError, throwIfAborted, ValidationError } from './errors.js';
import { globToRegExp } from './glob.js';
import type { JobSpec, StageIn } from './job.js';
import { shQuote } from './quote.js';
import {
  type CollectResult,
  isValidJobKey,
  type JsonValue,
  type RunnerCallOptions,
  type RunnerHandle,
  type RunnerJob,
  type TailResult,
} from './runner.js';
import { safeRelativePath } from './safe-path.js';
import type { ExecResult, Transport } from './transport.js';

/**
 * The folder inside every job directory where a runner keeps its own files (wrapper, meta,
 * exit codes). Reserved: no input may be staged into it.
 */
export const RUNNER_INTERNAL_DIR = '.cm';

/** The checks every `submit` starts with: not aborted, a job object, a valid key. */
export function checkRunnerJob(job: RunnerJob, signal?: AbortSignal): void {
  throwIfAborted(signal, 'submit');
  if (typeof job !== 'object' || job === null)
    throw new ValidationError('job', 'must be an object');
  if (!isValidJobKey(job.key)) {
    throw new ValidationError('job.key', 'must be letters, digits and ._- (at most 64)');
  }
}

/**
 * Runs a runner's own check of a spec (`Runner.validate`), whose ValidationErrors name fields
 * from `spec` (`spec.resources.gres`), and rethrows them under `field` instead (the queue passes
 * `jobs.relax.spec`), so the error names the field the caller gave. Other errors pass unchanged.
 */
export function checkSpecUnder(field: string, check: () => void): void {
  try {
    check();
  } catch (error) {
    const at = isCrystalMathError(error, 'E_VALIDATION') ? (error as ValidationError).field : '';
    if (field === 'spec' || !at.startsWith('spec')) throw error;
    const message = (error as ValidationError).message.slice(at.length + 2);
    throw new ValidationError(`${field}${at.slice(4)}`, message, { cause: error });
  }
}

/** An input with its confined destination, relative to the job directory. */
export interface PlannedInput {
  readonly input: StageIn;
  readonly to: string;
}

/**
 * The spec's inputs with confined destinations (E_PATH_UNSAFE names the field) and the
 * sub-folders they need; an input inside `.cm/` is a ValidationError. No I/O.
 */
export function planInputs(spec: JobSpec): { inputs: PlannedInput[]; subdirs: string[] } {
  const X = RUNNER_INTERNAL_DIR;
  const inputs = (spec.inputs ?? []).map((input, i) => {
    const to = safeRelativePath(input.to, `spec.inputs[${i}].to`);
    if (to === X || to.startsWith(`${X}/`)) {
      throw new ValidationError(`spec.inputs[${i}].to`, `must not be inside ${X}/ (reserved)`);
    }
    return { input, to };
  });
  const subdirs = new Set<string>();
  for (const { to } of inputs) if (posix.dirname(to) !== '.') subdirs.add(posix.dirname(to));
  return { inputs, subdirs: [...subdirs] };
}

/** Copies planned inputs into the job directory `dir` on the target (upload or write). */
export async function stageInputs(
  transport: Transport,
  dir: string,
  inputs: readonly PlannedInput[],
  signal?: AbortSignal,
): Promise<void> {
  const options = signal === undefined ? {} : { signal };
  for (const { input, to } of inputs) {
    const target = `${dir}/${to}`;
    if ('fromJob' in input)
      throw new ValidationError('spec.inputs', 'fromJob inputs are resolved by the queue');
    if ('from' in input) await uploadTree(transport, input.from, target, options);
    else await transport.writeFile(target, input.content, options);
  }
}

/**
 * Uploads a local file, or a local folder recursively (its sub-folders made on the target).
 * Symbolic links inside a folder are not followed (they are passed over), so an input folder
 * never carries what lies outside it.
 */
async function uploadTree(
  transport: Transport,
  from: string,
  to: string,
  options: { signal?: AbortSignal },
): Promise<void> {
  const st = await stat(from).catch(() => null);
  if (st === null || !st.isDirectory()) return transport.upload(from, to, options);
  await transport.mkdir(to, options);
  for (const e of await readdir(from, { withFileTypes: true })) {
    if (e.isDirectory())
      await uploadTree(transport, join(from, e.name), `${to}/${e.name}`, options);
    else if (e.isFile()) await transport.upload(join(from, e.name), `${to}/${e.name}`, options);
  }
}

/**
 * Runs a runner's command on `transport` with its deadline and the caller's signal. An abort
 * stays an AbortError; any other failure to run becomes `wrap(error)` (the runner's typed
 * error). A non-zero exit is a result, not an error.
 */
export async function runnerExec(
  transport: Transport,
  command: readonly string[] | { readonly script: string },
  options: RunnerCallOptions & {
    readonly timeoutMs: number;
    readonly stdin?: string | Uint8Array | undefined;
  },
  wrap: (error: unknown) => Error,
): Promise<ExecResult> {
  try {
    return await transport.exec(command, {
      timeoutMs: options.timeoutMs,
      ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  } catch (err) {
    if (isCrystalMathError(err, 'E_ABORTED')) throw err;
    throw wrap(err);
  }
}

/** Length of the longest prefix of `buf` that does not end inside a UTF-8 sequence. */
export function completeUtf8Length(buf: Uint8Array): number {
  const n = buf.length;
  // Look back at most 3 bytes for the start of a sequence that is cut short.
  for (let back = 1; back <= Math.min(3, n); back++) {
    const b = buf[n - back] as number;
    if ((b & 0xc0) === 0x80) continue; // continuation byte: keep looking
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

export interface DownloadMatchingOptions {
  readonly transport: Transport;
  /** The job directory on the target. */
  readonly dir: string;
  /** `find . -type f -print0` run in `dir`: NUL-separated `./relative/path` names. */
  readonly listing: string;
  /** From `outputPatterns(globs)`. */
  readonly patterns: readonly RegExp[];
  /** Local folder the files are copied under, with their relative paths. */
  readonly dest: string;
  readonly signal?: AbortSignal | undefined;
  /** Message prefix, e.g. `runner-slurm`. */
  readonly label: string;
  /** Added to the details of an `E_RUNNER_COLLECT` error. */
  readonly details?: Readonly<Record<string, unknown>>;
}

/**
 * The compiled outputs globs of a collect call (each confined with `safeRelativePath`); throws
 * `E_VALIDATION` naming `globs[i]`.
 */
export function outputPatterns(globs: readonly string[]): RegExp[] {
  return globs.map((g, i) => globToRegExp(safeRelativePath(g, `globs[${i}]`)));
}

/**
 * Copies each listed file whose relative path matches a glob from the target to `dest`.
 * Names that cannot be placed safely under `dest` are passed over. A failed copy is
 * `E_RUNNER_COLLECT` naming the file; an abort stays `E_ABORTED`.
 */
export async function downloadMatching(o: DownloadMatchingOptions): Promise<CollectResult> {
  if (typeof o.dest !== 'string' || o.dest === '')
    throw new ValidationError('dest', 'must be a path');
  const files: string[] = [];
  let bytes = 0;
  const signal = o.signal === undefined ? {} : { signal: o.signal };
  for (const raw of o.listing.split('\0')) {
    if (raw === '') continue;
    let rel: string;
    try {
      rel = safeRelativePath(raw.replace(/^\.\//, ''), 'file');
    } catch {
      continue; // a name that cannot be placed safely under dest
    }
    if (!o.patterns.some((p) => p.test(rel))) continue;
    const local = join(o.dest, ...rel.split('/'));
    try {
      await mkdir(dirname(local), { recursive: true });
      await o.transport.download(`${o.dir}/${rel}`, local, signal);
      bytes += (await stat(local)).size;
    } catch (err) {
      if (isCrystalMathError(err, 'E_ABORTED')) throw err;
      throw new CrystalMathError('E_RUNNER_COLLECT', `[${o.label}] cannot copy ${rel}`, {
        cause: err,
        details: { ...o.details, file: rel },
      });
    }
    files.push(rel);
  }
  return { files, bytes };
}

/** `tail` options checked: offset a non-negative integer, stream stdout or stderr. */
export function tailOptions(options?: { readonly stream?: unknown; readonly offset?: unknown }): {
  offset: number;
  stream: 'stdout' | 'stderr';
} {
  const offset = options?.offset ?? 0;
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0)
    throw new ValidationError('offset', 'must be a non-negative integer');
  const stream = options?.stream ?? 'stdout';
  if (stream !== 'stdout' && stream !== 'stderr')
    throw new ValidationError('stream', 'must be stdout or stderr');
  return { offset, stream };
}

/**
 * New text of `path` on the target from `offset`, in whole UTF-8 characters (a character cut by
 * the read waits for the next call); a file not there yet reads as empty.
 */
export async function readTail(
  transport: Transport,
  path: string,
  offset: number,
  signal?: AbortSignal,
): Promise<TailResult> {
  let buf: Buffer;
  try {
    buf = await transport.readFile(path, { offset, ...(signal === undefined ? {} : { signal }) });
  } catch (err) {
    if (isCrystalMathError(err, 'E_NOT_FOUND')) return { data: '', offset };
    throw err;
  }
  const end = completeUtf8Length(buf);
  return { data: buf.subarray(0, end).toString('utf8'), offset: offset + end };
}

/** Options of `collectJobDir`. */
export interface CollectJobDirOptions {
  readonly transport: Transport;
  /** The job directory on the target. */
  readonly dir: string;
  /** The collect call's `globs`, or the spec's `outputs`. */
  readonly globs: readonly string[];
  /** Local folder the files are copied under, with their relative paths. */
  readonly dest: string;
  readonly signal?: AbortSignal | undefined;
  /** Message prefix, e.g. `runner-sge`. */
  readonly label: string;
  /** Added to the details of an `E_RUNNER_COLLECT` error. */
  readonly details?: Readonly<Record<string, unknown>>;
  /** Runs a shell script on the target with the runner's deadline and signal (its `runnerExec`). */
  readonly exec: (script: string) => Promise<Pick<ExecResult, 'stdout' | 'stderr' | 'exitCode'>>;
}

/**
 * A runner's `collect`, written once: lists the job directory in ONE command (leaving out the
 * reserved `.cm` folder) and copies the files matching the globs with `downloadMatching`. No
 * globs: nothing to do. A listing that fails is `E_RUNNER_COLLECT` naming the directory.
 */
export async function collectJobDir(options: CollectJobDirOptions): Promise<CollectResult> {
  const patterns = outputPatterns(options.globs);
  if (patterns.length === 0) return { files: [], bytes: 0 };
  const { dir, label } = options;
  const r = await options.exec(
    `cd -- ${shQuote(dir)} && find . -path ./${RUNNER_INTERNAL_DIR} -prune -o -type f -print0`,
  );
  if (r.exitCode !== 0) {
    const why = r.stderr.trim();
    throw new CrystalMathError(
      'E_RUNNER_COLLECT',
      `[${label}] cannot list ${dir}: ${why.length <= 500 ? why : `${why.slice(0, 500)}…`}`,
      { details: { ...options.details } },
    );
  }
  return downloadMatching({
    transport: options.transport,
    dir,
    listing: r.stdout,
    patterns,
    dest: options.dest,
    signal: options.signal,
    label,
    ...(options.details === undefined ? {} : { details: options.details }),
  });
}

/**
 * The sections of a runner script's output: the lines after each `@@cm:<name>` marker line, up
 * to the next marker, by name. How the runners' one-round-trip scripts (claim, find, poll)
 * return several results at once.
 */
export function parseMarkedSections(stdout: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let cur: string[] | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('@@cm:')) {
      cur = [];
      out.set(line.slice(5).trim(), cur);
    } else cur?.push(line);
  }
  return out;
}

/**
 * The handle `find` returns for a job found again on the target: its scheduler id and
 * directory, with the fields the job's `meta.json` (`metaText`) kept at submit; an unreadable
 * meta file only loses the optional fields.
 */
export function recoveredHandle(options: {
  readonly kind: string;
  readonly jobKey: string;
  readonly jobId: string;
  readonly jobDir: string;
  readonly metaText: string;
}): RunnerHandle {
  let meta: Record<string, JsonValue> = {};
  try {
    const parsed: unknown = JSON.parse(options.metaText.trim() || '{}');
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
      meta = parsed as Record<string, JsonValue>;
    }
  } catch {
    /* an unreadable meta file only loses optional fields */
  }
  return {
    kind: options.kind,
    jobKey: options.jobKey,
    data: {
      name: typeof meta.name === 'string' ? meta.name : options.jobKey,
      submittedAt: typeof meta.submittedAt === 'number' ? meta.submittedAt : Date.now(),
      ...meta,
      jobId: options.jobId,
      jobDir: options.jobDir,
    },
  };
}
