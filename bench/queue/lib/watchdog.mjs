// A watchdog on its own thread: a system under test that starves the event loop (a scheduler
// spinning on microtasks, a synchronous loop) would also stop every timeout of the bench. If the
// main thread sends no heartbeat for `stallMs`, the watchdog says which phase was running, stops
// the private redis-server, and kills the process instead of letting it hang forever.

import { Worker } from 'node:worker_threads';

const WATCHDOG = `
const { parentPort, workerData } = require('node:worker_threads');
const { writeSync } = require('node:fs');
let last = Date.now();
let phase = 'start';
const pids = new Set();
parentPort.on('message', (m) => {
  last = Date.now();
  if (m.phase) phase = m.phase;
  if (m.pid) pids.add(m.pid);
});
setInterval(() => {
  if (Date.now() - last < workerData.stallMs) return;
  writeSync(2, '\\n[bench] the event loop has been blocked for ' + Math.round((Date.now() - last) / 1000) +
    ' s during "' + phase + '": that system starves the event loop; stopping the bench.\\n');
  for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch {} }
  process.kill(process.pid, 'SIGKILL');
}, 500);
`;

/**
 * Starts the watchdog; returns `{ phase(name), child(pid), stop() }`. Call `phase` when a phase
 * starts; `child` registers a child process to kill with the bench.
 */
export function startWatchdog({ stallMs = 30_000 } = {}) {
  const worker = new Worker(WATCHDOG, { eval: true, workerData: { stallMs } });
  worker.unref();
  const beat = setInterval(() => worker.postMessage({}), 1000);
  beat.unref();
  return {
    phase: (name) => worker.postMessage({ phase: name }),
    child: (pid) => worker.postMessage({ pid }),
    stop: async () => {
      clearInterval(beat);
      await worker.terminate();
    },
  };
}
