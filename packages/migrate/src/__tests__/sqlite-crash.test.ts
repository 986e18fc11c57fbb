// Acceptance: a child process running a long migration is killed with SIGKILL at random points,
// at least 50 times; WAL and rollback journal alternate.
import { describe } from 'vitest';
import { crashTest } from './concurrency-suite.js';
import { type MakeDb, sqliteFactory } from './helpers.js';

const trials = Number(process.env.CM_MIGRATE_CRASH_TRIALS ?? 50);
const wal = sqliteFactory('wal');
const rollback = sqliteFactory('delete');
let k = 0;
const alternating: MakeDb = () => (k++ % 2 ? rollback() : wal());

describe('SQLite crash', () => {
  crashTest('SQLite, WAL and rollback journal alternating', alternating, trials);
});
