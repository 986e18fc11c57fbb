// One pooled connection and the leases (sessions) handed out on it. A lease is one of the
// connection's `maxChannels` slots: it runs one exec channel at a time and shares the
// connection's long-lived SFTP session. A channel still closing after its lease was released
// (a timed-out command being killed) keeps its slot until it is really closed, so the number
// of sessions the server sees never exceeds `maxChannels` (+1 for SFTP).
//
// The connection also keeps what the pool needs to find a hung peer: every request sent and
// not yet answered (channel opens, exec starts, SFTP opens, pings) with the time it was sent,
// and when the server last sent anything. And it learns the server's session limit: a channel
// refused as over MaxSessions lowers its limit to the channels it held open, and the request
// waits in the connection's queue for one of them to close instead of failing.

import {
  AbortError,
  type Command,
  type ExecOptions,
  type ExecResult,
  ValidationError,
} from '@crystalmath/core';
import type { Client, SFTPWrapper } from 'ssh2';
import { CommandChannel } from './command-channel.js';
import { buildCommandLine } from './command-line.js';
import type { Established } from './connect.js';
import { destroyClient } from './connect.js';
import {
  SshChannelError,
  type SshError,
  SshPoolClosedError,
  SshSftpError,
  SshTimeoutError,
} from './errors.js';
import type { DisconnectReason } from './events.js';
import type { ProbeMethod } from './options.js';
import {
  type CommandHost,
  type ExecOpenCallback,
  isSessionLimit,
  runCommand,
  SESSION_LIMIT_RETRY_MS,
} from './remote-command.js';

/** `connecting` holds a reserved slot; only `ready` connections are handed out. */
export type ConnectionState = 'connecting' | 'ready' | 'probing' | 'retiring' | 'closed';

/** Options of a command run on a lease (the Transport's, minus cwd/env, which go into the line). */
export interface LeaseExecOptions {
  /** Bytes written to the command's stdin, which is then closed. */
  readonly stdin?: string | Uint8Array | undefined;
  /** SIGTERM the command (its whole process group) and throw `E_TRANSPORT_TIMEOUT` after this long. */
  readonly timeoutMs?: number | undefined;
  /** SIGTERM the command and throw `E_ABORTED` when this fires. */
  readonly signal?: AbortSignal | undefined;
  readonly onStdout?: ((chunk: Buffer) => void) | undefined;
  readonly onStderr?: ((chunk: Buffer) => void) | undefined;
}

/**
 * One session slot on a pooled connection, from `pool.acquire()` until `release()`.
 *
 * Run one command at a time on it (acquire more leases for parallel commands); file
 * operations go through `sftp()`, the connection's shared SFTP session.
 */
export interface SshLease {
  /** `user@host:port` of the connection. */
  readonly host: string;
  readonly connectionId: string;
  /** The underlying ssh2 client, for what this API does not cover. Do not end it. */
  readonly client: Client;
  /** True once released (or invalidated). */
  readonly released: boolean;
  /** Runs a Transport command: argv quoted by core's `shQuote`, or a script run by `sh -c`. */
  exec(command: Command, options?: ExecOptions): Promise<ExecResult>;
  /** Runs raw shell text with the remote login shell. Quote every user string yourself. */
  execCommandLine(commandLine: string, options?: LeaseExecOptions): Promise<ExecResult>;
  /** The connection's SFTP session (opened on first use, shared by all its leases). */
  sftp(): Promise<SFTPWrapper>;
  /** Gives the slot back. Idempotent. */
  release(): void;
  /** Gives the slot back and retires the connection (closed once its other sessions end). */
  invalidate(reason?: unknown): void;
}

/** What a connection needs from its pool. */
export interface ConnectionOwner {
  /** A slot of `connection` became free. */
  slotFreed(connection: PooledConnection): void;
  /** The connection dropped (peer, network, keep-alive). */
  connectionLost(connection: PooledConnection, error: unknown): void;
  /** A lease was released (its connection already retired when it was invalidated). */
  leaseReleased(lease: Lease): void;
  /** Stop handing out `connection`; close it once its sessions end. */
  retire(connection: PooledConnection, reason: unknown): void;
  /** The server refused a channel: `connection` now runs at most `limit` exec channels. */
  channelLimitLearned(connection: PooledConnection, limit: number): void;
  /** May `connection` start a command channel (the option, and the host has not refused one)? */
  commandChannelAllowed(connection: PooledConnection): boolean;
  /** The host refused the command channel's session (or needed it back): no more on this host. */
  commandChannelRefused(connection: PooledConnection): void;
  /** A command ran on `connection`, on its command channel or in an exec channel. */
  commandRan(connection: PooledConnection, via: 'channel' | 'exec'): void;
}

/** A channel open waiting in a connection's queue (over its learned limit) or in flight. */
interface ExecOpen {
  readonly line: string;
  readonly cb: ExecOpenCallback;
  /** Told true when the open goes to the server, false when it waits in the queue again. */
  readonly onSent: ((sent: boolean) => void) | undefined;
  /** Refusals of this open while the connection held no other channel. */
  refusals: number;
  /** Given up on by the caller before it was sent. */
  cancelled: boolean;
  /** Sent and not yet answered. */
  inFlight: boolean;
  /** Answers the caller now (the connection was declared hung). */
  abandon: ((error: SshError) => void) | undefined;
}

/** After a channel closed, the next queued open waits this long: OpenSSH frees a session only
 * after processing the packets already received, which may include that next open. */
const REOPEN_DELAY_MS = 3;
/** A refusal this soon after one of our channels closed is that race, not the server's limit. */
const RECENT_CLOSE_MS = 100;

/** Timeouts the leases use. */
export interface LeaseSettings {
  readonly channelOpenTimeoutMs: number;
  readonly killGraceMs: number;
  /** Run small commands on the connection's persistent command channel. */
  readonly commandChannel: boolean;
}

/** Helpers started in a row on one connection without one serving a command (one that keeps
 * dying is not retried forever). */
const MAX_HELPER_STARTS = 3;

let nextId = 0;

/** Internal: one connection of a host bucket. */
export class PooledConnection implements CommandHost {
  readonly id: string;
  readonly label: string;
  state: ConnectionState = 'connecting';
  established: Established | undefined;
  readonly leases = new Set<Lease>();
  /** Channels of released leases that are still closing. */
  orphans = 0;
  readonly createdAt = Date.now();
  readyAt = 0;
  lastUsedAt = Date.now();
  lastProbeAt = 0;
  /** When the server last sent anything on this connection (any byte on the socket). */
  lastHeardAt = 0;
  /** When the pool last pinged it while its sessions were in use. */
  lastBusyPingAt = 0;
  closeReason: DisconnectReason | undefined;
  /** Exec channels open or opening: what the server counts against its MaxSessions. */
  openChannels = 0;
  /** Exec channels this connection may hold: `maxChannels`, or less once the server refused one. */
  channelLimit: number;
  readonly #owner: ConnectionOwner;
  #sftp: Promise<SFTPWrapper> | undefined;
  #ended: Promise<void> | undefined;
  /** Requests sent and not yet answered: token -> when sent. */
  readonly #pending = new Map<number, number>();
  #nextToken = 0;
  readonly #queue: ExecOpen[] = [];
  readonly #inFlight = new Set<ExecOpen>();
  #lastChannelClosedAt = 0;
  #pumpTimer: NodeJS.Timeout | undefined;
  /** Rejects a pending SFTP open (the connection was declared hung). */
  #abandonSftp: ((error: SshError) => void) | undefined;
  /** The persistent command channel (see command-channel.ts), when one is open or opening. */
  commandChannel: CommandChannel | undefined;
  #helperStarts = 0;
  /** The helper was asked to give its session back: no exec channel opens until it has. */
  #helperLeaving = false;

  constructor(label: string, owner: ConnectionOwner, channelLimit: number) {
    this.id = `c${++nextId}`;
    this.label = label;
    this.#owner = owner;
    this.channelLimit = channelLimit;
  }

  /** Records a request sent to the server; `answered(token)` when its reply comes. */
  requestSent(): number {
    const token = ++this.#nextToken;
    this.#pending.set(token, Date.now());
    return token;
  }

  answered(token: number): void {
    this.#pending.delete(token);
  }

  /** When the oldest request still unanswered was sent, or undefined when none is. */
  oldestUnansweredAt(): number | undefined {
    let oldest: number | undefined;
    for (const at of this.#pending.values()) if (oldest === undefined || at < oldest) oldest = at;
    return oldest;
  }

  /**
   * A request has gone unanswered for `afterMs` while nothing at all came from the server for
   * as long: probably hanging. The pool routes no new caller to it (it is closed, or answers,
   * soon).
   */
  silentFor(afterMs: number, now: number): boolean {
    if (now - this.lastHeardAt < afterMs) return false;
    const oldest = this.oldestUnansweredAt();
    return oldest !== undefined && now - oldest >= afterMs;
  }

  /**
   * The connection was declared hung: callers whose channel has not opened yet (it ran
   * nothing) get `error` now, queued opens included, and a pending SFTP open fails.
   */
  abandonPending(error: SshError): void {
    for (const open of [...this.#queue, ...this.#inFlight]) {
      open.cancelled = true;
      open.abandon?.(error);
    }
    this.#queue.length = 0;
    this.#inFlight.clear();
    this.#abandonSftp?.(error);
  }

  /** Slots in use: leases plus channels still closing. */
  get used(): number {
    return this.leases.size + this.orphans;
  }

  get client(): Client {
    if (!this.established) throw new SshChannelError(`${this.label}: not connected`);
    return this.established.client;
  }

  /** Takes over an established connection and watches it for loss. */
  attach(established: Established): void {
    this.established = established;
    const lost = (error: unknown) => {
      if (this.state !== 'closed') this.#owner.connectionLost(this, error);
    };
    const { client, jumps, socket } = established;
    this.lastHeardAt = Date.now();
    socket.on('data', () => {
      this.lastHeardAt = Date.now();
    });
    client.on('error', lost);
    client.on('close', () => lost(undefined));
    for (const jump of jumps) {
      jump.on('error', lost);
      jump.on('close', () => lost(undefined));
    }
    socket.on('close', () => lost(undefined));
  }

  /** Not closed, and its socket still writable. */
  get alive(): boolean {
    const socket = this.established?.socket;
    return this.state !== 'closed' && socket !== undefined && !socket.destroyed && socket.writable;
  }

  /**
   * Opens an exec channel and starts `line` in it, or queues the open while the connection
   * holds its `channelLimit` channels. Returns a function that withdraws the open when it was
   * not sent yet (true) or reports that it was (false).
   */
  openExec(line: string, cb: ExecOpenCallback, onSent?: (sent: boolean) => void): () => boolean {
    const open: ExecOpen = {
      line,
      cb,
      onSent,
      refusals: 0,
      cancelled: false,
      inFlight: false,
      abandon: undefined,
    };
    if (this.state === 'closed' || !this.established) {
      cb(this.goneError('exec'), undefined);
      return () => false;
    }
    this.#queue.push(open);
    this.#pump();
    return () => {
      if (open.inFlight || open.cancelled) return false;
      open.cancelled = true;
      const at = this.#queue.indexOf(open);
      if (at >= 0) this.#queue.splice(at, 1);
      return true;
    };
  }

  /** Sends queued opens while the connection is under its channel limit. */
  #pump(): void {
    if (this.#pumpTimer || this.#helperLeaving) return;
    // A command channel holds a session of its own beyond `channelLimit` (8 exec channels +
    // SFTP + the helper = OpenSSH's default MaxSessions of 10).
    const limit = this.channelLimit + (this.commandChannel?.holdsSession ? 1 : 0);
    while (this.#queue.length > 0 && this.openChannels < limit) {
      const open = this.#queue.shift() as ExecOpen;
      if (!open.cancelled) this.#send(open);
    }
  }

  /** Pumps after REOPEN_DELAY_MS (see there). */
  #pumpSoon(): void {
    if (this.#pumpTimer || this.#queue.length === 0) return;
    this.#pumpTimer = setTimeout(() => {
      this.#pumpTimer = undefined;
      if (this.state !== 'closed') this.#pump();
    }, REOPEN_DELAY_MS);
    this.#pumpTimer.unref();
  }

  #channelClosed(): void {
    this.openChannels--;
    this.#lastChannelClosedAt = Date.now();
    this.#pumpSoon();
  }

  #send(open: ExecOpen): void {
    if (this.state === 'closed' || !this.established) {
      open.cb(this.goneError('exec'), undefined);
      return;
    }
    this.openChannels++;
    open.inFlight = true;
    this.#inFlight.add(open);
    const token = this.requestSent();
    let answered = false;
    const finish = (): boolean => {
      if (answered) return false;
      answered = true;
      open.inFlight = false;
      open.abandon = undefined;
      this.#inFlight.delete(open);
      this.answered(token);
      return true;
    };
    open.abandon = (error) => {
      if (!finish()) return;
      this.openChannels--;
      open.cb(error, undefined);
    };
    open.onSent?.(true);
    try {
      this.established.client.exec(open.line, (err, channel) => {
        if (!finish()) {
          // Abandoned (the connection was declared hung): a late channel ran nothing yet.
          if (channel) {
            channel.on('error', () => undefined);
            channel.close();
          }
          return;
        }
        if (err || !channel) {
          this.openChannels--;
          if (isSessionLimit(err) && !open.cancelled && this.state !== 'closed') {
            this.#refused(open, err as Error);
            return;
          }
          this.#pumpSoon();
          open.cb(err ?? new Error('no channel'), undefined);
          return;
        }
        channel.once('close', () => this.#channelClosed());
        open.cb(undefined, channel);
      });
    } catch (error) {
      if (finish()) this.openChannels--;
      open.cb(error as Error, undefined);
    }
  }

  /**
   * The server refused a session channel. Right after one of ours closed, that is OpenSSH
   * still counting it: retried shortly. Otherwise the server allows no more than the channels
   * this connection holds open: that becomes its limit, and the open waits for one to close.
   * With no channel open at all there is nothing to wait for: a few retries, then the error.
   */
  #refused(open: ExecOpen, err: Error): void {
    const raced = Date.now() - this.#lastChannelClosedAt < RECENT_CLOSE_MS;
    open.onSent?.(false);
    if (this.commandChannel?.holdsSession && !raced) {
      // The helper's session is the one too many: it gives way (now, or when its command
      // ends), and this host runs exec channels only. Nothing is learned from this refusal.
      this.#helperLeaving = true;
      this.#owner.commandChannelRefused(this);
      this.#queue.unshift(open);
      this.commandChannel.yieldSession();
      return;
    }
    if (this.openChannels > 0 && !raced) {
      if (this.openChannels < this.channelLimit) {
        this.channelLimit = this.openChannels;
        this.#owner.channelLimitLearned(this, this.channelLimit);
      }
      this.#queue.unshift(open);
      this.#pump();
      return;
    }
    const delay = SESSION_LIMIT_RETRY_MS[open.refusals++];
    if (delay === undefined) {
      open.cb(err, undefined);
      this.#pumpSoon();
      return;
    }
    const timer = setTimeout(() => {
      if (open.cancelled) return;
      this.#queue.unshift(open);
      this.#pump();
    }, delay);
    timer.unref();
  }

  /**
   * The command channel if it can take a command now; otherwise undefined, and a helper is
   * started in the background when none is open (the command at hand uses an exec channel).
   */
  idleCommandChannel(startTimeoutMs: number): CommandChannel | undefined {
    const ch = this.commandChannel;
    if (ch) {
      if (!ch.idle) return undefined;
      this.#helperStarts = 0; // it works: only helpers failing in a row count against the limit
      return ch;
    }
    if (
      this.state === 'closed' ||
      !this.established ||
      this.#helperLeaving ||
      this.#helperStarts >= MAX_HELPER_STARTS ||
      this.openChannels >= this.channelLimit ||
      !this.#owner.commandChannelAllowed(this)
    ) {
      return undefined;
    }
    this.#helperStarts++;
    const started = new CommandChannel(this, startTimeoutMs, (reason) => {
      if (this.commandChannel === started) this.commandChannel = undefined;
      if (reason === 'refused') this.#owner.commandChannelRefused(this);
    });
    if (started.state !== 'closed') this.commandChannel = started;
    return undefined;
  }

  /** Opens the command channel's exec channel: counted in `openChannels` until it closes. */
  openHelper(line: string, cb: ExecOpenCallback): void {
    if (this.state === 'closed' || !this.established) {
      cb(this.goneError('command channel'), undefined);
      return;
    }
    this.openChannels++;
    let counted = true;
    const uncount = (): void => {
      if (!counted) return;
      counted = false;
      this.openChannels--;
      this.#lastChannelClosedAt = Date.now();
      if (this.#helperLeaving && !this.commandChannel?.holdsSession) this.#helperLeaving = false;
      this.#pumpSoon();
    };
    try {
      this.established.client.exec(line, (err, channel) => {
        if (err || !channel) {
          uncount();
          cb(err ?? new Error('no channel'), undefined);
          return;
        }
        channel.once('close', uncount);
        cb(undefined, channel);
      });
    } catch (error) {
      uncount();
      cb(error as Error, undefined);
    }
  }

  /**
   * Runs a short command (a `kill`) in a channel outside the slot accounting: it is rare,
   * brief and must not wait for a slot. Retried a few times if the server's session limit
   * refuses it; closed after 5 s whatever happens.
   */
  fireAndForget(line: string): void {
    const open = (attempt: number): void => {
      if (this.state === 'closed' || !this.established) return;
      try {
        this.established.client.exec(line, (err, channel) => {
          const delay = SESSION_LIMIT_RETRY_MS[attempt];
          if (err) {
            if (isSessionLimit(err) && delay !== undefined)
              setTimeout(() => open(attempt + 1), delay).unref();
            return;
          }
          const timer = setTimeout(() => channel.close(), 5_000);
          timer.unref();
          channel.on('error', () => undefined);
          channel.on('close', () => clearTimeout(timer));
          channel.resume();
          channel.stderr.resume();
          channel.end();
        });
      } catch {
        // The connection is gone.
      }
    };
    open(0);
  }

  /** The error for an operation on a connection that is gone. */
  goneError(what: string): SshError {
    if (this.closeReason === 'pool-closed') {
      return new SshPoolClosedError(`${this.label}: ${what}: the pool was closed`);
    }
    return new SshChannelError(`${this.label}: ${what}: the connection was lost`, {
      details: { host: this.label, started: false },
    });
  }

  /** The connection's one SFTP session, opened on first use and reopened if it closes. */
  sftp(openTimeoutMs: number): Promise<SFTPWrapper> {
    if (this.state === 'closed' || !this.established) {
      return Promise.reject(this.goneError('sftp'));
    }
    if (!this.#sftp) {
      const client = this.established.client;
      const p = new Promise<SFTPWrapper>((resolve, reject) => {
        let done = false;
        let token: number | undefined;
        const settle = (error: unknown, sftp?: SFTPWrapper): void => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          if (token !== undefined) this.answered(token);
          this.#abandonSftp = undefined;
          if (error === undefined) resolve(sftp as SFTPWrapper);
          else reject(error);
        };
        this.#abandonSftp = (error) => settle(error);
        const timer = setTimeout(() => {
          settle(
            new SshTimeoutError(
              `${this.label}: SFTP session did not open within ${openTimeoutMs} ms`,
            ),
          );
          this.#owner.retire(this, new Error('SFTP open timed out'));
        }, openTimeoutMs);
        const open = (attempt: number): void => {
          if (done) return;
          token = this.requestSent();
          try {
            client.sftp((err, sftp) => {
              if (token !== undefined) this.answered(token);
              token = undefined;
              const delay = SESSION_LIMIT_RETRY_MS[attempt];
              if (err && isSessionLimit(err) && delay !== undefined && !done) {
                setTimeout(() => open(attempt + 1), delay);
                return;
              }
              if (done) {
                sftp?.end();
                return;
              }
              if (err) {
                settle(
                  new SshSftpError(
                    `${this.label}: cannot start the SFTP subsystem: ${err.message}`,
                    { cause: err, details: { host: this.label } },
                  ),
                );
                return;
              }
              sftp.on('error', () => undefined);
              sftp.on('close', () => {
                if (this.#sftp === p) this.#sftp = undefined;
              });
              settle(undefined, sftp);
            });
          } catch {
            settle(this.goneError('sftp'));
          }
        };
        open(0);
      });
      this.#sftp = p;
      p.catch(() => {
        if (this.#sftp === p) this.#sftp = undefined;
      });
    }
    return this.#sftp;
  }

  /**
   * Checks the connection answers: an SSH keep-alive request (`ping`: no process starts on the
   * server) or `true` in a channel (`exec`). Rejects after `timeoutMs`.
   */
  ping(timeoutMs: number, method: ProbeMethod): Promise<void> {
    return new Promise((resolve, reject) => {
      let done = false;
      const token = this.requestSent();
      const finish = (error?: unknown): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.answered(token);
        if (error === undefined) resolve();
        else reject(error);
      };
      const timer = setTimeout(
        () => finish(new SshTimeoutError(`${this.label}: probe unanswered after ${timeoutMs} ms`)),
        timeoutMs,
      );
      timer.unref();
      let client: Client;
      try {
        client = this.client;
      } catch (error) {
        finish(error);
        return;
      }
      // ssh2's own keep-alive mechanism: a global request answered in order; the callback
      // queue is where ssh2 matches the reply. Typed structurally, checked at run time.
      const internals = client as unknown as {
        _protocol?: { ping?: () => void };
        _callbacks?: Array<(error?: unknown) => void>;
      };
      if (
        method === 'ping' &&
        typeof internals._protocol?.ping === 'function' &&
        Array.isArray(internals._callbacks)
      ) {
        // Success and failure replies both prove the server answers; only close errors count.
        internals._callbacks.push((error) => finish(error instanceof Error ? error : undefined));
        try {
          internals._protocol.ping();
        } catch (error) {
          finish(error);
        }
        return;
      }
      try {
        client.exec('true', (err, channel) => {
          if (err) return finish(err);
          let code: number | null = null;
          channel.on('exit', (c: number | null) => {
            code = c;
          });
          channel.on('error', () => undefined);
          channel.on('close', () =>
            finish(code === 0 ? undefined : new Error(`probe command exited with ${code}`)),
          );
          channel.end();
          channel.resume();
        });
      } catch (error) {
        finish(error);
      }
    });
  }

  /** Closes the connection: gracefully (disconnect) or at once; resolves when the socket is closed. */
  end(force: boolean): Promise<void> {
    if (this.#ended) return this.#ended;
    // Opens still queued or unanswered never ran: their callers learn it now.
    if (this.#pumpTimer) clearTimeout(this.#pumpTimer);
    this.abandonPending(this.goneError('exec'));
    this.commandChannel?.close();
    const est = this.established;
    if (!est) {
      this.#ended = Promise.resolve();
      return this.#ended;
    }
    this.#ended = new Promise<void>((resolve) => {
      const { client, jumps, socket } = est;
      if (socket.destroyed) {
        resolve();
        return;
      }
      const destroyAll = (): void => {
        destroyClient(client);
        for (const j of [...jumps].reverse()) destroyClient(j);
        socket.destroy();
      };
      const timer = setTimeout(destroyAll, 1_000);
      timer.unref();
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      if (force) {
        destroyAll();
        return;
      }
      try {
        client.end();
        for (const j of [...jumps].reverse()) j.end();
      } catch {
        destroyAll();
      }
    });
    return this.#ended;
  }

  /** A channel of a released lease finished closing. */
  orphanClosed(): void {
    this.orphans--;
    this.#owner.slotFreed(this);
  }
}

/** Internal implementation of `SshLease`. */
export class Lease implements SshLease {
  readonly connection: PooledConnection;
  readonly #owner: ConnectionOwner;
  readonly #settings: LeaseSettings;
  #released = false;
  #running = false;
  /** An exec channel of this lease is open or opening. */
  #channelActive = false;
  /** Released while a channel was active: the channel frees the slot when it closes. */
  #orphaned = false;
  /** Resolves when the active channel has closed. */
  #channelClosed: Promise<void> = Promise.resolve();
  #onChannelClosed: () => void = () => undefined;

  constructor(connection: PooledConnection, owner: ConnectionOwner, settings: LeaseSettings) {
    this.connection = connection;
    this.#owner = owner;
    this.#settings = settings;
  }

  get host(): string {
    return this.connection.label;
  }

  get connectionId(): string {
    return this.connection.id;
  }

  get client(): Client {
    return this.connection.client;
  }

  get released(): boolean {
    return this.#released;
  }

  release(): void {
    this.#giveBack(false, undefined);
  }

  invalidate(reason?: unknown): void {
    this.#giveBack(true, reason);
  }

  #giveBack(invalidate: boolean, reason: unknown): void {
    if (invalidate) this.#owner.retire(this.connection, reason);
    if (this.#released) return;
    this.#released = true;
    if (this.#channelActive) {
      this.#orphaned = true;
      this.connection.orphans++;
    }
    this.connection.leases.delete(this);
    this.#owner.leaseReleased(this);
  }

  #channelDone(): void {
    if (!this.#channelActive) return;
    this.#channelActive = false;
    this.#onChannelClosed();
    if (this.#orphaned) {
      this.#orphaned = false;
      this.connection.orphanClosed();
    }
  }

  sftp(): Promise<SFTPWrapper> {
    if (this.#released) {
      return Promise.reject(new ValidationError('lease', 'was released: acquire a new one'));
    }
    return this.connection.sftp(this.#settings.channelOpenTimeoutMs);
  }

  exec(command: Command, options: ExecOptions = {}): Promise<ExecResult> {
    let line: string;
    try {
      line = buildCommandLine(command, { cwd: options.cwd, env: options.env });
    } catch (error) {
      return Promise.reject(error);
    }
    return this.execCommandLine(line, options);
  }

  execCommandLine(commandLine: string, options: LeaseExecOptions = {}): Promise<ExecResult> {
    if (this.#released) {
      return Promise.reject(new ValidationError('lease', 'was released: acquire a new one'));
    }
    if (this.#running) {
      return Promise.reject(
        new ValidationError('lease', 'runs one command at a time: acquire another lease'),
      );
    }
    if (options.signal?.aborted) {
      return Promise.reject(
        new AbortError('[ssh-pool] exec aborted', { cause: options.signal.reason }),
      );
    }
    if (this.#channelActive) {
      // The previous command was given up on and its channel is still closing (at most two
      // kill graces): wait, so this lease never holds two channels.
      this.#running = true;
      return this.#channelClosed.then(() => {
        this.#running = false;
        return this.execCommandLine(commandLine, options);
      });
    }
    const conn = this.connection;
    if (conn.state === 'closed' || !conn.established) {
      return Promise.reject(conn.goneError('exec'));
    }
    this.#running = true;
    const done = (): void => {
      this.#running = false;
    };
    // The command channel when it is free (and the output is not streamed to callbacks): one
    // round trip. Otherwise, or when it cannot take this command, an exec channel.
    if (this.#settings.commandChannel && !options.onStdout && !options.onStderr) {
      const viaChannel = conn
        .idleCommandChannel(this.#settings.channelOpenTimeoutMs)
        ?.run(commandLine, {
          stdin: options.stdin,
          timeoutMs: options.timeoutMs,
          signal: options.signal,
          killGraceMs: this.#settings.killGraceMs,
        });
      if (viaChannel) {
        this.#owner.commandRan(conn, 'channel');
        return viaChannel.finally(done);
      }
    }
    this.#owner.commandRan(conn, 'exec');
    this.#channelActive = true;
    this.#channelClosed = new Promise((resolve) => {
      this.#onChannelClosed = resolve;
    });
    return runCommand(conn, commandLine, {
      ...options,
      channelOpenTimeoutMs: this.#settings.channelOpenTimeoutMs,
      killGraceMs: this.#settings.killGraceMs,
      onChannelClosed: () => this.#channelDone(),
      onTransportFailure: (error) => {
        // A dead socket is a lost connection (closed now); a live one is retired.
        if (!conn.alive) this.#owner.connectionLost(conn, error);
        this.invalidate(error);
      },
    }).finally(done);
  }
}
