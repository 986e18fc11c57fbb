// Runs the service: a queue in ./embed-queue.db (or $DB), local processes under the temp folder
// (or $RUNS), the scheduler in this process, HTTP on 127.0.0.1:$PORT (default 8080). Ctrl-C
// stops cleanly.
//   curl -XPOST localhost:8080/jobs -d '{"spec":{"name":"hi","argv":["echo","hi"]}}'
//   curl -N localhost:8080/events

import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openQueue, sqliteStore } from '@crystalmath/queue';
import { LocalRunner } from '@crystalmath/runner-process';
import { createJobsServer } from './jobs-server.js';

const queue = await openQueue({
  store: sqliteStore({ path: process.env.DB ?? 'embed-queue.db' }),
  targets: {
    local: {
      runner: new LocalRunner({ root: process.env.RUNS ?? join(tmpdir(), 'embed-queue-runs') }),
      maxConcurrent: 4,
    },
  },
});
await queue.start();
const server = createJobsServer({ queue, defaultTarget: 'local' });
const port = Number(process.env.PORT ?? 8080);
server.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  console.log(
    `listening on http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : port}`,
  );
});

const shutdown = (): void => {
  server.close();
  server.closeAllConnections();
  void queue.close().then(() => process.exit(0));
};
process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);
