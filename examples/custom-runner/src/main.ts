// Demo: run three jobs through SessionRunner on this machine and print their statuses.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalTransport } from '@crystalmath/core';
import { SessionRunner } from './session-runner.js';

const root = await mkdtemp(join(tmpdir(), 'cm-session-'));
const runner = new SessionRunner({ transport: new LocalTransport(), root });
const handles = await Promise.all([
  runner.submit({ key: 'ok', spec: { name: 'ok', argv: ['sh', '-c', 'echo hello'] } }),
  runner.submit({ key: 'fails', spec: { name: 'fails', argv: ['sh', '-c', 'exit 3'] } }),
  runner.submit({ key: 'slow', spec: { name: 'slow', argv: ['sleep', '30'] } }),
]);
await runner.cancel(handles[2]!);
for (;;) {
  const statuses = await runner.poll(handles);
  if (statuses.every((s) => s.state !== 'running' && s.state !== 'queued')) {
    for (const [i, s] of statuses.entries()) {
      console.log(`${handles[i]?.jobKey}: ${s.state} exit=${s.exitCode ?? '-'}`);
    }
    break;
  }
  await new Promise((r) => setTimeout(r, 100));
}
await rm(root, { recursive: true, force: true });
