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

/**
 * Starts `redis-server` on 127.0.0.1 and a free port. Returns `{ port, stop }`, or
 * `{ error }` with a printable reason when the binary is missing or it does not come up
 * within `timeoutMs` (default 5 000 ms).
 */
export async function startRedis({ timeoutMs = 5000 } = {}) {
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const bin = which.stdout.trim();
  if (which.status !== 0 || bin === '') {
    return { error: 'redis-server not found (apt-get install redis-server)' };
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
