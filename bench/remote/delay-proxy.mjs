// A TCP proxy on loopback that holds every chunk `delayMs` before forwarding it, each way: a
// link with real latency for the bench. `tc netem` is missing from these machines' kernels, and
// loopback itself must never be slowed (other work shares it), so the latency is emulated here:
// 15 ms each way = a 30 ms round trip. Both sockets have setNoDelay, so nothing else is added.

import { createServer, connect as netConnect } from 'node:net';

/**
 * Starts the proxy to `target` on a free loopback port.
 * @returns {Promise<{ port: number, close: () => Promise<void> }>}
 */
export async function delayProxy({ host, port, delayMs }) {
  const sockets = new Set();
  const server = createServer((client) => {
    const upstream = netConnect({ host, port });
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    // Timers of one duration fire in the order they were set: chunks stay in order.
    const pipe = (from, to) => {
      from.on('data', (chunk) => {
        if (delayMs === 0) to.write(chunk);
        else setTimeout(() => to.writable && to.write(chunk), delayMs);
      });
      from.on('end', () => setTimeout(() => to.end(), delayMs));
      from.on('close', () => setTimeout(() => to.destroy(), delayMs));
    };
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
