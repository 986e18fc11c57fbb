import { readFile, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import {
  BatchStatusCache,
  type CollectResult,
  CrystalMathError,
  checkRunnerJob,
  checkSpecUnder,
  collectJobDir,
  isCrystalMathError,
  isTerminalRunnerState,
  isValidJobKey,
  type JobSpec,
  type JsonValue,
  outputGlobs,
  type PlannedInput,
  parseBatchHandle,
  parseMarkedSections,
  planInputs,
  type Runner,
  type RunnerCallOptions,
  type RunnerCapabilities,
  type RunnerHandle,
  type RunnerJob,
  type RunnerStatus,
  readTail,
  recoveredHandle,
  runnerExec,
  safeRelativePath,
  shJoin,
  shQuote,
  stageInputs,
  type TailResult,
  type Transport,
  TransportError,
  tailOptions,
  throwIfAborted,
  ValidationError,
} from '@crystalmath/core';
import { parseSacct } from './parse-sacct.js';
import { countArrayTasks, firstArrayTask, parseSbatchParsable } from './parse-slurm-job-id.js';
import { parseSqueue } from './parse-squeue.js';
import {
  type AccountingMode,
  buildPollScript,
  parseExitFiles,
  parsePollOutput,
  type SlurmCommands,
} from './poll-script.js';
import {
  INTERNAL_DIR,
  JOBID_FILE,
  jobNameHasKey,
  renderSlurmScript,
  SCRIPT_FILE,
  USER_SCRIPT_FILE,
  validateSlurmTargetOptions,
} from './render-slurm-script.js';
import { resolveStatus, type TrackedJob } from './resolve-status.js';
import { type ArchiveFile, ustarArchive } from './stage-archive.js';

/**
 * An awk filter keeping `id|name` lines whose job name is `key` or ends in `.<key>` (see
 * `slurmJobName`): squeue's and sacct's `--name` match whole names only.
 */
function keyFilter(key: string): string {
  return `awk -F'|' -v k=${shQuote(key)} '$2 == k || (length($2) > length(k) && substr($2, length($2) - length(k)) == "." k)'`;
}

import { clip, SlurmCommandError, SlurmParseError } from './slurm-errors.js';
import type { SlurmDefaults, SlurmResources } from './slurm-resources.js';

/** Options of `new SlurmRunner(...)`. */
export interface SlurmRunnerOptions {
  /** Where the SLURM commands run: `LocalTransport` on a login node, or `SshTransport`. */
  readonly transport: Transport;
  /**
   * Directory on the cluster under which each job gets `<root>/<jobKey>`. It must be on a file
   * system the compute nodes see (the job writes its exit file and logs there).
   */
  readonly root: string;
  /** Resources used when a job does not set them (partition, account, cpusPerTask, ...). */
  readonly defaults?: SlurmDefaults;
  /** Options this site rejects (`--mem`, `mem-per-cpu`, ...): left out of every script. */
  readonly skipDirectives?: readonly string[];
  /**
   * Smallest interval between two scheduler calls of this runner, in ms. Polls within it return
   * the statuses of the last call. Default 5 000. Use one runner per cluster.
   */
  readonly pollMinIntervalMs?: number;
  /** How long a job may be absent from squeue, accounting and its exit file before `lost`. Default 120 000 ms. */
  readonly lostGraceMs?: number;
  /** Paths of the SLURM commands, when they are not on the PATH. */
  readonly commands?: Partial<SlurmCommands>;
  /**
   * Where results come from once squeue forgets a job: `sacct`, `jobcomp` (`sacct -c`), `none`
   * (exit files only) or `auto` (sacct, then jobcomp; the first that works is kept). Default `auto`.
   */
  readonly accounting?: AccountingMode;
  /** Time limit of each command sent to the cluster, in ms. Default 60 000. */
  readonly commandTimeoutMs?: number;
  /**
   * A job directory left by a submit that crashed before `sbatch` may be reused after this many
   * seconds. Default 300.
   */
  readonly staleClaimSeconds?: number;
}

/** What a SLURM handle's `data` holds. JSON only. */
export interface SlurmHandleData {
  readonly jobId: string;
  readonly jobDir: string;
  readonly name: string;
  /** Number of array tasks, for array jobs. */
  readonly arrayTasks?: number;
  /** First array index, for array jobs (whose logs are `slurm-<id>_<index>.out`). */
  readonly arrayFirst?: string;
  /** The spec's output globs, for `collect`. */
  readonly outputs?: readonly string[];
  readonly submittedAt: number;
}

const DEFAULT_COMMANDS: SlurmCommands = {
  sbatch: 'sbatch',
  squeue: 'squeue',
  sacct: 'sacct',
  scancel: 'scancel',
};
const ACCOUNTING_RETRY_MS = 10 * 60_000;
const SCANCEL_HARMLESS =
  /already completing or completed|Invalid job id|has already finished|Job\/step already/i;

/** The SLURM job id of a handle made by a SlurmRunner, e.g. for `resources.dependency`. */
export function slurmJobId(handle: RunnerHandle): string {
  const id = handle.data.jobId;
  if (handle.kind !== 'slurm' || typeof id !== 'string' || !/^\d+$/.test(id)) {
    throw new CrystalMathError('E_RUNNER_HANDLE', '[runner-slurm] not a SLURM handle', {
      details: { kind: handle.kind },
    });
  }
  return id;
}

/**
 * Runs jobs on a SLURM cluster through `sbatch`, `squeue`, `sacct` and `scancel`.
 *
 * @example
 * const runner = new SlurmRunner({ transport: new LocalTransport(), root: '/scratch/me/cm', defaults: { partition: 'debug' } });
 * const h = await runner.submit({ key: 'job-1-a1', spec: { name: 'scf', argv: ['pw.x', '-in', 'scf.in'], resources: { tasks: 4, walltimeSeconds: 3600 } } });
 * const [status] = await runner.poll([h]); // { state: 'queued', nativeState: 'PENDING', reason: 'Priority' }
 */
export class SlurmRunner implements Runner {
  readonly kind = 'slurm';
  readonly capabilities: RunnerCapabilities;
  readonly #transport: Transport;
  readonly #root: string;
  readonly #defaults: SlurmDefaults | undefined;
  readonly #skip: readonly string[];
  readonly #minInterval: number;
  readonly #commands: SlurmCommands;
  readonly #timeout: number;
  readonly #staleClaim: number;
  #accounting: AccountingMode;
  /** In `auto` mode, when neither sacct nor jobcomp answered: skip both until then. */
  #accountingRetryAt = 0;
  readonly #statuses: BatchStatusCache;

  constructor(options: SlurmRunnerOptions) {
    if (
      typeof options.root !== 'string' ||
      options.root.trim() === '' ||
      /[\0\r\n]/.test(options.root)
    ) {
      throw new ValidationError('root', 'must be a non-empty path without NUL or line breaks');
    }
    validateSlurmTargetOptions(options);
    const nonNegative = (v: number | undefined, field: string, dflt: number): number => {
      if (v === undefined) return dflt;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
        throw new ValidationError(field, 'must be a non-negative number');
      }
      return v;
    };
    this.#transport = options.transport;
    this.#root = posix.normalize(options.root);
    this.#defaults = options.defaults;
    this.#skip = options.skipDirectives ?? [];
    this.#minInterval = nonNegative(options.pollMinIntervalMs, 'pollMinIntervalMs', 5_000);
    this.#statuses = new BatchStatusCache({
      minIntervalMs: this.#minInterval,
      lostGraceMs: nonNegative(options.lostGraceMs, 'lostGraceMs', 120_000),
      label: 'runner-slurm',
      sources: 'squeue and accounting',
    });
    this.#timeout = nonNegative(options.commandTimeoutMs, 'commandTimeoutMs', 60_000);
    this.#staleClaim = nonNegative(options.staleClaimSeconds, 'staleClaimSeconds', 300);
    const commands = { ...DEFAULT_COMMANDS };
    for (const [name, path] of Object.entries(options.commands ?? {})) {
      if (!(name in DEFAULT_COMMANDS))
        throw new ValidationError(`commands.${name}`, 'is not a SLURM command this runner uses');
      if (typeof path !== 'string' || path === '' || /[\0\r\n]/.test(path)) {
        throw new ValidationError(`commands.${name}`, 'must be a command name or path');
      }
      commands[name as keyof SlurmCommands] = path;
    }
    this.#commands = commands;
    const acct = options.accounting ?? 'auto';
    if (!['auto', 'sacct', 'jobcomp', 'none'].includes(acct)) {
      throw new ValidationError('accounting', 'must be auto, sacct, jobcomp or none');
    }
    this.#accounting = acct;
    this.capabilities = {
      find: true,
      collect: true,
      cleanup: true,
      tail: true,
      validate: true,
      minPollIntervalMs: this.#minInterval,
      walltimeStepSeconds: 60, // --time is in whole minutes (formatWalltime rounds up)
    };
  }

  /**
   * Refuses, without I/O, a spec `submit` would refuse: bad SLURM fields (`gres`, `dependency`,
   * extra directives, ...) after merging this runner's defaults. The queue calls it at enqueue,
   * so a bad field fails the call instead of ending as a failed job. `field` prefixes the
   * ValidationError's field (default `spec`).
   */
  validate(spec: JobSpec, field = 'spec'): void {
    checkSpecUnder(field, () => {
      renderSlurmScript({
        key: 'cm-validate',
        spec,
        ...(this.#defaults === undefined ? {} : { defaults: this.#defaults }),
        skipDirectives: this.#skip,
      });
    });
  }

  /** The job directory of `jobKey` on the cluster. */
  jobDir(jobKey: string): string {
    return posix.join(this.#root, jobKey);
  }

  #exec(
    command: readonly string[] | { readonly script: string },
    what: string,
    options: RunnerCallOptions | undefined,
    stdin?: string | Uint8Array,
  ): Promise<{ stdout: string; stderr: string; exitCode: number | null }> {
    return runnerExec(
      this.#transport,
      command,
      { timeoutMs: this.#timeout, stdin, ...(options?.signal ? { signal: options.signal } : {}) },
      (err) => {
        // The transport's own error says why (connection refused, authentication, timeout): a
        // user reading the job's reason needs it, not only that the command did not run.
        const why = err instanceof Error ? (err.message.split('\n', 1)[0] ?? '') : String(err);
        const code = isCrystalMathError(err) ? ` [${err.code}]` : '';
        return new SlurmCommandError(
          `${what} could not run on ${this.#transport.description}: ${clip(why, 300)}${code}`,
          {
            cause: err,
            details: { command: what, ...(isCrystalMathError(err) ? { causeCode: err.code } : {}) },
          },
        );
      },
    );
  }

  async submit(job: RunnerJob, options?: RunnerCallOptions): Promise<RunnerHandle> {
    checkRunnerJob(job, options?.signal);
    const spec = job.spec;
    const rendered = renderSlurmScript({
      key: job.key,
      spec,
      ...(this.#defaults === undefined ? {} : { defaults: this.#defaults }),
      skipDirectives: this.#skip,
    });
    const planned = planInputs(spec);
    const resources = spec.resources as SlurmResources | undefined;
    const array = resources?.array ?? this.#defaults?.array;
    const dir = this.jobDir(job.key);
    const subdirs = new Set<string>([INTERNAL_DIR, ...planned.subdirs]);
    if (spec.workdir !== undefined) subdirs.add(safeRelativePath(spec.workdir, 'spec.workdir'));

    await this.#claim(job.key, dir, [...subdirs], options);
    let sbatchStarted = false;
    try {
      // Every file of the submission travels in one archive on the stdin of the command that
      // runs sbatch: two round trips in all (claim, then stage + submit), whatever the inputs.
      // A folder, or a file too big to hold in memory, is streamed over the transport first
      // (one transfer per file); everything else rides in the archive.
      const { small, large } = await splitInputs(planned.inputs, options?.signal);
      if (large.length > 0) await stageInputs(this.#transport, dir, large, options?.signal);
      const files = await archiveInputs(small, options?.signal);
      if (rendered.userScript !== undefined) {
        files.push(textFile(USER_SCRIPT_FILE, rendered.userScript, 0o755, 'spec.script'));
      }
      const data: Record<string, JsonValue> = {
        jobId: '',
        jobDir: dir,
        name: spec.name,
        submittedAt: Date.now(),
      };
      if (array !== undefined) {
        data.arrayTasks = countArrayTasks(array) ?? 1;
        data.arrayFirst = firstArrayTask(array) ?? '0';
      }
      if (spec.outputs !== undefined) data.outputs = outputGlobs(spec.outputs);
      files.push(textFile(`${INTERNAL_DIR}/meta.json`, JSON.stringify(data), 0o644, 'spec'));
      files.push(textFile(SCRIPT_FILE, rendered.script, 0o755, 'spec'));
      const archive = ustarArchive(files);
      sbatchStarted = true;
      const jobId = await this.#sbatch(dir, archive, options);
      return { kind: this.kind, jobKey: job.key, data: { ...data, jobId } };
    } catch (err) {
      // Free the key only when no job can exist: sbatch never ran, or it answered no. When the
      // call itself failed (timeout, abort, broken connection) sbatch may have queued the job,
      // so the directory stays for `find` and the key stays taken.
      const refused = isCrystalMathError(err, 'E_SLURM_COMMAND') && err.details.refused === true;
      if (!sbatchStarted || refused) await this.#transport.remove(dir).catch(() => undefined);
      throw err instanceof SubmittedButUnreadable ? err.error : err;
    }
  }

  /** Creates the job directory, or reports a duplicate; reuses one a crashed submit left. */
  async #claim(
    key: string,
    dir: string,
    subdirs: string[],
    options?: RunnerCallOptions,
  ): Promise<void> {
    const squeue = shQuote(this.#commands.squeue);
    const script = [
      `cm_dir=${shQuote(dir)}`,
      `mkdir -p -- ${shQuote(this.#root)} || exit 10`,
      'cm_now=$(date +%s)',
      'cm_result=created',
      'if ! mkdir -- "$cm_dir" 2>/dev/null; then',
      '  [ -d "$cm_dir" ] || exit 11',
      `  if [ -s "$cm_dir/${JOBID_FILE}" ]; then echo duplicate; exit 0; fi`,
      `  if [ -n "$(${squeue} --noheader --me --states=all --format='%i|%j' 2>/dev/null | ${keyFilter(key)})" ]; then echo duplicate; exit 0; fi`,
      `  cm_claim=0; [ -f "$cm_dir/${INTERNAL_DIR}/claim" ] && IFS= read -r cm_claim < "$cm_dir/${INTERNAL_DIR}/claim"`,
      '  case "$cm_claim" in ""|*[!0-9]*) cm_claim=0 ;; esac',
      `  if [ $((cm_now - cm_claim)) -lt ${Math.ceil(this.#staleClaim)} ]; then echo busy; exit 0; fi`,
      '  rm -rf -- "$cm_dir" && mkdir -- "$cm_dir" || exit 12',
      '  cm_result=reclaimed',
      'fi',
      `cd -- "$cm_dir" && mkdir -p -- ${shJoin(subdirs, 'spec.inputs')} || exit 13`,
      `printf '%s\\n' "$cm_now" > ${INTERNAL_DIR}/claim || exit 14`,
      'echo "$cm_result"',
    ].join('\n');
    const r = await this.#exec({ script }, 'mkdir', options);
    const answer = r.stdout.trim();
    if (r.exitCode !== 0 || !['created', 'reclaimed', 'duplicate', 'busy'].includes(answer)) {
      throw new SlurmCommandError(`could not create the job directory ${dir}: ${clip(r.stderr)}`, {
        details: { jobKey: key, exitCode: r.exitCode },
      });
    }
    if (answer === 'duplicate' || answer === 'busy') {
      throw new CrystalMathError(
        'E_RUNNER_SUBMIT',
        answer === 'duplicate'
          ? `[runner-slurm] a job was already submitted under key ${key}`
          : `[runner-slurm] a submission under key ${key} is in progress`,
        { details: { jobKey: key, reason: answer } },
      );
    }
  }

  /** Unpacks the submission's archive (stdin) in its directory, then runs sbatch: one command. */
  async #sbatch(dir: string, archive: Uint8Array, options?: RunnerCallOptions): Promise<string> {
    const script = [
      `cd -- ${shQuote(dir)} || exit 10`,
      // -o: files owned by whoever unpacks (root would otherwise take the archive's uid 0);
      // -p: modes exactly as archived, whatever the umask.
      'tar -x -o -p -f - || exit 10',
      `echo ${STAGED}`,
      `${shQuote(this.#commands.sbatch)} --parsable ${SCRIPT_FILE} > ${JOBID_FILE}.tmp || { cm_rc=$?; rm -f ${JOBID_FILE}.tmp; exit "$cm_rc"; }`,
      `mv -f ${JOBID_FILE}.tmp ${JOBID_FILE} && cat ${JOBID_FILE}`,
    ].join('\n');
    const r = await this.#exec({ script }, 'sbatch', options, archive);
    if (!r.stdout.startsWith(`${STAGED}\n`)) {
      // sbatch never ran: the directory goes, the key is free again.
      throw new SlurmCommandError(
        `could not stage the job's files in ${dir} (exit ${r.exitCode}): ${clip(r.stderr)}`,
        { details: { command: 'tar', exitCode: r.exitCode, refused: true } },
      );
    }
    const stdout = r.stdout.slice(STAGED.length + 1);
    if (r.exitCode !== 0) {
      throw new SlurmCommandError(`sbatch failed (exit ${r.exitCode}): ${clip(r.stderr)}`, {
        details: { command: 'sbatch', exitCode: r.exitCode, refused: true },
      });
    }
    const jobId = parseSbatchParsable(stdout);
    if (jobId === null) {
      // The job may well be queued: keep its directory so `find` can recover it.
      throw new SubmittedButUnreadable(
        new SlurmParseError(`unexpected sbatch output: ${clip(stdout, 200)}`),
      );
    }
    return jobId;
  }

  #parseHandle(
    handle: RunnerHandle,
    field = 'handle',
  ): TrackedJob & { jobDir: string; data: SlurmHandleData } {
    return parseBatchHandle<SlurmHandleData>(handle, {
      kind: this.kind,
      label: 'runner-slurm',
      jobDir: (key) => this.jobDir(key),
      root: this.#root,
      field,
    });
  }

  async poll(
    handles: readonly RunnerHandle[],
    options?: RunnerCallOptions,
  ): Promise<RunnerStatus[]> {
    throwIfAborted(options?.signal, 'poll');
    if (handles.length === 0) return [];
    const jobs = handles.map((h, i) => this.#parseHandle(h, `handles[${i}]`));
    return this.#statuses.poll(
      jobs,
      async (unique) => {
        const mode: AccountingMode =
          this.#accounting === 'auto' && Date.now() < this.#accountingRetryAt
            ? 'none'
            : this.#accounting;
        const script = buildPollScript({
          jobs: unique,
          commands: this.#commands,
          accounting: mode,
        });
        const r = await this.#exec(['/bin/sh', '-s'], 'squeue', options, script);
        const out = parsePollOutput(r.stdout);
        if (out.squeueExit !== 0) {
          throw new SlurmCommandError(`squeue failed (exit ${out.squeueExit}): ${clip(r.stderr)}`, {
            details: { command: 'squeue', exitCode: out.squeueExit },
          });
        }
        if (r.exitCode !== 0 || !out.complete) {
          throw new SlurmCommandError(
            `the poll script failed (exit ${r.exitCode}): ${clip(r.stderr)}`,
            {
              details: { command: 'poll', exitCode: r.exitCode },
            },
          );
        }
        if (mode === 'auto') {
          if (out.accounting === 'sacct' || out.accounting === 'jobcomp')
            this.#accounting = out.accounting;
          // Neither works here (no slurmdbd, jobcomp unreadable): exit files only for a while,
          // rather than two failing commands in every poll.
          else if (out.accounting === 'none')
            this.#accountingRetryAt = Date.now() + ACCOUNTING_RETRY_MS;
        }
        const facts = {
          squeue: parseSqueue(out.squeue),
          acct: parseSacct(out.acct),
          exits: parseExitFiles(out.exitFiles),
        };
        return (j) => resolveStatus(j, facts);
      },
      options?.signal,
    );
  }

  async cancel(handle: RunnerHandle, options?: RunnerCallOptions): Promise<void> {
    throwIfAborted(options?.signal, 'cancel');
    const j = this.#parseHandle(handle);
    const r = await this.#exec([this.#commands.scancel, j.jobId], 'scancel', options);
    if (r.exitCode !== 0 && !SCANCEL_HARMLESS.test(r.stderr)) {
      throw new SlurmCommandError(
        `scancel ${j.jobId} failed (exit ${r.exitCode}): ${clip(r.stderr)}`,
        {
          details: { command: 'scancel', jobId: j.jobId, exitCode: r.exitCode },
        },
      );
    }
    const c = this.#statuses.get(j.jobId);
    if (c !== undefined && !isTerminalRunnerState(c.state)) this.#statuses.forget(j.jobId);
  }

  async find(jobKey: string, options?: RunnerCallOptions): Promise<RunnerHandle | null> {
    throwIfAborted(options?.signal, 'find');
    if (!isValidJobKey(jobKey))
      throw new ValidationError('jobKey', 'must be letters, digits and ._- (at most 64)');
    const dir = this.jobDir(jobKey);
    const c = this.#commands;
    const fields = '--format=JobID,JobName';
    const script = [
      `cm_dir=${shQuote(dir)}`,
      `[ -d "$cm_dir" ] || { echo '@@cm:nodir'; exit 0; }`,
      `echo '@@cm:meta'; cat "$cm_dir/${INTERNAL_DIR}/meta.json" 2>/dev/null; echo`,
      `echo '@@cm:jobid'; cat "$cm_dir/${JOBID_FILE}" 2>/dev/null`,
      `[ -s "$cm_dir/${JOBID_FILE}" ] && exit 0`,
      `echo '@@cm:squeue'; ${shQuote(c.squeue)} --noheader --me --states=all --format='%i|%j' 2>/dev/null | ${keyFilter(jobKey)}`,
      `echo '@@cm:acct'`,
      `{ ${shQuote(c.sacct)} --parsable2 --noheader --allocations ${fields} 2>/dev/null ||`,
      `  ${shQuote(c.sacct)} --completion --parsable2 --noheader ${fields} 2>/dev/null; } | ${keyFilter(jobKey)}`,
      'exit 0',
    ].join('\n');
    const r = await this.#exec({ script }, 'squeue', options);
    const sections = parseMarkedSections(r.stdout);
    if (sections.has('nodir')) return null;
    let jobId = (sections.get('jobid') ?? []).join('').trim();
    if (!/^\d+$/.test(jobId)) {
      jobId = '';
      for (const line of [...(sections.get('squeue') ?? []), ...(sections.get('acct') ?? [])]) {
        const [id = '', jname = ''] = line.split('|');
        const m = /^(\d+)/.exec(id.trim());
        if (m?.[1] !== undefined && jobNameHasKey(jname.trim(), jobKey)) {
          jobId = m[1];
          break;
        }
      }
    }
    if (jobId === '') return null;
    return recoveredHandle({
      kind: this.kind,
      jobKey,
      jobId,
      jobDir: dir,
      metaText: (sections.get('meta') ?? []).join('\n'),
    });
  }

  async collect(
    handle: RunnerHandle,
    dest: string,
    options?: RunnerCallOptions & { readonly globs?: readonly string[] },
  ): Promise<CollectResult> {
    throwIfAborted(options?.signal, 'collect');
    const j = this.#parseHandle(handle);
    return collectJobDir({
      transport: this.#transport,
      dir: j.jobDir,
      globs: options?.globs ?? j.data.outputs ?? [],
      dest,
      signal: options?.signal,
      label: 'runner-slurm',
      details: { jobDir: j.jobDir },
      exec: (script) => this.#exec({ script }, 'find', options),
    });
  }

  async cleanup(handle: RunnerHandle, options?: RunnerCallOptions): Promise<void> {
    throwIfAborted(options?.signal, 'cleanup');
    const j = this.#parseHandle(handle);
    await this.#transport.remove(
      j.jobDir,
      options?.signal === undefined ? {} : { signal: options.signal },
    );
    this.#statuses.forgetAbsence(j.jobId);
  }

  async tail(
    handle: RunnerHandle,
    options?: RunnerCallOptions & {
      readonly stream?: 'stdout' | 'stderr';
      readonly offset?: number;
    },
  ): Promise<TailResult> {
    throwIfAborted(options?.signal, 'tail');
    const j = this.#parseHandle(handle);
    const { offset, stream } = tailOptions(options);
    const id = j.data.arrayFirst === undefined ? j.jobId : `${j.jobId}_${j.data.arrayFirst}`;
    const file = `${j.jobDir}/slurm-${id}.${stream === 'stderr' ? 'err' : 'out'}`;
    return readTail(this.#transport, file, offset, options?.signal);
  }
}

/** Printed by the submit command between unpacking and sbatch. */
const STAGED = 'cm-staged';

function textFile(path: string, text: string, mode: number, field: string): ArchiveFile {
  return { path, data: Buffer.from(text, 'utf8'), mode, field };
}

/** A local file input larger than this is streamed rather than read into the archive. */
export const ARCHIVE_INPUT_MAX_BYTES = 4 * 1024 * 1024;

/**
 * Splits the inputs into those the archive carries (contents, small files) and those streamed
 * over the transport (folders, files over ARCHIVE_INPUT_MAX_BYTES). A path that cannot be
 * read stays with the archive, whose reading reports it with its field.
 */
async function splitInputs(
  inputs: readonly PlannedInput[],
  signal: AbortSignal | undefined,
): Promise<{ small: PlannedInput[]; large: PlannedInput[] }> {
  const small: PlannedInput[] = [];
  const large: PlannedInput[] = [];
  for (const planned of inputs) {
    const { input } = planned;
    if (!('from' in input)) {
      small.push(planned);
      continue;
    }
    throwIfAborted(signal, 'submit');
    const info = await stat(input.from).catch(() => null);
    if (info !== null && (info.isDirectory() || info.size > ARCHIVE_INPUT_MAX_BYTES)) {
      large.push(planned);
    } else small.push(planned);
  }
  return { small, large };
}

/** The inputs as archive files: bytes given in the spec, or read from local files (their mode kept). */
async function archiveInputs(
  inputs: readonly PlannedInput[],
  signal: AbortSignal | undefined,
): Promise<ArchiveFile[]> {
  const files: ArchiveFile[] = [];
  for (const [i, { input, to }] of inputs.entries()) {
    const field = `spec.inputs[${i}]`;
    if ('content' in input) {
      const data =
        typeof input.content === 'string' ? Buffer.from(input.content, 'utf8') : input.content;
      files.push({ path: to, data, mode: 0o644, field });
      continue;
    }
    if ('fromJob' in input)
      throw new ValidationError(`${field}.fromJob`, 'is resolved by the queue, never by a runner');
    try {
      const [data, info] = await Promise.all([
        readFile(input.from, signal === undefined ? {} : { signal }),
        stat(input.from),
      ]);
      files.push({ path: to, data, mode: info.mode & 0o777, field });
    } catch (err) {
      if (isCrystalMathError(err) || (err as { name?: string }).name === 'AbortError') {
        throwIfAborted(signal, 'submit');
      }
      const code = (err as { code?: string }).code;
      throw new TransportError(
        code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_TRANSPORT',
        `[runner-slurm] ${field}.from: cannot read ${input.from}: ${(err as Error).message}`,
        { cause: err, details: { path: input.from, field: `${field}.from` } },
      );
    }
  }
  return files;
}

/** sbatch answered but its job id could not be read: the job directory must be kept. */
class SubmittedButUnreadable extends Error {
  constructor(readonly error: CrystalMathError) {
    super(error.message);
  }
}
