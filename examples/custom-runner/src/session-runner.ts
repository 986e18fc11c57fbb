// A complete Runner adapter in under 150 lines: each job runs as its own session (setsid) in
// `<root>/<key>/` on any Transport, so it works on this machine and, unchanged, over SSH.
// Everything is on disk: `pid`, `exit`, `cancelled`; one `sh` call polls a whole batch.

import { posix } from 'node:path';
import {
  CrystalMathError,
  isValidJobKey,
  type Runner,
  type RunnerHandle,
  type RunnerJob,
  type RunnerStatus,
  shExports,
  shJoin,
  shQuote,
  type Transport,
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

  #handle(key: string): RunnerHandle {
    return { kind: this.kind, jobKey: key, data: { dir: posix.join(this.#root, key) } };
  }

  async submit({ key, spec }: RunnerJob): Promise<RunnerHandle> {
    if (!isValidJobKey(key)) throw new ValidationError('key', 'must be a valid job key');
    validateJobSpec(spec); // before anything is written: a rejected spec changes nothing
    const h = this.#handle(key);
    const dir = h.data.dir as string;
    await this.#t.mkdir(this.#root);
    // `mkdir` without -p is the atomic claim: a second submission under the key fails here.
    const claim = await this.#t.exec(['mkdir', dir]);
    if (claim.exitCode !== 0) {
      throw new CrystalMathError('E_RUNNER_SUBMIT', `[example] job ${key} already exists`);
    }
    for (const input of spec.inputs ?? []) {
      const to = posix.join(dir, input.to);
      await this.#t.mkdir(posix.dirname(to));
      if ('from' in input) await this.#t.upload(input.from, to);
      else await this.#t.writeFile(to, input.content);
    }
    const work = posix.join(dir, spec.workdir ?? '.');
    await this.#t.mkdir(work);
    if (spec.script !== undefined) await this.#t.writeFile(posix.join(dir, 'job.sh'), spec.script);
    const command = spec.argv ? shJoin(spec.argv) : `sh ${shQuote(posix.join(dir, 'job.sh'))}`;
    const wall = spec.resources?.walltimeSeconds;
    // --foreground keeps the command in our process group, so cancel reaches it too.
    const limited = wall ? `timeout --foreground ${wall} ${command}` : command;
    const script = [
      'cd "$(dirname "$0")"',
      'echo $$ > pid.tmp && mv pid.tmp pid', // after setsid: this pid is the session's group
      shExports(spec.env ?? {}),
      `(cd ${shQuote(work)} && ${limited}) > out.txt 2> err.txt`,
      'echo $? > exit.tmp && mv exit.tmp exit',
    ].join('\n');
    await this.#t.writeFile(posix.join(dir, 'run.sh'), script);
    const start = await this.#t.exec(
      {
        script:
          'setsid sh run.sh < /dev/null > /dev/null 2>&1 & while [ ! -f pid ]; do sleep 0.01; done',
      },
      { cwd: dir },
    );
    if (start.exitCode !== 0) {
      throw new CrystalMathError('E_RUNNER_SUBMIT', `[example] could not start ${key}`);
    }
    return h;
  }

  async poll(handles: readonly RunnerHandle[]): Promise<RunnerStatus[]> {
    if (handles.length === 0) return [];
    const dirs = handles.map((h) => String(h.data.dir));
    const r = await this.#t.exec(['sh', '-c', POLL, 'sh', ...dirs]);
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

  async cancel(handle: RunnerHandle): Promise<void> {
    const dir = String(handle.data.dir);
    // A finished job stays finished; otherwise mark it, then end its whole session.
    const script = `[ -f "$1/exit" ] && exit 0; touch "$1/cancelled"; kill -TERM -"$(cat "$1/pid")" 2>/dev/null; exit 0`;
    await this.#t.exec(['sh', '-c', script, 'sh', dir]);
  }

  async find(jobKey: string): Promise<RunnerHandle | null> {
    if (!isValidJobKey(jobKey)) return null;
    const h = this.#handle(jobKey);
    return (await this.#t.stat(posix.join(String(h.data.dir), 'run.sh'))) ? h : null;
  }
}
