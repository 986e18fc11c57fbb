// The Grid Engine runner: qsub to submit, one poll script (qstat -xml, qacct for finished jobs)
// per poll, qdel to cancel, over any Transport. Stateless between calls: the JSON handle and the
// job directory on the cluster hold everything, so a restarted process re-attaches to its jobs.
// It uses only @crystalmath/core's public API, as a runner written outside this repository would.

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
  tailOptions,
  throwIfAborted,
  ValidationError,
} from '@crystalmath/core';
import { parseQacct } from './parse-qacct.js';
import { parseQstatJErrors } from './parse-qstat-j.js';
import { isQstatXml, parseQstatXml } from './parse-qstat-xml.js';
import { parseQsubTerse } from './parse-qsub.js';
import {
  buildPollScript,
  parseJobFiles,
  parsePollOutput,
  type SgeCommands,
} from './poll-script.js';
import {
  CANCEL_FILE,
  INTERNAL_DIR,
  JOBID_FILE,
  renderSgeScript,
  SCRIPT_FILE,
  sgeJobName,
  USER_SCRIPT_FILE,
} from './render-sge-script.js';
import { resolveStatus, type TrackedJob } from './resolve-status.js';
import { clip, SgeCommandError, SgeParseError } from './sge-errors.js';
import { type SgeDefaults, validateSgeDefaults } from './sge-resources.js';

/** Options of `new SgeRunner(...)`. */
export interface SgeRunnerOptions {
  /** Where the Grid Engine commands run: `LocalTransport` on a submit host, or `SshTransport`. */
  readonly transport: Transport;
  /**
   * Directory on the cluster under which each job gets `<root>/<jobKey>`. It must be on a file
   * system the execution hosts see (the job writes its exit file and logs there).
   */
  readonly root: string;
  /** Resources used when a job does not set them (queue, parallel environment, project, ...). */
  readonly defaults?: SgeDefaults;
  /**
   * Smallest interval between two scheduler calls of this runner, in ms. Polls within it return
   * the statuses of the last call. Default 5 000. Use one runner per cluster.
   */
  readonly pollMinIntervalMs?: number;
  /**
   * How long a job may be absent from qstat and qacct, with no exit file, before `lost`. It also
   * covers the delay before qacct has a finished job's record. Default 120 000 ms.
   */
  readonly lostGraceMs?: number;
  /** Paths of the Grid Engine commands, when they are not on the PATH. */
  readonly commands?: Partial<SgeCommands>;
  /**
   * qdel a job found in error state (`Eqw`) once its reason is read, so it does not wait in the
   * list for an administrator; it is reported `failed` either way. Default true.
   */
  readonly deleteErrorJobs?: boolean;
  /** Time limit of each command sent to the cluster, in ms. Default 60 000. */
  readonly commandTimeoutMs?: number;
  /**
   * A job directory left by a submit that crashed before `qsub` may be reused after this many
   * seconds. Default 300.
   */
  readonly staleClaimSeconds?: number;
}

/** What a Grid Engine handle's `data` holds. JSON only. */
export interface SgeHandleData {
  readonly jobId: string;
  readonly jobDir: string;
  readonly name: string;
  /** Number of array tasks, for array jobs. */
  readonly arrayTasks?: number;
  /** First array task id, for array jobs (whose logs are `sge-<id>.<task>.out`). */
  readonly arrayFirst?: number;
  /** The spec's output globs, for `collect`. */
  readonly outputs?: readonly string[];
  readonly submittedAt: number;
}

const DEFAULT_COMMANDS: SgeCommands = {
  qsub: 'qsub',
  qstat: 'qstat',
  qacct: 'qacct',
  qdel: 'qdel',
};
/** qdel answers for a job that is already gone or going: nothing left to cancel. */
const QDEL_HARMLESS = /does not exist|has already been deleted|registered the job .* for deletion/i;

/** The Grid Engine job id of a handle made by an SgeRunner, e.g. for `-hold_jid`. */
export function sgeJobId(handle: RunnerHandle): string {
  const id = handle.data.jobId;
  if (handle.kind !== 'sge' || typeof id !== 'string' || !/^\d+$/.test(id)) {
    throw new CrystalMathError('E_RUNNER_HANDLE', '[runner-sge] not a Grid Engine handle', {
      details: { kind: handle.kind },
    });
  }
  return id;
}

/**
 * Runs jobs on a Grid Engine cluster through `qsub`, `qstat`, `qacct` and `qdel`.
 *
 * @example
 * const runner = new SgeRunner({ transport: new LocalTransport(), root: '/scratch/me/cm', defaults: { parallelEnvironment: 'smp' } });
 * const h = await runner.submit({ key: 'job-1-a1', spec: { name: 'scf', argv: ['pw.x', '-in', 'scf.in'], resources: { tasks: 4, walltimeSeconds: 3600 } } });
 * const [status] = await runner.poll([h]); // { state: 'queued', nativeState: 'qw' }
 */
export class SgeRunner implements Runner {
  readonly kind = 'sge';
  readonly capabilities: RunnerCapabilities;
  readonly #transport: Transport;
  readonly #root: string;
  readonly #defaults: SgeDefaults | undefined;
  readonly #minInterval: number;
  readonly #commands: SgeCommands;
  readonly #timeout: number;
  readonly #staleClaim: number;
  readonly #deleteErrorJobs: boolean;
  readonly #statuses: BatchStatusCache;

  constructor(options: SgeRunnerOptions) {
    if (
      typeof options.root !== 'string' ||
      options.root.trim() === '' ||
      /[\0\r\n]/.test(options.root)
    ) {
      throw new ValidationError('root', 'must be a non-empty path without NUL or line breaks');
    }
    validateSgeDefaults(options.defaults);
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
    this.#minInterval = nonNegative(options.pollMinIntervalMs, 'pollMinIntervalMs', 5_000);
    this.#statuses = new BatchStatusCache({
      minIntervalMs: this.#minInterval,
      lostGraceMs: nonNegative(options.lostGraceMs, 'lostGraceMs', 120_000),
      label: 'runner-sge',
      sources: 'qstat and qacct',
    });
    this.#timeout = nonNegative(options.commandTimeoutMs, 'commandTimeoutMs', 60_000);
    this.#staleClaim = nonNegative(options.staleClaimSeconds, 'staleClaimSeconds', 300);
    if (options.deleteErrorJobs !== undefined && typeof options.deleteErrorJobs !== 'boolean') {
      throw new ValidationError('deleteErrorJobs', 'must be a boolean');
    }
    this.#deleteErrorJobs = options.deleteErrorJobs ?? true;
    const commands = { ...DEFAULT_COMMANDS };
    for (const [name, path] of Object.entries(options.commands ?? {})) {
      if (!(name in DEFAULT_COMMANDS)) {
        throw new ValidationError(
          `commands.${name}`,
          'is not a Grid Engine command this runner uses',
        );
      }
      if (typeof path !== 'string' || path === '' || /[\0\r\n]/.test(path)) {
        throw new ValidationError(`commands.${name}`, 'must be a command name or path');
      }
      commands[name as keyof SgeCommands] = path;
    }
    this.#commands = commands;
    this.capabilities = {
      find: true,
      collect: true,
      cleanup: true,
      tail: true,
      validate: true,
      minPollIntervalMs: this.#minInterval,
    };
  }

  /**
   * Refuses, without I/O, a spec `submit` would refuse: Grid Engine fields (`parallelEnvironment`,
   * `project`, the core fields it cannot express, extra options) after merging this runner's
   * defaults. The queue calls it at enqueue, so a bad field fails the call instead of ending as a
   * failed job. `field` prefixes the ValidationError's field (default `spec`).
   */
  validate(spec: JobSpec, field = 'spec'): void {
    checkSpecUnder(field, () => {
      renderSgeScript({
        key: 'cm-validate',
        spec,
        ...(this.#defaults === undefined ? {} : { defaults: this.#defaults }),
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
    stdin?: string,
  ): Promise<{ stdout: string; stderr: string; exitCode: number | null }> {
    return runnerExec(
      this.#transport,
      command,
      { timeoutMs: this.#timeout, stdin, ...(options?.signal ? { signal: options.signal } : {}) },
      (err) =>
        new SgeCommandError(`${what} could not run on ${this.#transport.description}`, {
          cause: err,
          details: { command: what },
        }),
    );
  }

  async submit(job: RunnerJob, options?: RunnerCallOptions): Promise<RunnerHandle> {
    checkRunnerJob(job, options?.signal);
    const spec = job.spec;
    const rendered = renderSgeScript({
      key: job.key,
      spec,
      ...(this.#defaults === undefined ? {} : { defaults: this.#defaults }),
    });
    const planned = planInputs(spec);
    const dir = this.jobDir(job.key);
    const subdirs = new Set<string>([INTERNAL_DIR, ...planned.subdirs]);
    if (spec.workdir !== undefined) subdirs.add(safeRelativePath(spec.workdir, 'spec.workdir'));

    await this.#claim(job.key, dir, [...subdirs], options);
    let qsubStarted = false;
    try {
      const signal = options?.signal === undefined ? {} : { signal: options.signal };
      await stageInputs(this.#transport, dir, planned.inputs, options?.signal);
      if (rendered.userScript !== undefined) {
        await this.#transport.writeFile(`${dir}/${USER_SCRIPT_FILE}`, rendered.userScript, {
          mode: 0o755,
          ...signal,
        });
      }
      const data: Record<string, JsonValue> = {
        jobId: '',
        jobDir: dir,
        name: spec.name,
        submittedAt: Date.now(),
      };
      if (rendered.arrayTasks !== undefined) data.arrayTasks = rendered.arrayTasks;
      if (rendered.arrayFirst !== undefined) data.arrayFirst = rendered.arrayFirst;
      if (spec.outputs !== undefined) data.outputs = outputGlobs(spec.outputs);
      await this.#transport.writeFile(
        `${dir}/${INTERNAL_DIR}/meta.json`,
        JSON.stringify(data),
        signal,
      );
      await this.#transport.writeFile(`${dir}/${SCRIPT_FILE}`, rendered.script, {
        mode: 0o644,
        ...signal,
      });
      qsubStarted = true;
      const jobId = await this.#qsub(dir, options);
      return { kind: this.kind, jobKey: job.key, data: { ...data, jobId } };
    } catch (err) {
      // Free the key only when no job can exist: qsub never ran, or it answered no. When the
      // call itself failed (timeout, abort, broken connection) qsub may have queued the job,
      // so the directory stays for `find` and the key stays taken.
      const refused = isCrystalMathError(err, 'E_RUNNER_COMMAND') && err.details.refused === true;
      if (!qsubStarted || refused) await this.#transport.remove(dir).catch(() => undefined);
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
    const qstat = shQuote(this.#commands.qstat);
    const script = [
      `cm_dir=${shQuote(dir)}`,
      `mkdir -p -- ${shQuote(this.#root)} || exit 10`,
      'cm_now=$(date +%s)',
      'cm_result=created',
      'if ! mkdir -- "$cm_dir" 2>/dev/null; then',
      '  [ -d "$cm_dir" ] || exit 11',
      `  if [ -s "$cm_dir/${JOBID_FILE}" ]; then echo duplicate; exit 0; fi`,
      `  if ${qstat} -j ${shQuote(sgeJobName(key))} >/dev/null 2>&1; then echo duplicate; exit 0; fi`,
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
      throw new SgeCommandError(`could not create the job directory ${dir}: ${clip(r.stderr)}`, {
        details: { command: 'mkdir', jobKey: key, exitCode: r.exitCode },
      });
    }
    if (answer === 'duplicate' || answer === 'busy') {
      throw new CrystalMathError(
        'E_RUNNER_SUBMIT',
        answer === 'duplicate'
          ? `[runner-sge] a job was already submitted under key ${key}`
          : `[runner-sge] a submission under key ${key} is in progress`,
        { details: { jobKey: key, reason: answer } },
      );
    }
  }

  async #qsub(dir: string, options?: RunnerCallOptions): Promise<string> {
    const script = [
      `cd -- ${shQuote(dir)} || exit 10`,
      `${shQuote(this.#commands.qsub)} -terse ${SCRIPT_FILE} > ${JOBID_FILE}.tmp || { cm_rc=$?; rm -f ${JOBID_FILE}.tmp; exit "$cm_rc"; }`,
      `mv -f ${JOBID_FILE}.tmp ${JOBID_FILE} && cat ${JOBID_FILE}`,
    ].join('\n');
    const r = await this.#exec({ script }, 'qsub', options);
    if (r.exitCode !== 0) {
      throw new SgeCommandError(`qsub failed (exit ${r.exitCode}): ${clip(r.stderr)}`, {
        details: { command: 'qsub', exitCode: r.exitCode, refused: true },
      });
    }
    const jobId = parseQsubTerse(r.stdout);
    if (jobId === null) {
      // The job may well be queued: keep its directory so `find` can recover it.
      throw new SubmittedButUnreadable(
        new SgeParseError(`unexpected qsub -terse output: ${clip(r.stdout, 200)}`),
      );
    }
    return jobId;
  }

  #parseHandle(
    handle: RunnerHandle,
    field = 'handle',
  ): TrackedJob & { jobDir: string; data: SgeHandleData } {
    return parseBatchHandle<SgeHandleData>(handle, {
      kind: this.kind,
      label: 'runner-sge',
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
        const script = buildPollScript({
          jobs: unique,
          commands: this.#commands,
          deleteErrorJobs: this.#deleteErrorJobs,
        });
        const r = await this.#exec(['/bin/sh', '-s'], 'qstat', options, script);
        const out = parsePollOutput(r.stdout);
        if (out.qstatExit !== 0) {
          throw new SgeCommandError(`qstat failed (exit ${out.qstatExit}): ${clip(r.stderr)}`, {
            details: { command: 'qstat', exitCode: out.qstatExit },
          });
        }
        if (!isQstatXml(out.qstat)) {
          throw new SgeParseError(
            `qstat -xml printed no <job_info> document: ${clip(out.qstat, 200)}`,
          );
        }
        if (r.exitCode !== 0 || !out.complete) {
          throw new SgeCommandError(
            `the poll script failed (exit ${r.exitCode}): ${clip(r.stderr)}`,
            {
              details: { command: 'poll', exitCode: r.exitCode },
            },
          );
        }
        const files = parseJobFiles(out.files);
        const facts = {
          qstat: parseQstatXml(out.qstat),
          qacct: parseQacct(out.qacct),
          exits: files.exits,
          cancelled: files.cancelled,
          errors: parseQstatJErrors(out.errors),
        };
        return (j) => resolveStatus(j, facts);
      },
      options?.signal,
    );
  }

  async cancel(handle: RunnerHandle, options?: RunnerCallOptions): Promise<void> {
    throwIfAborted(options?.signal, 'cancel');
    const j = this.#parseHandle(handle);
    const c = this.#statuses.get(j.jobId);
    if (c !== undefined && isTerminalRunnerState(c.state)) return;
    // The marker first: once qdel has killed the job, nothing else tells a cancelled job from
    // one killed by a signal (qacct says `failed 100` for both).
    const marker = `${shQuote(j.jobDir)}/${CANCEL_FILE}`;
    const script = [
      `printf '%s\\n' ${j.jobId} > ${marker}.tmp 2>/dev/null && mv -f ${marker}.tmp ${marker}`,
      `cm_msg=$(${shQuote(this.#commands.qdel)} ${j.jobId} 2>&1)`,
      'cm_rc=$?',
      `printf '%s\\n' "$cm_msg"`,
      'exit "$cm_rc"',
    ].join('\n');
    const r = await this.#exec({ script }, 'qdel', options);
    if (r.exitCode !== 0 && !QDEL_HARMLESS.test(r.stdout)) {
      await this.#exec(['rm', '-f', '--', `${j.jobDir}/${CANCEL_FILE}`], 'rm', options).catch(
        () => undefined,
      );
      throw new SgeCommandError(
        `qdel ${j.jobId} failed (exit ${r.exitCode}): ${clip(r.stdout || r.stderr)}`,
        { details: { command: 'qdel', jobId: j.jobId, exitCode: r.exitCode } },
      );
    }
    if (c !== undefined) this.#statuses.forget(j.jobId);
  }

  async find(jobKey: string, options?: RunnerCallOptions): Promise<RunnerHandle | null> {
    throwIfAborted(options?.signal, 'find');
    if (!isValidJobKey(jobKey)) {
      throw new ValidationError('jobKey', 'must be letters, digits and ._- (at most 64)');
    }
    const dir = this.jobDir(jobKey);
    const name = shQuote(sgeJobName(jobKey));
    const c = this.#commands;
    const script = [
      `cm_dir=${shQuote(dir)}`,
      `[ -d "$cm_dir" ] || { echo '@@cm:nodir'; exit 0; }`,
      `echo '@@cm:meta'; cat "$cm_dir/${INTERNAL_DIR}/meta.json" 2>/dev/null; echo`,
      `echo '@@cm:jobid'; cat "$cm_dir/${JOBID_FILE}" 2>/dev/null`,
      `[ -s "$cm_dir/${JOBID_FILE}" ] && exit 0`,
      // qsub ran but its answer was lost: the job name is the key.
      `echo '@@cm:qstat'; ${shQuote(c.qstat)} -j ${name} 2>/dev/null | grep '^job_number:'`,
      `echo '@@cm:qacct'; ${shQuote(c.qacct)} -j ${name} 2>/dev/null | grep '^jobnumber'`,
      'exit 0',
    ].join('\n');
    const r = await this.#exec({ script }, 'qstat', options);
    const sections = parseMarkedSections(r.stdout);
    if (sections.has('nodir')) return null;
    let jobId = parseQsubTerse((sections.get('jobid') ?? []).join('\n')) ?? '';
    if (jobId === '') {
      for (const line of [...(sections.get('qstat') ?? []), ...(sections.get('qacct') ?? [])]) {
        const m = /^(?:job_number:|jobnumber)\s+(\d+)\s*$/.exec(line);
        if (m?.[1] !== undefined) {
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
      label: 'runner-sge',
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
    const id = j.data.arrayFirst === undefined ? j.jobId : `${j.jobId}.${j.data.arrayFirst}`;
    const file = `${j.jobDir}/sge-${id}.${stream === 'stderr' ? 'err' : 'out'}`;
    return readTail(this.#transport, file, offset, options?.signal);
  }
}

/** qsub answered but its job id could not be read: the job directory must be kept. */
class SubmittedButUnreadable extends Error {
  constructor(readonly error: CrystalMathError) {
    super(error.message);
  }
}
