// A complete Runner adapter in under 150 lines: each job runs as its own session (setsid) in
// `<root>/<key>/` on any Transport, so it works on this machine and, unchanged, over SSH.
// Everything is on disk: `pid`, `exit`, `cancelled`; one `sh` call polls a whole batch.

import { posix } from 'node:path';
import {
  CrystalMathError,
  isValidJobKey,
  planInputs,
  type Runner,
  type RunnerCallOptions,
  type RunnerHandle,
  type RunnerJob,
  type RunnerStatus,
  shCommand,
  shExports,
  shJoin,
  shQuote,
  stageInputs,
  type Transport,
  throwIfAborted,
  ValidationError,
  validateJobSpec,
} from '@crystalmath/core';

export interface SessionRunnerOptions {
  /** Where commands run: `new LocalTransport()`, or an `SshTransport`. */
  readonly transport: Transport;
  /** Absolute directory that holds one folder per job. */
  readonly root: string;
}

// One round trip for N jobs: the directories are positional arguments, never shell text.
const POLL = `for d in "$@"; do
  if [ -f "$d/cancelled" ]; then echo cancelled
  elif [ -f "$d/exit" ]; then echo "exit $(cat "$d/exit")"
  elif [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; then echo running
  elif [ -f "$d/pid" ]; then echo lost
  else echo missing; fi
done`;

const LAUNCH = `setsid sh run.sh </dev/null >/dev/null 2>&1 &
while [ ! -f pid ]; do sleep 0.01; done`;

/**
 * Runs jobs as detached sessions through a Transport.
 *
 * @example
 * const runner = new SessionRunner({ transport: new LocalTransport(), root: '/tmp/jobs' });
 * const h = await runner.submit({ key: 'job-1', spec: { name: 'hi', argv: ['echo', 'hi'] } });
 */
export class SessionRunner implements Runner {
  readonly kind = 'session';
  readonly capabilities = {
    find: true,
    collect: false,
    cleanup: false,
    tail: false,
    minPollIntervalMs: 0,
  };
  readonly #t: Transport;
  readonly #root: string;

  constructor(options: SessionRunnerOptions) {
    this.#t = options.transport;
    this.#root = options.root;
  }

  /** The job directory of one of our handles; a handle of another runner is refused. */
  #dir(h: RunnerHandle): string {
    if (h.kind === this.kind && typeof h.data.dir === 'string') return h.data.dir;
    throw new CrystalMathError('E_RUNNER_HANDLE', `[example] not a ${this.kind} handle`);
  }

  async submit({ key, spec }: RunnerJob, options?: RunnerCallOptions): Promise<RunnerHandle> {
    throwIfAborted(options?.signal, 'submit');
    if (!isValidJobKey(key)) throw new ValidationError('key', 'must be a valid job key');
    validateJobSpec(spec); // before anything is written: a rejected spec changes nothing
    const dir = posix.join(this.#root, key);
    await this.#t.mkdir(this.#root);
    // `mkdir` without -p is the atomic claim: a second submission under the key fails here.
    if ((await this.#t.exec(['mkdir', dir], options)).exitCode !== 0) {
      throw new CrystalMathError('E_RUNNER_SUBMIT', `[example] job ${key} already exists`);
    }
    // Core's preamble: destinations confined to the job directory, folders staged recursively.
    const planned = planInputs(spec);
    for (const sub of planned.subdirs) await this.#t.mkdir(posix.join(dir, sub));
    await stageInputs(this.#t, dir, planned.inputs, options?.signal);
    const work = posix.join(dir, spec.workdir ?? '.');
    await this.#t.mkdir(work);
    if (spec.script !== undefined) await this.#t.writeFile(posix.join(dir, 'job.sh'), spec.script);
    const argv = spec.argv ?? ['sh', posix.join(dir, 'job.sh')];
    const wall = spec.resources?.walltimeSeconds;
    // --foreground keeps the command in our process group, so cancel reaches it too; shCommand
    // makes the first word always a program (`X=1` or `if` is not shell syntax).
    const main = wall ? `timeout --foreground ${wall} ${shJoin(argv)}` : shCommand(argv);
    const script = [
      'cd "$(dirname "$0")"',
      'echo $$ > pid.tmp && mv pid.tmp pid', // after setsid: this pid is the session's group
      shExports(spec.env ?? {}),
      `(cd ${shQuote(work)} || exit 1`,
      ...(spec.modules ?? []).map((m) => `module load ${shQuote(m)} || exit $?`),
      ...(spec.pre ?? []).map((c, i) => `${shCommand(c, `spec.pre[${i}]`)} || exit $?`),
      main,
      'rc=$?', // post commands run whatever the outcome; the job keeps main's exit code
      ...(spec.post ?? []).map((c, i) => shCommand(c, `spec.post[${i}]`)),
      'exit $rc) > out.txt 2> err.txt',
      'echo $? > exit.tmp && mv exit.tmp exit',
    ].join('\n');
    await this.#t.writeFile(posix.join(dir, 'run.sh'), script, options);
    const start = await this.#t.exec({ script: LAUNCH }, { ...options, cwd: dir });
    if (start.exitCode !== 0) {
      throw new CrystalMathError('E_RUNNER_SUBMIT', `[example] could not start ${key}`);
    }
    return { kind: this.kind, jobKey: key, data: { dir } };
  }

  async poll(handles: readonly RunnerHandle[], o?: RunnerCallOptions): Promise<RunnerStatus[]> {
    throwIfAborted(o?.signal, 'poll');
    if (handles.length === 0) return [];
    const dirs = handles.map((h) => this.#dir(h));
    const r = await this.#t.exec(['sh', '-c', POLL, 'sh', ...dirs], o);
    const lines = r.stdout.trim().split('\n');
    return handles.map((h, i): RunnerStatus => {
      const [word, code] = (lines[i] ?? 'missing').split(' ');
      if (word === 'cancelled') return { state: 'cancelled' };
      if (word === 'running') return { state: 'running' };
      if (word !== 'exit') return { state: 'lost', reason: `no process for ${h.jobKey}` };
      const exitCode = Number(code);
      if (exitCode === 124) return { state: 'timeout', exitCode };
      return { state: exitCode === 0 ? 'succeeded' : 'failed', exitCode };
    });
  }

  async cancel(handle: RunnerHandle, o?: RunnerCallOptions): Promise<void> {
    throwIfAborted(o?.signal, 'cancel');
    const dir = this.#dir(handle);
    // A finished job stays finished; otherwise mark it, then end its whole session.
    const script = `[ -f "$1/exit" ] && exit 0; touch "$1/cancelled"; kill -TERM -"$(cat "$1/pid")" 2>/dev/null; exit 0`;
    await this.#t.exec(['sh', '-c', script, 'sh', dir], o);
  }

  async find(jobKey: string, o?: RunnerCallOptions): Promise<RunnerHandle | null> {
    throwIfAborted(o?.signal, 'find');
    if (!isValidJobKey(jobKey)) return null;
    const h = { kind: this.kind, jobKey, data: { dir: posix.join(this.#root, jobKey) } };
    return (await this.#t.stat(posix.join(this.#dir(h), 'run.sh'), o)) ? h : null;
  }
}
