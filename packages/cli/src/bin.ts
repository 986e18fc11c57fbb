#!/usr/bin/env node
// The `crystalmath` executable: runs `main` with the process's IO. SIGINT/SIGTERM abort the
// command's signal, so long-running commands stop cleanly; a second signal exits at once.

import { processIo } from './cli-io.js';
import { main } from './main.js';

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

const code = await main(process.argv.slice(2), processIo(controller.signal));
process.exitCode = code;
// Let pending writes flush; then exit even if a library left a handle open.
setTimeout(() => process.exit(code), 200).unref();
