// Starts a private, throw-away redis-server on a free loopback port for BullMQ (no persistence)
// and stops it at the end. Nothing here touches a system-wide Redis.

import { spawn, spawnSync } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { sleep } from './stats.mjs';

/** A free TCP port on 127.0.0.1, chosen by the kernel. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function findRedisServer() {
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const bin = which.stdout.trim();
  return which.status === 0 && bin !== '' ? bin : null;
}

/** How long `apt-get install redis-server` may take (a first `apt-get update` included). */
const INSTALL_TIMEOUT_MS = 300_000;

/**
 * Installs Debian's redis-server with apt-get. Only as root (the bench never calls sudo) and
 * only when asked (`--install-peers`). Returns null, or a printable reason it could not.
 */
function installRedisServer(log) {
  if (process.getuid?.() !== 0) {
    return 'redis-server not found, and --install-peers installs it only when the bench runs as root: run `sudo apt-get install -y redis-server`';
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args) =>
    spawnSync('apt-get', args, { encoding: 'utf8', env, timeout: INSTALL_TIMEOUT_MS });
  log('installing redis-server with apt-get (--install-peers)');
  let r = apt(['install', '-y', '--no-install-recommends', 'redis-server']);
  if (r.status !== 0) {
    // A fresh machine may have no package lists yet.
    apt(['update']);
    r = apt(['install', '-y', '--no-install-recommends', 'redis-server']);
  }
  if (r.status === 0 && findRedisServer() !== null) return null;
  const why = r.error
    ? r.error.message
    : (r.stderr || r.stdout || '').trim().split('\n').at(-1) || `exit ${r.status}`;
  return `redis-server not found, and apt-get install redis-server failed: ${why}`;
}

/**
 * Starts `redis-server` on 127.0.0.1 and a free port. Returns `{ port, stop }`, or
 * `{ error }` with a printable reason when the binary is missing (saying how to install it) or
 * it does not come up within `timeoutMs` (default 5 000 ms). With `install` (the bench's
 * `--install-peers`), a missing binary is first installed with apt-get when running as root.
 */
export async function startRedis({ timeoutMs = 5000, install = false, log = () => {} } = {}) {
  let bin = findRedisServer();
  if (bin === null && install) {
    const failed = installRedisServer(log);
    if (failed !== null) return { error: failed };
    bin = findRedisServer();
  }
  if (bin === null) {
    return {
      error:
        'redis-server not found: install it with `sudo apt-get install -y redis-server` (Debian/Ubuntu), or run the bench as root with --install-peers',
    };
  }
  const port = await freePort();
  const child = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !exited) {
    if (await canConnect(port)) {
      return {
        port,
        pid: child.pid,
        stop: async () => {
          if (exited) return;
          const gone = new Promise((resolve) => child.once('exit', resolve));
          child.kill('SIGTERM');
          await Promise.race([gone, sleep(3000)]);
          if (!exited) child.kill('SIGKILL');
        },
      };
    }
    await sleep(50);
  }
  if (!exited) child.kill('SIGKILL');
  return { error: `redis-server did not start on port ${port}: ${stderr.trim().slice(0, 200)}` };
}
