// Loopback port helpers: a free port for a test's own listener, and waiting for a listener
// (optionally until it sends a banner, such as sshd's `SSH-2.0-...`).

import { createServer, Socket } from 'node:net';

/** A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('[testkit] no port assigned'))));
    });
  });
}

export interface WaitForPortOptions {
  /** Default 10 000 ms. */
  readonly timeoutMs?: number;
  /** Wait until the server's first bytes start with this (e.g. `SSH-`), not just the connect. */
  readonly banner?: string;
}

/** One attempt: connects, and reads the banner when one is expected. */
function probe(host: string, port: number, banner: string | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let received = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
    socket.once('connect', () => {
      if (banner === undefined) done(true);
    });
    socket.on('data', (chunk: Buffer) => {
      if (banner === undefined) return;
      received += chunk.toString('latin1');
      if (received.length >= banner.length) done(received.startsWith(banner));
    });
    socket.connect(port, host);
  });
}

/** Resolves true once host:port accepts (and greets with `banner`), false after the timeout. */
export async function waitForPort(
  host: string,
  port: number,
  options: WaitForPortOptions = {},
): Promise<boolean> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  for (;;) {
    if (await probe(host, port, options.banner)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resolves true once nothing accepts on host:port any more, false after the timeout. */
export async function waitForPortClosed(
  host: string,
  port: number,
  timeoutMs = 10_000,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!(await probe(host, port, undefined))) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}
