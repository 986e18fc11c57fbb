// Runs one command line in an exec channel: streams and collects output, reports exit code or
// signal, and on timeout or abort ends the command's whole process group.
//
// Ending it takes two routes, because one is not always there: the SSH `signal` request
// (OpenSSH delivers it with killpg to the session's process group, but not for root logins,
// whose sessions run without privilege separation) and `kill -s SIG -- -PGID` in a second
// channel. The process group id is the session leader's pid, which the command line prints to
// stderr first, framed by a random marker the reader strips again, so callers never see it.

import { randomBytes } from 'node:crypto';
import {
  AbortError,
  type CrystalMathError,
  type ExecResult,
  TransportError,
} from '@crystalmath/core';
import type { ClientChannel } from 'ssh2';
import { SshChannelError, SshPoolClosedError, SshTimeoutError } from './errors.js';

/** A session channel refused as over the server's MaxSessions (see isSessionLimit). */
export const SESSION_LIMIT_RETRY_MS = [2, 5, 10, 20, 40, 80, 160, 320] as const;

/**
 * OpenSSH refuses a session above MaxSessions with a bare "open failed" (reason 2, connect
 * failed; other servers say 1, administratively prohibited). A session we just closed can
 * still count there for a moment (the server frees it after processing the packets already
 * received, which may include our next open), so such a refusal of a session channel is
 * retried after a short pause on the same connection before it becomes an error.
 */
export function isSessionLimit(error: unknown): boolean {
  const reason = (error as { reason?: unknown } | null | undefined)?.reason;
  return reason === 1 || reason === 2;
}

/** Called once with the exec channel, or with why there is none. */
export type ExecOpenCallback = (err: Error | undefined, channel: ClientChannel | undefined) => void;

/** The parts of a connection a command needs. */
export interface CommandHost {
  readonly label: string;
  /** 'closed' once the connection is gone. */
  readonly state: string;
  readonly closeReason: string | undefined;
  /**
   * Opens an exec channel and starts `line` in it; the request may wait in the connection's
   * queue first (the server's session limit). `onSent(true)` when it goes to the server,
   * `onSent(false)` when a refusal puts it back in the queue.
   * The function returned withdraws a request not sent yet (true) or says it was sent (false).
   */
  openExec(line: string, cb: ExecOpenCallback, onSent?: (sent: boolean) => void): () => boolean;
  /** Runs a short command in a channel of its own, ignoring its result (bounded in time). */
  fireAndForget(line: string): void;
}

export interface RunCommandOptions {
  readonly stdin?: string | Uint8Array | undefined;
  readonly timeoutMs?: number | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly onStdout?: ((chunk: Buffer) => void) | undefined;
  readonly onStderr?: ((chunk: Buffer) => void) | undefined;
  readonly channelOpenTimeoutMs: number;
  readonly killGraceMs: number;
  /** The channel is closed (or never opened): its session slot is free. */
  readonly onChannelClosed: () => void;
  /** The connection failed this command in a way that says it should not be used again. */
  readonly onTransportFailure: (error: unknown) => void;
}

const MARK = 0x1e; // ASCII record separator: frames the pid marker on stderr
const MAX_HELD = 64 * 1024;

/**
 * Strips the `\x1e<tag><pid>\x1e` marker from the start of a stderr stream (rc files of the
 * login shell may print before it) and reports the pid.
 */
export class PidMarkerReader {
  readonly #tag: Buffer;
  readonly #emit: (chunk: Buffer) => void;
  readonly #onPid: (pid: number) => void;
  #held: Buffer | undefined = Buffer.alloc(0);

  constructor(tag: string, emit: (chunk: Buffer) => void, onPid: (pid: number) => void) {
    this.#tag = Buffer.from([MARK, ...Buffer.from(tag, 'latin1')]);
    this.#emit = emit;
    this.#onPid = onPid;
  }

  push(chunk: Buffer): void {
    if (this.#held === undefined) {
      this.#emit(chunk);
      return;
    }
    const buf = this.#held.length === 0 ? chunk : Buffer.concat([this.#held, chunk]);
    const at = buf.indexOf(this.#tag);
    if (at >= 0) {
      const end = buf.indexOf(MARK, at + this.#tag.length);
      if (end >= 0) {
        const pid = Number(buf.subarray(at + this.#tag.length, end).toString('latin1'));
        if (Number.isInteger(pid) && pid > 1) this.#onPid(pid);
        this.#held = undefined;
        const rest = Buffer.concat([buf.subarray(0, at), buf.subarray(end + 1)]);
        if (rest.length > 0) this.#emit(rest);
        return;
      }
    }
    if (buf.length > MAX_HELD) {
      this.flush(buf);
      return;
    }
    this.#held = buf;
  }

  /** End of stream (or too much before the marker): pass on what is held. */
  flush(buf = this.#held): void {
    this.#held = undefined;
    if (buf && buf.length > 0) this.#emit(buf);
  }
}

/**
 * Arms a command's two limits, the caller's AbortSignal and its `timeoutMs`, each ending the
 * command through `terminate` with its typed error (AbortError, E_TRANSPORT_TIMEOUT). Returns
 * the disarm, to call once the command has settled. Shared by exec channels and the command
 * channel, so both end a command the same way.
 */
export function armCommandLimits(
  o: { readonly signal?: AbortSignal | undefined; readonly timeoutMs?: number | undefined },
  label: string,
  terminate: (error: CrystalMathError) => void,
): () => void {
  const onAbort = (): void => {
    terminate(new AbortError('[ssh-pool] exec aborted', { cause: o.signal?.reason }));
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const runTimer =
    o.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          terminate(
            new TransportError(
              'E_TRANSPORT_TIMEOUT',
              `[ssh-pool] ${label}: command timed out after ${o.timeoutMs} ms`,
              { details: { host: label, timeoutMs: o.timeoutMs } },
            ),
          );
        }, o.timeoutMs);
  return () => {
    if (runTimer) clearTimeout(runTimer);
    o.signal?.removeEventListener('abort', onAbort);
  };
}

function toBuffer(data: string | Uint8Array): Buffer {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
}

/** Sends a signal on a session channel, also after our side sent EOF (ssh2's public
 * `signal()` refuses once the channel is no longer writable, which is when we need it). */
function sendSignal(channel: ClientChannel, name: 'TERM' | 'KILL'): void {
  const ch = channel as unknown as {
    outgoing?: { id?: number; state?: string };
    _client?: { _protocol?: { signal?: (id: number, name: string) => void } };
  };
  const state = ch.outgoing?.state;
  const id = ch.outgoing?.id;
  const protocol = ch._client?._protocol;
  try {
    if (
      (state === 'open' || state === 'eof') &&
      id !== undefined &&
      typeof protocol?.signal === 'function'
    ) {
      protocol.signal(id, name);
    } else {
      channel.signal(name);
    }
  } catch {
    // The connection is gone: nothing to signal.
  }
}

/** Runs `commandLine` on `host` (see the module comment). */
export function runCommand(
  host: CommandHost,
  commandLine: string,
  o: RunCommandOptions,
): Promise<ExecResult> {
  const label = host.label;
  const tag = `cm${randomBytes(6).toString('hex')}:`;
  const line = `printf '\\036${tag}%d\\036' "$$" >&2\n${commandLine}`;

  return new Promise<ExecResult>((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let channel: ClientChannel | undefined;
    let pgid: number | undefined;
    let exit: { code: number | null; signal: string | null } | undefined;
    let settled = false; // the caller has its answer
    let cancelled = false; // timed out or aborted by the caller
    let closed = false; // the channel is gone (or never opened): its slot is free
    let disarm: () => void = () => undefined; // the caller's signal and deadline, once armed
    let killTimer: NodeJS.Timeout | undefined;
    let stuckTimer: NodeJS.Timeout | undefined;
    let openTimer: NodeJS.Timeout | undefined;
    let withdraw: () => boolean = () => false;

    const settle = (error: unknown, result?: ExecResult): void => {
      if (settled) return;
      settled = true;
      disarm();
      if (error !== undefined) reject(error);
      else resolve(result as ExecResult);
    };

    const markClosed = (): void => {
      if (closed) return;
      closed = true;
      if (openTimer) clearTimeout(openTimer);
      if (killTimer) clearTimeout(killTimer);
      if (stuckTimer) clearTimeout(stuckTimer);
      o.onChannelClosed();
    };

    const stderrReader = new PidMarkerReader(
      tag,
      (chunk) => {
        stderr.push(chunk);
        if (!settled) o.onStderr?.(chunk);
      },
      (pid) => {
        pgid = pid;
        // Given up on before the pid arrived: the signal route may not work, take the other.
        if (cancelled && !closed) host.fireAndForget(`kill -s TERM -- -${pid} 2>/dev/null`);
      },
    );

    const onClosed = (): void => {
      if (closed) return;
      markClosed();
      stderrReader.flush();
      if (settled) return;
      if (exit) {
        settle(undefined, {
          stdout: Buffer.concat(stdout).toString('utf8'),
          stderr: Buffer.concat(stderr).toString('utf8'),
          exitCode: exit.code,
          signal: exit.signal,
        });
        return;
      }
      // No exit status: the connection dropped (or the server gave up) while the command
      // ran. It may have run, so this is reported as started and never retried blindly.
      const error =
        host.closeReason === 'pool-closed'
          ? new SshPoolClosedError(`${label}: exec: the pool was closed while the command ran`)
          : new SshChannelError(
              host.state === 'closed'
                ? `${label}: the connection was lost while the command ran`
                : `${label}: the channel closed without an exit status`,
              { details: { host: label, started: true } },
            );
      settle(error);
      o.onTransportFailure(error);
    };

    const signalGroup = (ch: ClientChannel, sig: 'TERM' | 'KILL'): void => {
      sendSignal(ch, sig);
      if (pgid !== undefined) host.fireAndForget(`kill -s ${sig} -- -${pgid} 2>/dev/null`);
    };

    // Timeout and abort: SIGTERM to the command's process group, then SIGKILL and close after
    // the grace. The caller gets its error at once; the slot stays taken until the channel
    // is really closed.
    const terminate = (error: CrystalMathError): void => {
      if (settled) return;
      settle(error);
      cancelled = true;
      if (!channel && !closed && withdraw()) {
        markClosed(); // still queued on its connection: it never reached the server
        return;
      }
      if (!channel || closed) return; // still opening: killed as soon as it opens
      const ch = channel;
      signalGroup(ch, 'TERM');
      killTimer = setTimeout(() => {
        if (closed) return;
        signalGroup(ch, 'KILL');
        try {
          ch.close();
        } catch {
          // already closing
        }
        // Still open a grace after SIGKILL: the process cannot be killed (uninterruptible
        // I/O) or the connection no longer answers. Free the slot and retire the connection.
        stuckTimer = setTimeout(
          () => {
            if (closed) return;
            markClosed();
            o.onTransportFailure(
              new SshTimeoutError(`${label}: a killed command's channel did not close`),
            );
          },
          Math.max(o.killGraceMs, 5_000),
        );
        stuckTimer.unref();
      }, o.killGraceMs);
      killTimer.unref();
    };

    disarm = armCommandLimits(o, label, terminate);
    // A channel that does not open in time means a connection that no longer answers (the
    // pool usually finds out sooner: see probeTimeoutMs). Counted from when the request was
    // sent, not while it waited in the connection's queue for a channel to close.
    const startOpenTimer = (sent: boolean): void => {
      // Sent again after a refusal: counted from then; waiting in the queue is not counted.
      if (openTimer) clearTimeout(openTimer);
      openTimer = undefined;
      if (!sent) return;
      openTimer = setTimeout(() => {
        if (channel || closed) return;
        markClosed();
        const error = new SshTimeoutError(
          `${label}: exec channel did not open within ${o.channelOpenTimeoutMs} ms`,
          { details: { host: label, started: false } },
        );
        settle(error);
        o.onTransportFailure(error);
      }, o.channelOpenTimeoutMs);
    };

    const onOpen = (err: Error | undefined, stream: ClientChannel | undefined): void => {
      if (openTimer) clearTimeout(openTimer);
      if (closed) {
        // Given up on while opening: close the late channel.
        if (stream) {
          stream.on('error', () => undefined);
          stream.close();
        }
        return;
      }
      if (err || !stream) {
        markClosed();
        const error =
          err instanceof SshChannelError || err instanceof SshPoolClosedError
            ? err
            : new SshChannelError(
                `${label}: cannot open an exec channel: ${err?.message ?? 'no channel'}`,
                { cause: err, details: { host: label, started: false } },
              );
        settle(error);
        // A server that refuses sessions while none of ours is open is still connected.
        if (!isSessionLimit(err)) o.onTransportFailure(error);
        return;
      }
      channel = stream;
      stream.on('data', (chunk: Buffer) => {
        stdout.push(chunk);
        if (!settled) o.onStdout?.(chunk);
      });
      stream.stderr.on('data', (chunk: Buffer) => stderrReader.push(chunk));
      stream.on('exit', (code: number | null | undefined, signal?: string) => {
        exit =
          typeof code === 'number'
            ? { code, signal: null }
            : { code: null, signal: signal ?? null };
      });
      stream.on('error', () => undefined);
      stream.stderr.on('error', () => undefined);
      stream.on('close', onClosed);
      if (cancelled) {
        // Aborted or timed out before the channel opened: it must not run on.
        signalGroup(stream, 'KILL');
        stream.close();
        return;
      }
      if (o.stdin !== undefined) stream.end(toBuffer(o.stdin));
      else stream.end();
    };

    if (cancelled) {
      markClosed(); // given up on before it ever opened
    } else {
      withdraw = host.openExec(line, onOpen, startOpenTimer);
    }
  });
}
