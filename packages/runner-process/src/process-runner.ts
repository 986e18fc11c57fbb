// The process Runner: each job is a detached process tree on the transport's machine, watched by
// a small sh wrapper that writes its exit record itself. The runner keeps no state between
// calls: the handle and the files in `<root>/<jobKey>/.cm/` are all a new process needs.

import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import {
  type CollectResult,
  CrystalMathError,
  checkRunnerJob,
  collectJobDir,
  type ErrorCode,
  isValidJobKey,
  type JobSpec,
  mergeResources,
  outputGlobs,
  parseMarkedSections,
  planInputs,
  type Resources,
  type Runner,
  type RunnerCallOptions,
  type RunnerCapabilities,
  type RunnerHandle,
  type RunnerJob,
  type RunnerStatus,
  readTail,
  resolveInside,
  runnerExec,
  shJoin,
  shQuote,
  stageInputs,
  type TailResult,
  type Transport,
  tailOptions,
  throwIfAborted,
  ValidationError,
  validateJobSpec,
  validateResources,
} from '@crystalmath/core';
import { POLL_SCRIPT, type PollTarget, parsePollOutput, pollInput } from './poll-script.js';
import {
  handleData,
  type ParsedHandle,
  type ProcessHandleData,
  parseProcessHandle,
} from './process-handle.js';
import { renderWrapper } from './render-wrapper.js';
import { DETACH_CMD, INTERNAL_DIR, STAT_FN } from './shell-snippets.js';

/** Options of `new ProcessRunner(...)`. */
export interface ProcessRunnerOptions {
  /** Where jobs run: `LocalTransport` for this machine, `SshTransport` for an SSH host. */
  readonly transport: Transport;
  /**
   * Directory under which each job gets `<root>/<jobKey>/`. Relative paths are relative to the
   * transport's home (its `home` option locally, the login directory over SSH). The runner owns
   * it: a job directory left half-made by a crashed submission is replaced.
   */
  readonly root: string;
  /** Grace between SIGTERM and SIGKILL on cancel and on walltime, in ms. Default 10 000. */
  readonly killGraceMs?: number;
  /** Absolute path of the POSIX shell that runs the wrapper and script jobs. Default `/bin/sh`. */
  readonly shell?: string;
  /** Time limit of each command sent to the target, in ms. Default 60 000. */
  readonly commandTimeoutMs?: number;
  /** How long `submit` waits for the wrapper to record its PIDs, in ms. Default 10 000. */
  readonly launchTimeoutMs?: number;
  /** A job directory left by a submit that died before starting the job is reused after this many seconds. Default 300. */
  readonly staleClaimSeconds?: number;
  /** Advertised in `capabilities.minPollIntervalMs`. Default 0 (polling costs one small command). */
  readonly minPollIntervalMs?: number;
  /**
   * Resources a job gets when it does not set them (`walltimeSeconds`, `cpusPerTask`, ...),
   * merged under the job's by core's `mergeResources`, as the SLURM and Grid Engine runners
   * merge theirs. Checked at construction (`defaults.<field>`).
   */
  readonly defaults?: Resources;
}

const X = INTERNAL_DIR;

function clip(text: string, max = 400): string {
  const t = text.trim();
  return t.length > max ? `${t.slice(0, max)}...` : t;
}

interface Identity {
  wrapperPid?: number;
  wrapperStartTime?: number;
  bootId?: string;
  startedAt?: number;
  pid?: number;
  pgid?: number;
  startTime?: number;
}

/** Reads `.cm/wrapper` (`pid pgid start boot epoch`) and `.cm/job` (`pid pgid start`) lines. */
function parseIdentity(wrapper: string | undefined, job: string | undefined): Identity {
  const id: Identity = {};
  const int = (s: string | undefined): number | undefined =>
    s !== undefined && /^\d{1,15}$/.test(s) ? Number(s) : undefined;
  const w = (wrapper ?? '').trim().split(/\s+/);
  const wp = int(w[0]);
  const ws = int(w[2]);
  const boot = w[3];
  if (wp !== undefined && ws !== undefined && boot !== undefined && /^[0-9a-fA-F-]+$/.test(boot)) {
    id.wrapperPid = wp;
    id.wrapperStartTime = ws;
    id.bootId = boot;
    const epoch = int(w[4]);
    if (epoch !== undefined) id.startedAt = epoch * 1000;
  }
  const j = (job ?? '').trim().split(/\s+/);
  const jp = int(j[0]);
  const jg = int(j[1]);
  const js = int(j[2]);
  if (jp !== undefined && jg !== undefined && js !== undefined && id.bootId !== undefined) {
    id.pid = jp;
    id.pgid = jg;
    id.startTime = js;
  }
  return id;
}

/**
 * Runs jobs as detached process trees on any Transport, each in its own session, with status
 * that survives the runner: the wrapper records its identity and the exit status in the job
 * directory, and `poll` checks them for every job in one command.
 *
 * @example
 * const runner = new ProcessRunner({ transport: new LocalTransport(), root: 'cm-jobs' });
 * const h = await runner.submit({ key: 'job-1-a1', spec: { name: 'scf', argv: ['pw.x', '-in', 'scf.in'], resources: { walltimeSeconds: 3600, cpusPerTask: 4 } } });
 * const [status] = await runner.poll([h]); // { state: 'running', ... } later { state: 'succeeded', exitCode: 0 }
 */
export class ProcessRunner implements Runner {
  readonly kind = 'process';
  readonly capabilities: RunnerCapabilities;
  readonly #transport: Transport;
  readonly #root: string;
  readonly #graceMs: number;
  readonly #shell: string;
  readonly #timeoutMs: number;
  readonly #launchMs: number;
  readonly #staleClaim: number;
  readonly #defaults: Resources | undefined;

  constructor(options: ProcessRunnerOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new ValidationError('options', 'must be an object');
    }
    const t = options.transport as Partial<Transport> | undefined;
    if (typeof t?.exec !== 'function' || typeof t.writeFile !== 'function') {
      throw new ValidationError('transport', 'must be a Transport');
    }
    const root = options.root;
    if (typeof root !== 'string' || root.trim() === '' || /[\0\r\n]/.test(root)) {
      throw new ValidationError('root', 'must be a non-empty path without NUL or line breaks');
    }
    const normal = posix.normalize(root);
    if (normal === '/' || normal === '..' || normal.startsWith('../')) {
      throw new ValidationError('root', 'must not be / or outside the home directory');
    }
    const shell = options.shell ?? '/bin/sh';
    if (typeof shell !== 'string' || !/^\/[A-Za-z0-9_./+-]+$/.test(shell)) {
      throw new ValidationError('shell', 'must be an absolute path to a POSIX shell');
    }
    const num = (v: number | undefined, field: string, dflt: number): number => {
      if (v === undefined) return dflt;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
        throw new ValidationError(field, 'must be a non-negative number');
      }
      return v;
    };
    this.#transport = options.transport;
    this.#root = normal.length > 1 ? normal.replace(/\/$/, '') : normal;
    this.#shell = shell;
    this.#graceMs = num(options.killGraceMs, 'killGraceMs', 10_000);
    this.#timeoutMs = num(options.commandTimeoutMs, 'commandTimeoutMs', 60_000);
    this.#launchMs = num(options.launchTimeoutMs, 'launchTimeoutMs', 10_000);
    this.#staleClaim = num(options.staleClaimSeconds, 'staleClaimSeconds', 300);
    if (options.defaults !== undefined) validateResources(options.defaults, 'defaults');
    this.#defaults = options.defaults;
    this.capabilities = {
      find: true,
      collect: true,
      cleanup: true,
      tail: true,
      minPollIntervalMs: num(options.minPollIntervalMs, 'minPollIntervalMs', 0),
      walltimeStepSeconds: 1, // the wrapper's watchdog counts seconds
    };
  }

  /** The root as given (normalised), relative to the transport's home unless absolute. */
  get root(): string {
    return this.#root;
  }

  /** The job directory of `jobKey` on the target: `<root>/<jobKey>`. */
  jobDir(jobKey: string): string {
    if (!isValidJobKey(jobKey)) {
      throw new ValidationError('jobKey', 'must be letters, digits and ._- (at most 64)');
    }
    return this.#root === '.' ? jobKey : resolveInside(this.#root, jobKey, 'jobKey');
  }

  #exec(
    script: string,
    code: ErrorCode,
    what: string,
    options: RunnerCallOptions | undefined,
    stdin?: string,
  ): Promise<{ stdout: string; stderr: string; exitCode: number | null }> {
    return runnerExec(
      this.#transport,
      { script },
      { timeoutMs: this.#timeoutMs, stdin, ...(options?.signal ? { signal: options.signal } : {}) },
      (err) =>
        new CrystalMathError(
          code,
          `[runner-process] ${what} failed on ${this.#transport.description}: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err, details: { operation: what } },
        ),
    );
  }

  #parse(handle: RunnerHandle, field = 'handle'): ParsedHandle {
    return parseProcessHandle(handle, this.kind, (k) => this.jobDir(k), field);
  }

  async submit(job: RunnerJob, options?: RunnerCallOptions): Promise<RunnerHandle> {
    checkRunnerJob(job, options?.signal);
    validateJobSpec(job.spec);
    const spec: JobSpec =
      this.#defaults === undefined
        ? job.spec
        : { ...job.spec, resources: mergeResources(this.#defaults, job.spec.resources) };
    const rendered = renderWrapper({
      key: job.key,
      spec,
      killGraceMs: this.#graceMs,
      shell: this.#shell,
    });
    const { inputs, subdirs } = planInputs(spec);
    const dir = this.jobDir(job.key);
    const nonce = randomBytes(8).toString('hex');
    await this.#claim(job.key, dir, subdirs, nonce, options);
    const signal = options?.signal === undefined ? {} : { signal: options.signal };
    const submittedAt = Date.now();
    let launched = false;
    try {
      await stageInputs(this.#transport, dir, inputs, options?.signal);
      if (rendered.userScript !== undefined) {
        await this.#transport.writeFile(`${dir}/${X}/script.sh`, rendered.userScript, {
          mode: 0o755,
          ...signal,
        });
      }
      const meta: ProcessHandleData = {
        jobDir: dir,
        name: spec.name,
        submittedAt,
        ...(spec.outputs === undefined ? {} : { outputs: outputGlobs(spec.outputs) }),
      };
      await this.#transport.writeFile(
        `${dir}/${X}/meta.json`,
        JSON.stringify(handleData(meta)),
        signal,
      );
      await this.#transport.writeFile(`${dir}/${X}/wrapper.sh`, rendered.wrapper, {
        mode: 0o755,
        ...signal,
      });
      throwIfAborted(options?.signal, 'submit');
      launched = true;
      const id = await this.#launch(job.key, dir, nonce, options);
      return { kind: this.kind, jobKey: job.key, data: handleData({ ...meta, ...id }) };
    } catch (err) {
      // Before the launch nothing runs: free the key. Once the launch command was sent the job
      // may be running, so its directory stays for `find`.
      if (!launched) {
        await this.#exec(
          `cm_d=${shQuote(dir)}; cm_n=; read -r cm_t cm_n < "$cm_d/${X}/claim" 2>/dev/null; [ "$cm_n" = ${shQuote(nonce)} ] && [ ! -e "$cm_d/${X}/launched" ] && rm -rf -- "$cm_d"; exit 0`,
          'E_RUNNER_SUBMIT',
          'release',
          undefined,
        ).catch(() => undefined);
      }
      throw err;
    }
  }

  /** Creates the job directory, or refuses a duplicate key; replaces a stale half-made one. */
  async #claim(
    key: string,
    dir: string,
    subdirs: readonly string[],
    nonce: string,
    options?: RunnerCallOptions,
  ): Promise<void> {
    const script = [
      `cm_root=${shQuote(this.#root)}`,
      `cm_d=${shQuote(dir)}`,
      'mkdir -p -- "$cm_root" || exit 10',
      'cm_now=$(date +%s)',
      'if ! mkdir -- "$cm_d" 2>/dev/null; then',
      '  [ -d "$cm_d" ] || exit 11',
      `  [ -e "$cm_d/${X}/launched" ] && { echo duplicate; exit 0; }`,
      `  cm_c=0; [ -f "$cm_d/${X}/claim" ] && read -r cm_c cm_n < "$cm_d/${X}/claim"`,
      '  case "$cm_c" in ""|*[!0-9]*) cm_c=0 ;; esac',
      `  [ $((cm_now - cm_c)) -lt ${Math.ceil(this.#staleClaim)} ] && { echo busy; exit 0; }`,
      '  rm -rf -- "$cm_d" && mkdir -- "$cm_d" || exit 12',
      'fi',
      `cd -- "$cm_d" && mkdir -p -- ${X}${subdirs.length === 0 ? '' : ` ${shJoin(subdirs, 'spec.inputs')}`} || exit 13`,
      `printf '%s %s\\n' "$cm_now" ${shQuote(nonce)} > ${X}/claim || exit 14`,
      'echo created',
    ].join('\n');
    const r = await this.#exec(script, 'E_RUNNER_SUBMIT', 'mkdir', options);
    const answer = r.stdout.trim();
    if (r.exitCode !== 0 || !['created', 'duplicate', 'busy'].includes(answer)) {
      throw new CrystalMathError(
        'E_RUNNER_SUBMIT',
        `[runner-process] cannot create the job directory ${dir} (exit ${r.exitCode}): ${clip(r.stderr)}`,
        { details: { jobKey: key, exitCode: r.exitCode } },
      );
    }
    if (answer !== 'created') {
      throw new CrystalMathError(
        'E_RUNNER_SUBMIT',
        answer === 'duplicate'
          ? `[runner-process] a job was already submitted under key ${key}`
          : `[runner-process] a submission under key ${key} is in progress`,
        { details: { jobKey: key, reason: answer } },
      );
    }
  }

  /** Starts the wrapper in a new session and waits until it has recorded its identity. */
  async #launch(
    key: string,
    dir: string,
    nonce: string,
    options?: RunnerCallOptions,
  ): Promise<Identity> {
    const tries = Math.max(1, Math.ceil(this.#launchMs / 10));
    const script = [
      `cd -- ${shQuote(dir)} || exit 10`,
      `cm_t=; cm_n=; read -r cm_t cm_n < ${X}/claim`,
      `[ "$cm_n" = ${shQuote(nonce)} ] || { echo '@@cm:claim-lost'; exit 0; }`,
      `mkdir ${X}/launched 2>/dev/null || { echo '@@cm:duplicate'; exit 0; }`,
      DETACH_CMD,
      `[ -n "$cm_detach" ] || { echo '@@cm:no-setsid'; exit 0; }`,
      `$cm_detach ${shQuote(this.#shell)} ${X}/wrapper.sh </dev/null >>${X}/wrapper.log 2>&1 &`,
      'cm_i=0',
      `while [ ! -f ${X}/job ] && [ ! -f ${X}/exit ] && [ "$cm_i" -lt ${tries} ]; do`,
      '  sleep 0.01 2>/dev/null || sleep 1',
      '  cm_i=$((cm_i + 1))',
      'done',
      `echo '@@cm:wrapper'; cat ${X}/wrapper 2>/dev/null`,
      `echo '@@cm:job'; cat ${X}/job 2>/dev/null`,
      `echo '@@cm:end'`,
    ].join('\n');
    const r = await this.#exec(script, 'E_RUNNER_SUBMIT', 'launch', options);
    const s = parseMarkedSections(r.stdout);
    for (const problem of ['claim-lost', 'duplicate', 'no-setsid']) {
      if (s.has(problem)) {
        throw new CrystalMathError(
          'E_RUNNER_SUBMIT',
          problem === 'no-setsid'
            ? `[runner-process] neither setsid nor perl is available on ${this.#transport.description}: cannot start a job in its own session`
            : `[runner-process] the job directory of ${key} was taken over by another submission`,
          { details: { jobKey: key, reason: problem } },
        );
      }
    }
    if (r.exitCode !== 0 || !s.has('end')) {
      throw new CrystalMathError(
        'E_RUNNER_SUBMIT',
        `[runner-process] the launch of ${key} failed (exit ${r.exitCode}): ${clip(r.stderr)}`,
        { details: { jobKey: key, exitCode: r.exitCode } },
      );
    }
    // Missing identities (a very slow start) are read from the job directory by `poll`.
    return parseIdentity(s.get('wrapper')?.[0], s.get('job')?.[0]);
  }

  #target(h: ParsedHandle): PollTarget {
    const d = h.data;
    // The wrapper's identity is used only complete; otherwise the poll reads it from the files.
    const w =
      d.wrapperPid !== undefined && d.wrapperStartTime !== undefined && d.bootId !== undefined;
    const j = w && d.pid !== undefined && d.startTime !== undefined;
    return {
      jobDir: h.jobDir,
      wrapperPid: w ? d.wrapperPid : undefined,
      wrapperStartTime: w ? d.wrapperStartTime : undefined,
      bootId: w ? d.bootId : undefined,
      pid: j ? d.pid : undefined,
      startTime: j ? d.startTime : undefined,
      startedAt: d.startedAt,
    };
  }

  async poll(
    handles: readonly RunnerHandle[],
    options?: RunnerCallOptions,
  ): Promise<RunnerStatus[]> {
    throwIfAborted(options?.signal, 'poll');
    if (!Array.isArray(handles)) throw new ValidationError('handles', 'must be an array');
    if (handles.length === 0) return [];
    const targets = handles.map((h, i) => this.#target(this.#parse(h, `handles[${i}]`)));
    const r = await this.#exec(POLL_SCRIPT, 'E_RUNNER_POLL', 'poll', options, pollInput(targets));
    const statuses = r.exitCode === 0 ? parsePollOutput(r.stdout, targets) : null;
    if (statuses === null) {
      throw new CrystalMathError(
        'E_RUNNER_POLL',
        `[runner-process] the poll script failed (exit ${r.exitCode}): ${clip(r.stderr)}`,
        { details: { exitCode: r.exitCode, jobs: handles.length } },
      );
    }
    return statuses;
  }

  async cancel(handle: RunnerHandle, options?: RunnerCallOptions): Promise<void> {
    throwIfAborted(options?.signal, 'cancel');
    const h = this.#parse(handle);
    // The marker comes first: whoever sees the job end (the wrapper, or a poll after the
    // wrapper died) reads it and reports `cancelled`. The TERM/KILL sequence runs in a
    // detached helper, so the KILL happens even if this process dies during the grace period.
    const script = [
      `cd -- ${shQuote(h.jobDir)} 2>/dev/null || { echo '@@cm:nodir'; exit 0; }`,
      `[ -f ${X}/exit ] && { echo '@@cm:finished'; exit 0; }`,
      `: > ${X}/cancelled || exit 11`,
      `[ -e ${X}/launched ] || { echo '@@cm:unlaunched'; exit 0; }`,
      DETACH_CMD,
      `$cm_detach ${shQuote(this.#shell)} "$PWD/${X}/wrapper.sh" kill </dev/null >/dev/null 2>&1 &`,
      `echo '@@cm:sent'`,
    ].join('\n');
    const r = await this.#exec(script, 'E_RUNNER_CANCEL', 'cancel', options);
    const s = parseMarkedSections(r.stdout);
    if (r.exitCode !== 0 || s.size === 0) {
      throw new CrystalMathError(
        'E_RUNNER_CANCEL',
        `[runner-process] cannot cancel ${h.jobKey} (exit ${r.exitCode}): ${clip(r.stderr)}`,
        { details: { jobKey: h.jobKey, exitCode: r.exitCode } },
      );
    }
  }

  async find(jobKey: string, options?: RunnerCallOptions): Promise<RunnerHandle | null> {
    throwIfAborted(options?.signal, 'find');
    const dir = this.jobDir(jobKey);
    const script = [
      `cd -- ${shQuote(dir)} 2>/dev/null || { echo '@@cm:nodir'; exit 0; }`,
      `[ -e ${X}/launched ] || { echo '@@cm:unlaunched'; exit 0; }`,
      `echo '@@cm:meta'; cat ${X}/meta.json 2>/dev/null; echo`,
      `echo '@@cm:wrapper'; cat ${X}/wrapper 2>/dev/null`,
      `echo '@@cm:job'; cat ${X}/job 2>/dev/null`,
      `echo '@@cm:end'`,
    ].join('\n');
    const r = await this.#exec(script, 'E_RUNNER_HANDLE', 'find', options);
    const s = parseMarkedSections(r.stdout);
    if (s.has('nodir') || s.has('unlaunched')) return null;
    if (r.exitCode !== 0 || !s.has('end')) {
      throw new CrystalMathError(
        'E_RUNNER_HANDLE',
        `[runner-process] cannot read the job directory ${dir} (exit ${r.exitCode}): ${clip(r.stderr)}`,
        { details: { jobKey } },
      );
    }
    let meta: Record<string, unknown> = {};
    try {
      const parsed: unknown = JSON.parse((s.get('meta') ?? []).join('\n').trim() || '{}');
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
        meta = parsed as Record<string, unknown>;
      }
    } catch {
      /* an unreadable meta file only loses the name and output globs */
    }
    const outputs = Array.isArray(meta.outputs)
      ? meta.outputs.filter((o): o is string => typeof o === 'string')
      : undefined;
    const data: ProcessHandleData = {
      jobDir: dir,
      name: typeof meta.name === 'string' ? meta.name : jobKey,
      submittedAt: typeof meta.submittedAt === 'number' ? meta.submittedAt : 0,
      ...(outputs === undefined ? {} : { outputs }),
      ...parseIdentity(s.get('wrapper')?.[0], s.get('job')?.[0]),
    };
    return { kind: this.kind, jobKey, data: handleData(data) };
  }

  async collect(
    handle: RunnerHandle,
    dest: string,
    options?: RunnerCallOptions & { readonly globs?: readonly string[] },
  ): Promise<CollectResult> {
    throwIfAborted(options?.signal, 'collect');
    const h = this.#parse(handle);
    if (typeof dest !== 'string' || dest === '')
      throw new ValidationError('dest', 'must be a path');
    return collectJobDir({
      transport: this.#transport,
      dir: h.jobDir,
      globs: options?.globs ?? h.data.outputs ?? [],
      dest,
      signal: options?.signal,
      label: 'runner-process',
      details: { jobKey: h.jobKey },
      exec: (script) => this.#exec(script, 'E_RUNNER_COLLECT', 'collect', options),
    });
  }

  async cleanup(handle: RunnerHandle, options?: RunnerCallOptions): Promise<void> {
    throwIfAborted(options?.signal, 'cleanup');
    const h = this.#parse(handle);
    // A job that still runs is stopped first (wrapper, then its whole group, with SIGKILL):
    // removing its directory under it would leave processes nobody can find again.
    const dir = shQuote(h.jobDir);
    const script = [
      `[ -d ${dir} ] || exit 0`,
      STAT_FN,
      `(cd -- ${dir} || exit 0`,
      `if [ ! -f ${X}/exit ]; then`,
      '  cm_wp=; cm_ws=; cm_b=; cm_jp=; cm_jg=; cm_js=',
      `  [ -f ${X}/wrapper ] && read -r cm_wp cm_y cm_ws cm_b cm_y < ${X}/wrapper`,
      `  [ -f ${X}/job ] && read -r cm_jp cm_jg cm_js < ${X}/job`,
      '  cm_alive "$cm_wp" "$cm_ws" "$cm_b" && kill -KILL "$cm_wp" 2>/dev/null',
      '  cm_alive "$cm_jp" "$cm_js" "$cm_b" && kill -KILL "-$cm_jg" 2>/dev/null',
      'fi)',
      `rm -rf -- ${dir}`,
    ].join('\n');
    const r = await this.#exec(script, 'E_RUNNER_HANDLE', 'cleanup', options);
    if (r.exitCode !== 0) {
      throw new CrystalMathError(
        'E_RUNNER_HANDLE',
        `[runner-process] cannot remove ${h.jobDir} (exit ${r.exitCode}): ${clip(r.stderr)}`,
        { details: { jobKey: h.jobKey } },
      );
    }
  }

  async tail(
    handle: RunnerHandle,
    options?: RunnerCallOptions & {
      readonly stream?: 'stdout' | 'stderr';
      readonly offset?: number;
    },
  ): Promise<TailResult> {
    throwIfAborted(options?.signal, 'tail');
    const h = this.#parse(handle);
    const { offset, stream } = tailOptions(options);
    return readTail(this.#transport, `${h.jobDir}/${X}/${stream}`, offset, options?.signal);
  }
}
