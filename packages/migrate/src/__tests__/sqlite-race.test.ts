// Acceptance: 4 processes migrate one SQLite file at once, 20 times, on the queue's own kysely
// construction; both journal modes.
import { describe } from 'vitest';
import { raceTest } from './concurrency-suite.js';
import { sqliteFactory } from './helpers.js';

const rounds = Number(process.env.CM_MIGRATE_RACE_ROUNDS ?? 20);

describe('SQLite race', () => {
  raceTest('SQLite, rollback journal (better-sqlite3 default)', sqliteFactory('delete'), rounds);
  raceTest('SQLite, WAL', sqliteFactory('wal'), rounds);
});
