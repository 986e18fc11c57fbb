// WAL checkpoints of a busy SQLite store, off the event loop. SQLite's automatic checkpoint runs
// inside the COMMIT that crosses `wal_autocheckpoint` pages: it copies pages back into the
// database file and fsyncs it, on the committing thread. Measured on the bench's enqueue loop,
// that was about a third of each write's time. A store that writes a lot hands the checkpoints
// to a worker thread with its own connection (SQLite's documented pattern for this) and keeps a
// high automatic threshold as a safety valve, so the WAL stays bounded if the thread lags or dies.

import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** Write transactions before a store starts its checkpoint thread (short-lived CLIs never do). */
export const CHECKPOINTER_AFTER_WRITES = 64;
/** How often the thread checkpoints while writes come in. */
export const CHECKPOINT_INTERVAL_MS = 100;
/**
 * `wal_autocheckpoint` (pages) of the writing connection while the thread runs: the committing
 * thread checkpoints itself only past this (about 40 MiB of WAL at 4 KiB pages).
 */
export const WAL_SAFETY_PAGES = 10_000;
/** SQLite's default `wal_autocheckpoint`, restored when the thread is gone. */
export const WAL_DEFAULT_PAGES = 1_000;

// CommonJS, run by `new Worker(..., { eval: true })`: no file to ship or resolve beside the bundle.
const SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const dirty = new Int32Array(workerData.dirty);
const db = new Database(workerData.path, { timeout: 0 });
const timer = setInterval(() => {
  if (Atomics.exchange(dirty, 0, 0) === 0) return;
  // A failed checkpoint (a full disk, say) leaves the pages in the WAL, where they are safe; the
  // writing connection still checkpoints past its own threshold.
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {}
}, workerData.intervalMs);
parentPort.on('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/** The checkpoint thread of one store. */
export class Checkpointer {
  readonly #worker: Worker;
  readonly #dirty: Int32Array;
  #gone = false;

  /**
   * Starts the thread on `path`. `onGone` is called once if the thread fails or exits before
   * `stop`: the store then checkpoints on its own again.
   */
  constructor(path: string, onGone: () => void) {
    const shared = new SharedArrayBuffer(4);
    this.#dirty = new Int32Array(shared);
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    this.#worker = new Worker(SOURCE, {
      eval: true,
      workerData: { driver, path, dirty: shared, intervalMs: CHECKPOINT_INTERVAL_MS },
    });
    // Never keeps the process alive; its work is redone by the next connection that opens.
    this.#worker.unref();
    const gone = (): void => {
      if (this.#gone) return;
      this.#gone = true;
      onGone();
    };
    this.#worker.on('error', gone);
    this.#worker.on('exit', gone);
  }

  /** Notes that a transaction committed: the next tick checkpoints. Cheap: one atomic store. */
  wrote(): void {
    Atomics.store(this.#dirty, 0, 1);
  }

  /** Stops the thread (its connection closed first), waiting at most `timeoutMs`. */
  async stop(timeoutMs = 2_000): Promise<void> {
    if (this.#gone) return;
    this.#gone = true;
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    this.#worker.postMessage('stop');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), timeoutMs);
    });
    if ((await Promise.race([exited, late])) === 'late') await this.#worker.terminate();
    clearTimeout(timer);
  }
}
