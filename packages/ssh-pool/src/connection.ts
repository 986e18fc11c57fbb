// One pooled connection and the leases (sessions) handed out on it. A lease is one of the
// connection's `maxChannels` slots: it runs one exec channel at a time and shares the
// connection's long-lived SFTP session. A channel still closing after its lease was released
// (a timed-out command being killed) keeps its slot until it is really closed, so the number
// of sessions the server sees never exceeds `maxChannels` (+1 for SFTP).

import {
  AbortError,
  type Command,
  type ExecOptions,
  type ExecResult,
  ValidationError,
} from '@crystalmath/core';
import type { Client, ClientChannel, SFTPWrapper } from 'ssh2';
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
}

/** Timeouts the leases use. */
export interface LeaseSettings {
  readonly channelOpenTimeoutMs: number;
  readonly killGraceMs: number;
}

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
  closeReason: DisconnectReason | undefined;
  readonly #owner: ConnectionOwner;
  #sftp: Promise<SFTPWrapper> | undefined;
  #ended: Promise<void> | undefined;

  constructor(label: string, owner: ConnectionOwner) {
    this.id = `c${++nextId}`;
    this.label = label;
    this.#owner = owner;
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

  /** Opens an exec channel (throws when not connected). */
  openExec(
    line: string,
    cb: (err: Error | undefined, channel: ClientChannel | undefined) => void,
  ): void {
    this.client.exec(line, (err, channel) => cb(err, channel));
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
        const timer = setTimeout(() => {
          done = true;
          reject(
            new SshTimeoutError(
              `${this.label}: SFTP session did not open within ${openTimeoutMs} ms`,
            ),
          );
          this.#owner.retire(this, new Error('SFTP open timed out'));
        }, openTimeoutMs);
        const open = (attempt: number): void => {
          if (done) return;
          try {
            client.sftp((err, sftp) => {
              const delay = SESSION_LIMIT_RETRY_MS[attempt];
              if (err && isSessionLimit(err) && delay !== undefined && !done) {
                setTimeout(() => open(attempt + 1), delay);
                return;
              }
              clearTimeout(timer);
              if (done) {
                sftp?.end();
                return;
              }
              done = true;
              if (err) {
                reject(
                  new SshSftpError(
                    `${this.label}: cannot start the SFTP subsystem: ${err.message}`,
                    {
                      cause: err,
                      details: { host: this.label },
                    },
                  ),
                );
                return;
              }
              sftp.on('error', () => undefined);
              sftp.on('close', () => {
                if (this.#sftp === p) this.#sftp = undefined;
              });
              resolve(sftp);
            });
          } catch {
            clearTimeout(timer);
            done = true;
            reject(this.goneError('sftp'));
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
      const finish = (error?: unknown): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (error === undefined) resolve();
        else reject(error);
      };
      const timer = setTimeout(
        () => finish(new SshTimeoutError(`${this.label}: probe unanswered after ${timeoutMs} ms`)),
        timeoutMs,
      );
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
    this.#channelActive = true;
    this.#channelClosed = new Promise((resolve) => {
      this.#onChannelClosed = resolve;
    });
    const done = (): void => {
      this.#running = false;
    };
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
