// Opens one authenticated ssh2 connection, hop by hop through jump hosts (`forwardOut`
// chains). Every socket gets `setNoDelay(true)`: with Nagle's algorithm on, each exec waits for
// a delayed ACK (44 ms instead of 4 ms on loopback). Host keys are checked against
// known_hosts before authentication; secrets are read lazily and cached per pool.

import { readFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { AbortError } from '@crystalmath/core';
import ssh2, {
  type AnyAuthMethod,
  type AuthenticationType,
  type Client,
  type ClientChannel,
  type ConnectConfig,
  type ParsedKey,
} from 'ssh2';

// ssh2 is CommonJS: its named exports are read from the default export.
const { Client: SshClient, utils } = ssh2;

import {
  connectErrorFrom,
  SshAuthError,
  SshConfigError,
  SshConnectError,
  type SshError,
  SshHostKeyError,
  SshTimeoutError,
} from './errors.js';
import {
  type KnownHostEntry,
  knownKeyTypes,
  readKnownHosts,
  verifyHostKey,
} from './known-hosts.js';
import type { NormalizedHost } from './options.js';

/**
 * Secrets of one host config, asked for once and kept in memory for the pool's life: the
 * parsed (decrypted) private key, the password. A failed authentication forgets the password
 * so the next connection asks again.
 */
export class Credentials {
  readonly #host: NormalizedHost;
  #key: Promise<ParsedKey | undefined> | undefined;
  #password: Promise<string> | undefined;

  constructor(host: NormalizedHost) {
    this.#host = host;
  }

  /** The parsed private key, or undefined when the host has none configured. */
  privateKey(): Promise<ParsedKey | undefined> {
    if (!this.#key) {
      const p = this.#loadKey();
      this.#key = p;
      // A failure is not cached: the next connection reads the file (and asks) again.
      p.catch(() => {
        if (this.#key === p) this.#key = undefined;
      });
    }
    return this.#key;
  }

  async #loadKey(): Promise<ParsedKey | undefined> {
    const { config, privateKeyPath, label } = this.#host;
    let material: Buffer | string | undefined = config.privateKey;
    if (material === undefined && privateKeyPath !== undefined) {
      try {
        material = await readFile(privateKeyPath);
      } catch (cause) {
        throw new SshConfigError(
          `${label}: cannot read privateKeyPath ${privateKeyPath}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}`,
          { cause, details: { host: label, privateKeyPath } },
        );
      }
    }
    if (material === undefined) return undefined;
    let parsed = utils.parseKey(material);
    if (parsed instanceof Error && /no passphrase given/i.test(parsed.message)) {
      if (!config.passphrase) {
        throw new SshConfigError(
          `${label}: the private key is encrypted and no passphrase callback was given`,
          { details: { host: label } },
        );
      }
      let passphrase: string;
      try {
        passphrase = await config.passphrase();
      } catch (cause) {
        throw new SshAuthError(`${label}: the passphrase callback failed`, {
          cause,
          details: { host: label },
        });
      }
      parsed = utils.parseKey(material, passphrase);
      if (parsed instanceof Error) {
        throw new SshAuthError(`${label}: cannot decrypt the private key (wrong passphrase?)`, {
          details: { host: label },
        });
      }
    }
    if (parsed instanceof Error) {
      throw new SshConfigError(`${label}: cannot parse the private key: ${parsed.message}`, {
        details: { host: label },
      });
    }
    const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
    if (!key?.isPrivateKey()) {
      throw new SshConfigError(`${label}: the key given is not a private key`, {
        details: { host: label },
      });
    }
    return key;
  }

  password(): Promise<string> {
    const ask = this.#host.config.password;
    if (!ask) return Promise.reject(new SshConfigError('no password callback'));
    if (!this.#password) {
      const p = ask();
      this.#password = p;
      p.catch(() => {
        if (this.#password === p) this.#password = undefined;
      });
    }
    return this.#password;
  }

  forgetPassword(): void {
    this.#password = undefined;
  }
}

/** The parts of the pool's options a connection attempt needs. */
export interface ConnectOptions {
  readonly connectTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly keepaliveCountMax: number;
  readonly credentials: (host: NormalizedHost) => Credentials;
  readonly signal?: AbortSignal;
}

/** An established connection: the target's client and the jump clients under it. */
export interface Established {
  readonly client: Client;
  /** Jump clients, first hop first. */
  readonly jumps: readonly Client[];
  /** The TCP socket to the first hop. */
  readonly socket: Socket;
}

// ssh2's default host key algorithms (ssh2 1.x, Node >= 12 has Ed25519), in its order.
const DEFAULT_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
] as const;

/**
 * Host key algorithms with those of keys on record first, as OpenSSH orders them: a server
 * with an RSA key on record must not be asked for its Ed25519 key and then refused.
 */
export function hostKeyAlgorithms(knownTypes: readonly string[]): string[] {
  const preferred: string[] = [];
  for (const type of knownTypes) {
    if (type === 'ssh-rsa') preferred.push('rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa');
    else if (type === 'ssh-dss') preferred.push('ssh-dss');
    else if ((DEFAULT_HOST_KEY_ALGORITHMS as readonly string[]).includes(type))
      preferred.push(type);
  }
  return [...new Set([...preferred, ...DEFAULT_HOST_KEY_ALGORITHMS])];
}

type AuthStep = {
  readonly type: AuthenticationType;
  readonly make: () => Promise<AnyAuthMethod | undefined>;
};

/** Tries the public key, then the agent, then password and keyboard-interactive (lazily asked). */
function authHandlerFor(
  hop: NormalizedHost,
  credentials: Credentials,
  key: ParsedKey | undefined,
  onError: (error: unknown) => void,
): NonNullable<ConnectConfig['authHandler']> {
  const username = hop.username;
  const steps: AuthStep[] = [];
  if (key)
    steps.push({ type: 'publickey', make: async () => ({ type: 'publickey', username, key }) });
  if (hop.config.agent) {
    const agent = hop.config.agent;
    steps.push({ type: 'agent', make: async () => ({ type: 'agent', username, agent }) });
  }
  if (hop.config.password) {
    steps.push({
      type: 'password',
      make: async () => ({ type: 'password', username, password: await credentials.password() }),
    });
    steps.push({
      type: 'keyboard-interactive',
      make: async () => {
        const password = await credentials.password();
        return {
          type: 'keyboard-interactive',
          username,
          // Answer password-like prompts (no echo) with the password, others with ''.
          prompt: (_name, _instructions, _lang, prompts, finish) =>
            finish(prompts.map((p) => (p.echo ? '' : password))),
        };
      },
    });
  }
  let next = 0;
  let askedServer = false;
  return (methodsLeft, _partial, callback) => {
    void (async () => {
      while (next < steps.length) {
        const step = steps[next] as AuthStep;
        const lazy = step.type === 'password' || step.type === 'keyboard-interactive';
        if (lazy && !Array.isArray(methodsLeft) && !askedServer) {
          // Learn which methods the server takes (a "none" attempt) before asking anyone
          // for a password it would refuse anyway.
          askedServer = true;
          return callback({ type: 'none', username });
        }
        next++;
        if (Array.isArray(methodsLeft) && !methodsLeft.includes(step.type)) continue;
        const method = await step.make();
        if (method) return callback(method);
      }
      callback(false as unknown as AuthenticationType);
    })().catch((error: unknown) => {
      onError(error);
      callback(false as unknown as AuthenticationType);
    });
  };
}

/** Opens a direct-tcpip channel through `via` to host:port. */
function forwardOut(via: Client, hop: NormalizedHost, timeoutMs: number): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      reject(new SshTimeoutError(`${hop.label}: jump channel did not open within ${timeoutMs} ms`));
    }, timeoutMs);
    try {
      via.forwardOut('127.0.0.1', 0, hop.host, hop.port, (err, stream) => {
        clearTimeout(timer);
        if (settled) {
          stream?.destroy();
          return;
        }
        settled = true;
        if (err) {
          reject(
            new SshConnectError(
              `${hop.label}: the jump host could not open a channel: ${err.message}`,
              {
                cause: err,
                details: { host: hop.label },
              },
            ),
          );
        } else resolve(stream);
      });
    } catch (cause) {
      clearTimeout(timer);
      settled = true;
      reject(connectErrorFrom(cause, hop.label));
    }
  });
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Connects and authenticates one hop over `sock` (a forwarded channel) or a new TCP socket. */
async function connectHop(
  hop: NormalizedHost,
  sock: Duplex | undefined,
  options: ConnectOptions,
): Promise<{ client: Client; socket: Socket | undefined }> {
  const credentials = options.credentials(hop);
  let entries: KnownHostEntry[] | undefined;
  try {
    entries = await readKnownHosts(hop.knownHostsPath);
  } catch (cause) {
    throw new SshConfigError(`${hop.label}: cannot read ${hop.knownHostsPath}`, { cause });
  }
  const key = await credentials.privateKey();
  if (!key && !hop.config.agent && !hop.config.password) {
    throw new SshConfigError(
      `${hop.label}: no way to authenticate: give privateKey, privateKeyPath, agent or password`,
      { details: { host: hop.label } },
    );
  }
  const keepalive = hop.config.keepaliveIntervalMs ?? options.keepaliveIntervalMs;
  const timeoutMs = hop.config.connectTimeoutMs ?? options.connectTimeoutMs;

  return new Promise((resolve, reject) => {
    const client = new SshClient();
    let socket: Socket | undefined;
    let settled = false;
    let hostKeyFailure: SshError | undefined;
    let authFailure: unknown;
    const fail = (error: unknown): void => {
      if (settled) return;
      settled = true;
      cleanup();
      client.removeAllListeners('ready');
      // Keep an error listener: ssh2 may still emit while tearing down.
      client.on('error', () => undefined);
      socket?.destroy();
      client.end();
      let typed = hostKeyFailure ?? connectErrorFrom(error, hop.label);
      if (typed.code === 'E_SSH_AUTH') {
        credentials.forgetPassword();
        if (authFailure !== undefined) {
          typed = new SshAuthError(
            `${hop.label}: authentication failed: ${errorText(authFailure)}`,
            {
              cause: authFailure,
              details: { host: hop.label },
            },
          );
        }
      }
      reject(typed);
    };
    // How far it got names the fault: nothing listening answers, a server that accepts TCP
    // but never speaks SSH, a slow key exchange, or a slow authentication.
    let stage = sock ? 'waiting for the SSH greeting' : 'TCP connect';
    const timer = setTimeout(() => {
      fail(
        new SshTimeoutError(
          `${hop.label}: not connected within ${timeoutMs} ms (connectTimeoutMs; stopped at: ${stage})`,
          { details: { host: hop.label, timeoutMs, stage } },
        ),
      );
    }, timeoutMs);
    const onAbort = (): void => fail(new AbortError(`[ssh-pool] connect to ${hop.label} aborted`));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = (): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    };
    if (options.signal?.aborted) {
      onAbort();
      return;
    }
    client.once('ready', () => {
      if (settled) return;
      settled = true;
      cleanup();
      resolve({ client, socket });
    });
    client.on('error', (error) => fail(error));
    client.once('handshake', () => {
      stage = 'authentication';
    });
    client.once('close', () =>
      fail(
        Object.assign(new Error('connection closed during the handshake'), { code: 'ECONNRESET' }),
      ),
    );

    if (!sock) {
      socket = netConnect({ host: hop.host, port: hop.port });
      socket.once('connect', () => {
        if (stage === 'TCP connect') stage = 'waiting for the SSH greeting';
      });
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 30_000);
    }
    const config: ConnectConfig = {
      username: hop.username,
      sock: (sock ?? socket) as NonNullable<ConnectConfig['sock']>,
      readyTimeout: 0, // our timer covers TCP connect, handshake and authentication
      keepaliveInterval: keepalive,
      keepaliveCountMax: options.keepaliveCountMax,
      algorithms: {
        serverHostKey: hostKeyAlgorithms(knownKeyTypes(entries ?? [], hop.host, hop.port)),
      } as NonNullable<ConnectConfig['algorithms']>,
      authHandler: authHandlerFor(hop, credentials, key, (e) => {
        authFailure = e;
      }),
      hostVerifier: (presented: Buffer, verify: (valid: boolean) => void) => {
        verifyHostKey({
          host: hop.host,
          port: hop.port,
          key: presented,
          knownHostsPath: hop.knownHostsPath,
          policy: hop.hostKeyPolicy,
          entries,
          hashKnownHosts: hop.config.hashKnownHosts ?? false,
        }).then(
          () => verify(true),
          (error: unknown) => {
            hostKeyFailure =
              error instanceof SshHostKeyError
                ? error
                : new SshConfigError(
                    `${hop.label}: cannot record the host key in ${hop.knownHostsPath}`,
                    {
                      cause: error,
                    },
                  );
            verify(false);
          },
        );
      },
    };
    try {
      client.connect(config);
      // After ssh2's own listener: the first bytes from the server are its greeting.
      (sock ?? socket)?.once('data', () => {
        if (stage === 'waiting for the SSH greeting') stage = 'key exchange';
      });
    } catch (error) {
      fail(error);
    }
  });
}

/** Opens the connection for `target` through its jump hosts; closes what it opened on failure. */
export async function establish(
  target: NormalizedHost,
  options: ConnectOptions,
): Promise<Established> {
  const hops = [...target.jump, target];
  const clients: Client[] = [];
  let firstSocket: Socket | undefined;
  try {
    for (const hop of hops) {
      const previous = clients[clients.length - 1];
      const timeoutMs = hop.config.connectTimeoutMs ?? options.connectTimeoutMs;
      const sock = previous ? await forwardOut(previous, hop, timeoutMs) : undefined;
      const { client, socket } = await connectHop(hop, sock, options);
      firstSocket ??= socket;
      clients.push(client);
    }
  } catch (error) {
    for (const c of clients.reverse()) destroyClient(c);
    throw error;
  }
  const client = clients.pop() as Client;
  return { client, jumps: clients, socket: firstSocket as Socket };
}

/** Ends a client without waiting for the server (its socket is destroyed). */
export function destroyClient(client: Client): void {
  const sock = (client as unknown as { _sock?: { destroy?: () => void } })._sock;
  try {
    client.end();
  } catch {
    // already closed
  }
  sock?.destroy?.();
}
