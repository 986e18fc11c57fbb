// The persistent command channel: per connection, one long-lived exec channel running a small
// POSIX sh helper (sent as the channel's command line: nothing is installed on the remote).
// A small command then costs one round trip plus a fork on the remote, instead of a channel
// open, an exec request and a login shell per command.
//
// Protocol (the helper's stdin, stdout and stderr):
//   request   `<id> <lines> <hasStdin> <marker>\n`, then <lines> lines of the command line, then,
//             when hasStdin is 1, one line: the stdin bytes as a `printf %b` argument (\0ooo
//             escapes). <marker> is 16 random hex digits, new for every command.
//   kill      `K <TERM|KILL> <pgid>\n`: the helper's `kill` builtin, at once.
//   hello     `\x1e<token>\n` on stdout once the helper is ready (anything a login rc file
//             printed before it is skipped).
// The command writes straight to the channel's stdout and stderr (no temporary file, no copy).
// Its reporter adds, on stdout, `\x1e<marker>A <pgid>\n` right after the fork (cut out again by
// the client wherever it lands) and `\x1e<marker>R <status>\n` after the command ended; on
// stderr `\x1e<marker>E\n`. The marker is random per command and never on the command's
// argv or environment, so output holding frame-like text, or any bytes, passes through. The
// command runs under `setsid` (its own session and process group, killed as a whole), stdin
// through a pipe from the `printf` builtin, or /dev/null: nothing is written on the remote. The helper runs one command at a
// time: a command arriving while it is busy takes an exec channel, so a long command never
// delays small ones.

import { randomBytes } from 'node:crypto';
import { type CrystalMathError, type ExecResult, shQuote } from '@crystalmath/core';
import type { ClientChannel } from 'ssh2';
import { SshChannelError, SshPoolClosedError, SshTimeoutError } from './errors.js';
import { armCommandLimits } from './remote-command.js';

/** The helper, run by `/bin/sh -c` with the hello token as `$1`. */
export const HELPER_SCRIPT = [
  'command -v setsid >/dev/null 2>&1 || exit 98',
  "trap 'exit 1' HUP INT TERM PIPE",
  'cm_r=',
  'printf \'\\036%s\\n\' "$1"',
  'while IFS= read -r h; do',
  '  set -- $h',
  '  if [ "$1" = K ]; then',
  '    case $3 in "" | *[!0-9]*) ;; *) kill -s "$2" -- "-$3" 2>/dev/null ;; esac',
  '    continue',
  '  fi',
  '  cm_id=$1 cm_n=$2 cm_in=$3 cm_m=$4 cm_b= cm_i=0',
  '  while [ "$cm_i" -lt "$cm_n" ]; do',
  '    IFS= read -r cm_l || exit 0',
  '    if [ "$cm_i" -eq 0 ]; then cm_b=$cm_l; else cm_b="$cm_b',
  '$cm_l"; fi',
  '    cm_i=$((cm_i + 1))',
  '  done',
  '  cm_l=',
  '  if [ "$cm_in" = 1 ]; then',
  '    IFS= read -r cm_l || exit 0',
  '  fi',
  // The command and its report run in the background, so this loop keeps reading: a kill
  // request (K) is served at once by the builtin, without a new session.
  // The previous command's reporter has sent its result (the client sends one command at a
  // time): reaped here, so the shell's job table does not grow with every command.
  '  [ -n "$cm_r" ] && wait "$cm_r"',
  '  (',
  // stdin through a pipe from the printf builtin (in the pipeline's own process), or none.
  '    if [ "$cm_in" = 1 ]; then',
  '      printf \'%b\' "$cm_l" | setsid /bin/sh -c "$cm_b" &',
  '    else',
  '      setsid /bin/sh -c "$cm_b" </dev/null &',
  '    fi',
  '    cm_p=$!',
  '    printf \'\\036%sA %s\\n\' "$cm_m" "$cm_p"',
  '    wait "$cm_p"',
  '    cm_s=$?',
  '    printf \'\\036%sE\\n\' "$cm_m" >&2',
  '    printf \'\\036%sR %s\\n\' "$cm_m" "$cm_s"',
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
  readonly out: MarkedStream;
  readonly err: MarkedStream;
  pid: number | undefined;
  /** The caller has its answer (result, timeout, abort): a late result only frees the helper. */
  settled: boolean;
  cancelled: boolean;
  resolve(result: ExecResult): void;
  reject(error: unknown): void;
  cleanup(): void;
}

const TAIL = 128; // a marker line is under 64 bytes: a window this long holds any split one

/**
 * One command's output on one stream, up to the line `\x1e<marker><end> ...\n`, with the line
 * `\x1e<marker><ack> ...\n` cut out wherever it landed (the command writes concurrently).
 * Chunks are kept as they come and joined once; only a short tail is searched again.
 */
export class MarkedStream {
  readonly #end: Buffer;
  readonly #ack: Buffer | undefined;
  readonly #onAck: (text: string) => void;
  readonly #chunks: Buffer[] = [];
  #total = 0;
  #tail: Buffer = Buffer.alloc(0);
  #ackAt: [number, number] | undefined;
  /** Offset of the end line, and the text after `<end>` on it. */
  #endAt: number | undefined;
  endText = '';

  constructor(marker: string, end: string, ack?: string, onAck: (text: string) => void = () => {}) {
    this.#end = Buffer.from(`\x1e${marker}${end}`, 'latin1');
    this.#ack = ack === undefined ? undefined : Buffer.from(`\x1e${marker}${ack}`, 'latin1');
    this.#onAck = onAck;
  }

  get done(): boolean {
    return this.#endAt !== undefined;
  }

  push(chunk: Buffer): void {
    if (this.done) return;
    const window = this.#tail.length === 0 ? chunk : Buffer.concat([this.#tail, chunk]);
    const base = this.#total - this.#tail.length;
    this.#chunks.push(chunk);
    this.#total += chunk.length;
    if (this.#ack && this.#ackAt === undefined) {
      const at = window.indexOf(this.#ack);
      const nl = at < 0 ? -1 : window.indexOf(0x0a, at);
      if (nl >= 0) {
        this.#ackAt = [base + at, base + nl + 1];
        this.#onAck(window.subarray(at + this.#ack.length, nl).toString('latin1'));
      }
    }
    const at = window.indexOf(this.#end);
    const nl = at < 0 ? -1 : window.indexOf(0x0a, at);
    if (nl >= 0) {
      this.#endAt = base + at;
      this.endText = window.subarray(at + this.#end.length, nl).toString('latin1');
      return;
    }
    this.#tail = window.subarray(Math.max(0, window.length - TAIL));
  }

  /** The command's output: everything before the end line, without the ack line. */
  output(): string {
    const all =
      this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks);
    const end = this.#endAt ?? all.length;
    const ack = this.#ackAt;
    if (!ack || ack[0] >= end) return all.subarray(0, end).toString('utf8');
    return Buffer.concat([all.subarray(0, ack[0]), all.subarray(ack[1], end)]).toString('utf8');
  }
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
  /** Output before the hello (a login rc file may print): searched for the hello. */
  #early: Buffer = Buffer.alloc(0);
  #hello = false;
  #nextId = 0;
  #pending: Pending | undefined;
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
      ch.on('data', (chunk: Buffer) => {
        if (this.#hello) {
          this.#output(chunk, 'out');
          return;
        }
        this.#early = Buffer.concat([this.#early, chunk]);
        const at = this.#early.indexOf(`\x1e${this.#token}\n`);
        if (at < 0) {
          if (this.#early.length > 1 << 20) this.#close('failed'); // a chatty rc file, no helper
          return;
        }
        this.#early = Buffer.alloc(0);
        this.#hello = true;
        answer();
        this.state = 'ready';
      });
      ch.stderr.on('data', (chunk: Buffer) => {
        if (this.#hello) this.#output(chunk, 'err');
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

  /** Output of the running command (bytes with no command running are dropped). */
  #output(chunk: Buffer, stream: 'out' | 'err'): void {
    const p = this.#pending;
    if (!p) return;
    (stream === 'out' ? p.out : p.err).push(chunk);
    if (p.out.done && p.err.done) this.#finished(p);
  }

  #started(p: Pending, text: string): void {
    const pid = Number(text);
    if (!Number.isInteger(pid) || pid <= 1) {
      this.#close('failed');
      return;
    }
    p.pid = pid;
    this.#host.answered(p.token);
    // Given up on before the pid was known: end it now.
    if (p.cancelled) this.#signal(pid, 'KILL');
  }

  #finished(p: Pending): void {
    this.#pending = undefined;
    this.#host.answered(p.token);
    if (this.#stuckTimer) clearTimeout(this.#stuckTimer);
    this.#stuckTimer = undefined;
    const status = Number(p.out.endText.trim());
    if (!p.settled) {
      p.settled = true;
      p.cleanup();
      // A POSIX shell reports a command ended by signal n as 128 + n: read it back as that
      // signal (an explicit `exit 143` is read as SIGTERM too; see the README).
      const sig = status > 128 ? SIGNALS[status - 128] : undefined;
      p.resolve({
        stdout: p.out.output(),
        stderr: p.err.output(),
        exitCode: sig === undefined ? status : null,
        signal: sig ?? null,
      });
    }
    if (this.#closeWhenIdle) this.#close('closed');
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
      let disarm: () => void = () => undefined; // the caller's signal and deadline, once armed
      const marker = randomBytes(8).toString('hex');
      const p: Pending = {
        id,
        token: this.#host.requestSent(),
        out: new MarkedStream(marker, 'R ', 'A ', (text) => this.#started(p, text)),
        err: new MarkedStream(marker, 'E'),
        pid: undefined,
        settled: false,
        cancelled: false,
        resolve,
        reject,
        cleanup: () => disarm(),
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
      disarm = armCommandLimits(o, label, terminate);
      let request = `${id} ${lines.length} ${stdin === undefined ? 0 : 1} ${marker}\n${commandLine}\n`;
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
