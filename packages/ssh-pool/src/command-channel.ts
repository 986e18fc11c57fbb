// The persistent command channel: per connection, one long-lived exec channel running a small
// POSIX sh helper (sent as the channel's command line: nothing is installed on the remote).
// A small command then costs one round trip plus a fork on the remote, instead of a channel
// open, an exec request and a login shell per command.
//
// Protocol (the helper's stdin and stdout; the commands never see them):
//   request   `<id> <lines> <hasStdin>\n`, then <lines> lines of the command line, then, when
//             hasStdin is 1, one line: the stdin bytes as a `printf %b` argument (\0ooo escapes).
//   hello     `\x1e<token>\n` once the helper is ready (anything a login rc file printed before it
//             is skipped).
//   started   `\x1eA <id> <pid>\n` right after the fork: <pid> is the command's process group.
//   result    `\x1eR <id> <status> <outBytes> <errBytes>\n`, then the stdout and stderr bytes.
// Results are framed by length, so output may hold any bytes, frame-like ones included. The
// command runs under `setsid` (its own session and process group, killed as a whole), with
// stdout and stderr in files of a private temporary directory, stdin from a file or /dev/null.
// The helper runs one command at a time: a command arriving while it is busy takes an exec
// channel, so a long command never delays small ones.

import { randomBytes } from 'node:crypto';
import {
  AbortError,
  type CrystalMathError,
  type ExecResult,
  shQuote,
  TransportError,
} from '@crystalmath/core';
import type { ClientChannel } from 'ssh2';
import { SshChannelError, SshPoolClosedError, SshTimeoutError } from './errors.js';

/** The helper, run by `/bin/sh -c` with the hello token as `$1`. */
export const HELPER_SCRIPT = [
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion
  'd=$(mktemp -d "${TMPDIR:-/tmp}/cmch.XXXXXXXX" 2>/dev/null) || exit 97',
  'case $d in *[!A-Za-z0-9/._-]*) rm -rf "$d"; exit 97 ;; esac',
  'command -v setsid >/dev/null 2>&1 || { rm -rf "$d"; exit 98; }',
  'trap \'rm -rf "$d"\' EXIT',
  "trap 'exit 1' HUP INT TERM PIPE",
  'cm_r=',
  'printf \'\\036%s\\n\' "$1"',
  'while IFS= read -r h; do',
  '  set -- $h',
  '  if [ "$1" = K ]; then',
  '    case $3 in "" | *[!0-9]*) ;; *) kill -s "$2" -- "-$3" 2>/dev/null ;; esac',
  '    continue',
  '  fi',
  '  cm_id=$1 cm_n=$2 cm_in=$3 cm_b= cm_i=0',
  '  while [ "$cm_i" -lt "$cm_n" ]; do',
  '    IFS= read -r cm_l || exit 0',
  '    if [ "$cm_i" -eq 0 ]; then cm_b=$cm_l; else cm_b="$cm_b',
  '$cm_l"; fi',
  '    cm_i=$((cm_i + 1))',
  '  done',
  '  cm_f=/dev/null',
  '  if [ "$cm_in" = 1 ]; then',
  '    IFS= read -r cm_l || exit 0',
  '    printf \'%b\' "$cm_l" >"$d/i" || exit 96',
  '    cm_f=$d/i',
  '  fi',
  // The command and its report run in the background, so this loop keeps reading: a kill
  // request (K) is served at once by the builtin, without a new session.
  // The previous command's reporter has sent its result (the client sends one command at a
  // time): reaped here, so the shell's job table does not grow with every command.
  '  [ -n "$cm_r" ] && wait "$cm_r"',
  '  (',
  '    setsid /bin/sh -c "$cm_b" <"$cm_f" >"$d/o" 2>"$d/e" &',
  '    cm_p=$!',
  '    printf \'\\036A %s %s\\n\' "$cm_id" "$cm_p"',
  '    wait "$cm_p"',
  '    cm_s=$?',
  // One `wc` for both sizes (the directory's name has no blank: checked above).
  '    set -- $(wc -c "$d/o" "$d/e")',
  '    printf \'\\036R %s %s %s %s\\n\' "$cm_id" "$cm_s" "$1" "$3"',
  '    cat "$d/o" "$d/e"',
  '  ) &',
  '  cm_r=$!',
  'done',
].join('\n');

/** Stdin larger than this goes through an exec channel (the helper reads it byte by byte). */
export const CHANNEL_MAX_STDIN_BYTES = 16 * 1024;
/** Command lines longer than this go through an exec channel, for the same reason. */
export const CHANNEL_MAX_LINE_BYTES = 64 * 1024;

// POSIX signal numbers shared by Linux and the BSDs (128 + n is how a shell reports them).
const SIGNALS: Readonly<Record<number, string>> = {
  1: 'SIGHUP',
  2: 'SIGINT',
  3: 'SIGQUIT',
  4: 'SIGILL',
  5: 'SIGTRAP',
  6: 'SIGABRT',
  8: 'SIGFPE',
  9: 'SIGKILL',
  11: 'SIGSEGV',
  13: 'SIGPIPE',
  14: 'SIGALRM',
  15: 'SIGTERM',
};

/** Encodes bytes as a `printf %b` argument on one line: printable ASCII as is, the rest `\0ooo`. */
export function encodePrintfB(data: Uint8Array): string {
  let out = '';
  for (const byte of data) {
    if (byte >= 0x20 && byte < 0x7f && byte !== 0x5c) out += String.fromCharCode(byte);
    else out += `\\0${byte.toString(8).padStart(3, '0')}`;
  }
  return out;
}

/**
 * Ends the helper: EOF makes its `read` fail and it exits, and sshd closes the channel after
 * the exit status. (A CLOSE sent at once would overtake the EOF.) Closed from our side too if that has not happened after a few seconds.
 */
function endChannel(ch: ClientChannel): void {
  // Read to the end: a stream whose output nobody reads never emits 'close'.
  ch.resume();
  ch.stderr.resume();
  try {
    ch.end();
  } catch {
    // already closing
  }
  const timer = setTimeout(() => {
    try {
      ch.close();
    } catch {
      // already closed
    }
  }, 5_000);
  timer.unref();
  ch.once('close', () => clearTimeout(timer));
}

/** The parts of a connection the channel needs. */
export interface ChannelHost {
  readonly label: string;
  /** Opens the helper's exec channel (outside the slot accounting of exec channels). */
  openHelper(
    line: string,
    cb: (err: Error | undefined, ch: ClientChannel | undefined) => void,
  ): void;
  /** Runs a short command in a channel of its own, ignoring its result (bounded in time). */
  fireAndForget(line: string): void;
  /** Records a request sent to the server; `answered(token)` when its reply comes. */
  requestSent(): number;
  answered(token: number): void;
}

export interface ChannelRunOptions {
  readonly stdin?: string | Uint8Array | undefined;
  readonly timeoutMs?: number | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly killGraceMs: number;
}

interface Pending {
  readonly id: number;
  readonly token: number;
  pid: number | undefined;
  /** The caller has its answer (result, timeout, abort): a late result only frees the helper. */
  settled: boolean;
  cancelled: boolean;
  resolve(result: ExecResult): void;
  reject(error: unknown): void;
  cleanup(): void;
}

export type CommandChannelState = 'starting' | 'ready' | 'closed';

/**
 * One helper on one connection. `run()` returns undefined when the helper cannot take the
 * command now (starting, busy, closed): the caller uses an exec channel.
 */
export class CommandChannel {
  state: CommandChannelState = 'starting';
  /** Why it closed: 'refused' (the host would not open it), 'failed' (it died), 'closed'. */
  closeReason: 'refused' | 'failed' | 'closed' | undefined;
  readonly #host: ChannelHost;
  readonly #token = `cmch${randomBytes(8).toString('hex')}`;
  readonly #onClosed: (reason: 'refused' | 'failed' | 'closed') => void;
  #channel: ClientChannel | undefined;
  /** Bytes received and not parsed yet: #buf while parsing, #chunks in between. */
  #buf: Buffer = Buffer.alloc(0);
  #chunks: Buffer[] = [];
  #have = 0;
  #hello = false;
  #nextId = 0;
  #pending: Pending | undefined;
  /** A result of this many bytes is being read (header parsed). */
  #result: { id: number; status: number; out: number; err: number } | undefined;
  #startTimer: NodeJS.Timeout | undefined;
  #stuckTimer: NodeJS.Timeout | undefined;
  /** Close the helper once its current command ends (the server needs the session back). */
  #closeWhenIdle = false;

  constructor(
    host: ChannelHost,
    startTimeoutMs: number,
    onClosed: (reason: 'refused' | 'failed' | 'closed') => void,
  ) {
    this.#host = host;
    this.#onClosed = onClosed;
    const token = host.requestSent();
    let answered = false;
    const answer = (): void => {
      if (answered) return;
      answered = true;
      host.answered(token);
      if (this.#startTimer) clearTimeout(this.#startTimer);
    };
    this.#startTimer = setTimeout(() => {
      answer();
      this.#close('failed');
    }, startTimeoutMs);
    this.#startTimer.unref();
    const line = `exec /bin/sh -c ${shQuote(HELPER_SCRIPT)} sh ${this.#token}`;
    host.openHelper(line, (err, ch) => {
      if (this.state === 'closed') {
        answer();
        if (ch) {
          // EOF ends the helper (its `read` fails); sshd then closes the channel.
          ch.on('error', () => undefined);
          endChannel(ch);
        }
        return;
      }
      if (err || !ch) {
        answer();
        this.#close('refused');
        return;
      }
      // The session is open: the request is answered (the hello may take as long as the login
      // shell's rc files; the start timeout bounds that).
      host.answered(token);
      this.#channel = ch;
      ch.on('error', () => undefined);
      ch.stderr.on('error', () => undefined);
      ch.stderr.resume();
      ch.on('data', (chunk: Buffer) => {
        // A big result arrives in many chunks: joined once, when all of it is there.
        this.#chunks.push(chunk);
        this.#have += chunk.length;
        const r = this.#result;
        if (r && this.#have < r.out + r.err) return;
        this.#buf = this.#chunks.length === 1 ? chunk : Buffer.concat(this.#chunks);
        this.#chunks = [];
        this.#have = 0;
        if (!this.#hello) {
          const at = this.#buf.indexOf(`\x1e${this.#token}\n`);
          if (at < 0) {
            if (this.#buf.length > 1 << 20) this.#close('failed'); // a chatty rc file, no helper
            this.#chunks = [this.#buf];
            this.#have = this.#buf.length;
            return;
          }
          this.#buf = this.#buf.subarray(at + this.#token.length + 2);
          this.#hello = true;
          answer();
          this.state = 'ready';
        }
        this.#parse();
        if (this.#buf.length > 0) {
          this.#chunks = [this.#buf];
          this.#have = this.#buf.length;
        }
        this.#buf = Buffer.alloc(0);
      });
      // The helper's read loop exited (it only does on our EOF): dead, even while a command's
      // reporter still holds the channel open.
      const gone = (): void => {
        answer();
        this.#close(this.#hello ? 'failed' : 'refused');
      };
      ch.on('exit', gone);
      ch.on('close', gone);
    });
  }

  /** True when a command given now would run on the helper. */
  get idle(): boolean {
    return this.state === 'ready' && this.#pending === undefined && !this.#closeWhenIdle;
  }

  /** True while the helper holds a channel on the server (open or opening). */
  get holdsSession(): boolean {
    return this.state !== 'closed';
  }

  /** Closes the helper now if idle, else once its command ends. */
  yieldSession(): void {
    if (this.#pending === undefined) this.#close('closed');
    else this.#closeWhenIdle = true;
  }

  /** Closes the helper (the connection is closing, or the server needs the session). */
  close(): void {
    this.#close('closed');
  }

  #close(reason: 'refused' | 'failed' | 'closed'): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeReason = reason;
    if (this.#startTimer) clearTimeout(this.#startTimer);
    if (this.#stuckTimer) clearTimeout(this.#stuckTimer);
    if (this.#channel) endChannel(this.#channel);
    const p = this.#pending;
    this.#pending = undefined;
    if (p) {
      this.#host.answered(p.token);
      // The command may still run in its own session: end it, as an exec channel's would be.
      if (p.pid !== undefined) this.#host.fireAndForget(`kill -s KILL -- -${p.pid} 2>/dev/null`);
      if (!p.settled) {
        p.settled = true;
        p.cleanup();
        p.reject(
          new SshChannelError(
            `${this.#host.label}: the command channel closed while the command ran`,
            { details: { host: this.#host.label, started: true } },
          ),
        );
      }
    }
    this.#onClosed(reason);
  }

  /** Parses frames from the helper: started (`A`) and result (`R` + bytes). */
  #parse(): void {
    for (;;) {
      if (this.#result) {
        const { id, status, out, err } = this.#result;
        if (this.#buf.length < out + err) return;
        const stdout = this.#buf.subarray(0, out).toString('utf8');
        const stderr = this.#buf.subarray(out, out + err).toString('utf8');
        this.#buf = this.#buf.subarray(out + err);
        this.#result = undefined;
        this.#finished(id, status, stdout, stderr);
        continue;
      }
      const nl = this.#buf.indexOf(0x0a);
      if (nl < 0) {
        if (this.#buf.length > 256) this.#close('failed');
        return;
      }
      const header = this.#buf.subarray(0, nl).toString('latin1');
      this.#buf = this.#buf.subarray(nl + 1);
      const m =
        header.charCodeAt(0) === 0x1e
          ? /^([AR]) (\d+) (\d+)(?: (\d+) (\d+))?$/.exec(header.slice(1))
          : null;
      if (!m) {
        this.#close('failed'); // not our protocol: never guess
        return;
      }
      const id = Number(m[2]);
      if (m[1] === 'A') {
        this.#started(id, Number(m[3]));
      } else if (m[4] !== undefined && m[5] !== undefined) {
        this.#result = { id, status: Number(m[3]), out: Number(m[4]), err: Number(m[5]) };
      } else {
        this.#close('failed');
        return;
      }
    }
  }

  #started(id: number, pid: number): void {
    const p = this.#pending;
    if (!p || p.id !== id) {
      this.#close('failed');
      return;
    }
    p.pid = pid;
    this.#host.answered(p.token);
    // Given up on before the pid was known: end it now.
    if (p.cancelled) this.#signal(pid, 'KILL');
  }

  /**
   * Signals a command's process group: a request to the helper (its `kill` builtin, at once),
   * or, when the helper is gone, `kill` in a short exec channel of its own.
   */
  #signal(pgid: number, sig: 'TERM' | 'KILL'): void {
    const ch = this.#channel;
    if (this.state !== 'closed' && ch) {
      try {
        ch.write(`K ${sig} ${pgid}\n`);
        return;
      } catch {
        // closed meanwhile
      }
    }
    this.#host.fireAndForget(`kill -s ${sig} -- -${pgid} 2>/dev/null`);
  }

  #finished(id: number, status: number, stdout: string, stderr: string): void {
    const p = this.#pending;
    if (!p || p.id !== id) {
      this.#close('failed');
      return;
    }
    this.#pending = undefined;
    if (this.#stuckTimer) clearTimeout(this.#stuckTimer);
    this.#stuckTimer = undefined;
    if (!p.settled) {
      p.settled = true;
      p.cleanup();
      // A POSIX shell reports a command ended by signal n as 128 + n: read it back as that
      // signal (an explicit `exit 143` is read as SIGTERM too; see the README).
      const sig = status > 128 ? SIGNALS[status - 128] : undefined;
      p.resolve({
        stdout,
        stderr,
        exitCode: sig === undefined ? status : null,
        signal: sig ?? null,
      });
    }
    if (this.#closeWhenIdle) this.#close('closed');
  }

  /**
   * Runs a command line on the helper, or returns undefined when the helper cannot take it now
   * (not ready, busy, input too large): the caller then uses an exec channel.
   */
  run(commandLine: string, o: ChannelRunOptions): Promise<ExecResult> | undefined {
    if (!this.idle || !this.#channel) return undefined;
    const stdin =
      o.stdin === undefined
        ? undefined
        : typeof o.stdin === 'string'
          ? Buffer.from(o.stdin, 'utf8')
          : o.stdin;
    if (stdin !== undefined && stdin.byteLength > CHANNEL_MAX_STDIN_BYTES) return undefined;
    if (Buffer.byteLength(commandLine) > CHANNEL_MAX_LINE_BYTES) return undefined;
    const lines = commandLine.split('\n');
    const id = ++this.#nextId;
    const channel = this.#channel;
    const label = this.#host.label;
    return new Promise<ExecResult>((resolve, reject) => {
      let runTimer: NodeJS.Timeout | undefined;
      const p: Pending = {
        id,
        token: this.#host.requestSent(),
        pid: undefined,
        settled: false,
        cancelled: false,
        resolve,
        reject,
        cleanup: () => {
          if (runTimer) clearTimeout(runTimer);
          o.signal?.removeEventListener('abort', onAbort);
        },
      };
      this.#pending = p;
      const terminate = (error: CrystalMathError): void => {
        if (p.settled) return;
        p.settled = true;
        p.cancelled = true;
        p.cleanup();
        reject(error);
        if (p.pid !== undefined) {
          const pid = p.pid;
          this.#signal(pid, 'TERM');
          const kill = setTimeout(() => {
            if (this.#pending === p) this.#signal(pid, 'KILL');
          }, o.killGraceMs);
          kill.unref();
        }
        // A helper that has not finished the command a while after SIGKILL is stuck (the
        // command in uninterruptible I/O, or the helper itself): closed, later commands use
        // exec channels or a new helper.
        this.#stuckTimer = setTimeout(() => {
          if (this.#pending === p) this.#close('failed');
        }, o.killGraceMs + Math.max(o.killGraceMs, 5_000));
        this.#stuckTimer.unref();
      };
      const onAbort = (): void => {
        terminate(new AbortError('[ssh-pool] exec aborted', { cause: o.signal?.reason }));
      };
      o.signal?.addEventListener('abort', onAbort, { once: true });
      if (o.timeoutMs !== undefined) {
        runTimer = setTimeout(() => {
          terminate(
            new TransportError(
              'E_TRANSPORT_TIMEOUT',
              `[ssh-pool] ${label}: command timed out after ${o.timeoutMs} ms`,
              { details: { host: label, timeoutMs: o.timeoutMs } },
            ),
          );
        }, o.timeoutMs);
      }
      let request = `${id} ${lines.length} ${stdin === undefined ? 0 : 1}\n${commandLine}\n`;
      if (stdin !== undefined) request += `${encodePrintfB(stdin)}\n`;
      try {
        channel.write(request);
      } catch (error) {
        this.#close('failed');
        if (!p.settled) {
          p.settled = true;
          p.cleanup();
          reject(
            error instanceof SshPoolClosedError
              ? error
              : new SshTimeoutError(`${label}: the command channel could not be written`, {
                  cause: error,
                  details: { host: label, started: false },
                }),
          );
        }
      }
    });
  }
}
