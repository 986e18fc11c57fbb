#!/usr/bin/env node
// The `crystalmath` executable: runs `main` with the process's IO. SIGINT/SIGTERM abort the
// command's signal, so long-running commands stop cleanly; a second signal exits at once.
// A reader that goes away (`crystalmath watch --json | head -1`) ends the command the same
// way, with exit 0: a closed pipe is how a pipeline says "enough".

import { readFileSync } from 'node:fs';

// `crystalmath --version` alone answers before any module loads: scripts call it to probe.
const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version?: string;
  };
  process.stdout.write(`${pkg.version ?? '0.0.0'}\n`);
  process.exit(0);
}

const { processIo } = await import('./cli-io.js');
const { main } = await import('./main.js');

const controller = new AbortController();
let signals = 0;
const onSignal = (name: NodeJS.Signals): void => {
  signals += 1;
  if (signals > 1) {
    process.stderr.write(`crystalmath: second ${name}, exiting now\n`);
    process.exit(130);
  }
  controller.abort(new Error(name));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

let readerGone = false;
const onStreamError = (err: NodeJS.ErrnoException): void => {
  if (err.code !== 'EPIPE') throw err;
  if (readerGone) return;
  readerGone = true;
  controller.abort(new Error('EPIPE'));
  // Stop cleanly if the command can; do not wait on it for long.
  setTimeout(() => process.exit(0), 2000).unref();
};
process.stdout.on('error', onStreamError);

const io = processIo(controller.signal);
// Writes after the reader left would only raise more EPIPE errors.
const stdout = {
  write: (chunk: string): boolean => (readerGone ? true : process.stdout.write(chunk)),
  get isTTY() {
    return process.stdout.isTTY;
  },
  get columns() {
    return process.stdout.columns;
  },
  get rows() {
    return process.stdout.rows;
  },
};
const result = await main(argv, { ...io, stdout });
const code = readerGone ? 0 : result;
process.exitCode = code;
// Let pending writes flush; then exit even if a library left a handle open.
setTimeout(() => process.exit(code), 200).unref();
