// Test fixtures over the testbed's real sshd: host configs for the normal user and root, a
// loopback TCP proxy that can stop forwarding (fault injection for the freeze test) and counts
// connections, and small waiting helpers.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireService, type SshService } from '@crystalmath/testkit';
import type { SshHostConfig } from '../options.js';

export const ssh: SshService | undefined = requireService('ssh');

/** Host options for the testbed's sshd as its normal user (default) or as root. */
export function testHost(
  as: 'user' | 'root' = 'user',
  overrides: Partial<SshHostConfig> = {},
): SshHostConfig {
  if (!ssh) throw new Error('testbed ssh service is not up');
  return {
    host: ssh.host,
    port: ssh.port,
    username: as === 'root' ? ssh.rootUser : ssh.user,
    privateKeyPath: ssh.privateKeyPath,
    knownHostsPath: ssh.knownHostsPath,
    ...overrides,
  };
}

/** A known_hosts file (in `dir`) that records the testbed's host key for 127.0.0.1:`port`. */
export function knownHostsFor(dir: string, port: number, name = 'known_hosts'): string {
  if (!ssh) throw new Error('testbed ssh service is not up');
  const path = join(dir, name);
  writeFileSync(path, `[${ssh.host}]:${port} ${ssh.hostPublicKey}\n`);
  return path;
}

export function tempDir(prefix: string): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * How long a test waits for an event of a real connection or process (a disconnect, a probe,
 * a remote command's death) before it fails: generous, as CI shares two loaded cores.
 */
export const EVENT_TIMEOUT_MS = 30_000;

/**
 * Whether `p` settles in the current turn of the event loop, before any timer or I/O: an "at
 * once" that holds however loaded the machine is, unlike a bound on elapsed milliseconds.
 */
export async function settlesAtOnce(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await new Promise((r) => setImmediate(r));
  return settled;
}

/** Polls `check` until it returns true or the timeout passes. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export function percentile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;
}

/** One client connection through the proxy. */
export class ProxiedConnection {
  readonly client: Socket;
  readonly upstream: Socket;
  #frozen = false;
  readonly #held: Array<[Socket, Buffer]> = [];

  constructor(client: Socket, upstream: Socket) {
    this.client = client;
    this.upstream = upstream;
    const forward = (to: Socket) => (chunk: Buffer) => {
      if (this.#frozen) this.#held.push([to, chunk]);
      else to.write(chunk);
    };
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
  }

  get frozen(): boolean {
    return this.#frozen;
  }

  /** Stops forwarding in both directions (bytes are held, as a stalled network would). */
  freeze(): void {
    this.#frozen = true;
  }

  thaw(): void {
    this.#frozen = false;
    for (const [to, chunk] of this.#held.splice(0)) to.write(chunk);
  }

  get closed(): boolean {
    return this.client.destroyed && this.upstream.destroyed;
  }
}

/**
 * A loopback TCP proxy to host:port that we control: it can freeze chosen connections (stop
 * forwarding) and reports how many connections it carried at most at once.
 */
export class TcpProxy {
  readonly #server: Server;
  readonly connections: ProxiedConnection[] = [];
  #active = 0;
  #peak = 0;
  port = 0;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(targetHost: string, targetPort: number): Promise<TcpProxy> {
    const server = createServer();
    const proxy = new TcpProxy(server);
    server.on('connection', (client) => {
      const upstream = netConnect({ host: targetHost, port: targetPort });
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      proxy.#active++;
      proxy.#peak = Math.max(proxy.#peak, proxy.#active);
      proxy.connections.push(new ProxiedConnection(client, upstream));
      let done = false;
      const end = () => {
        if (done) return;
        done = true;
        proxy.#active--;
        client.destroy();
        upstream.destroy();
      };
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    proxy.port = typeof address === 'object' && address ? address.port : 0;
    return proxy;
  }

  /** Connections open right now. */
  get active(): number {
    return this.#active;
  }

  /** Most connections open at once. */
  get peak(): number {
    return this.#peak;
  }

  async close(): Promise<void> {
    for (const c of this.connections) {
      c.client.destroy();
      c.upstream.destroy();
    }
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
