// Every system the queue bench measures, ours first, so that a run cut short by the time budget
// still has their figures. The multi-process figures' child processes find them here by id.

import { bullmq } from './bullmq.mjs';
import { crystalmathPostgres, crystalmathSqlite } from './crystalmath.mjs';
import { graphileWorker } from './graphile-worker.mjs';
import { liteque } from './liteque.mjs';
import { pgBoss } from './pg-boss.mjs';
import { plainjob } from './plainjob.mjs';

export const SYSTEMS = [
  crystalmathSqlite,
  crystalmathPostgres,
  plainjob,
  liteque,
  bullmq,
  pgBoss,
  graphileWorker,
];
