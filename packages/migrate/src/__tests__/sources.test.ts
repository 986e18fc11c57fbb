import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCrystalMathError } from '@crystalmath/core';
import { afterAll, describe, expect, it } from 'vitest';
import { forbiddenReason } from '../guard.js';
import { codeMigrations, compareMigrationNames, folderMigrations } from '../index.js';

const scratch = mkdtempSync(join(tmpdir(), 'cm-migrate-src-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
function folder(files: Record<string, string>): string {
  const dir = join(scratch, `f${n++}`);
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe('sources', () => {
  it('folderMigrations: NNNN_name.sql and dialect pairs, in numeric order, other files ignored', async () => {
    const dir = folder({
      '0002_b.sqlite.sql': 'create table b (id integer)',
      '0002_b.postgres.sql': 'create table b (id serial)',
      '0001_a.sql': 'create table a (id integer)',
      '10000_late.sql': 'select 1',
      '9999_early.sql': 'select 1',
      'notes.txt': 'ignored',
    });
    mkdirSync(join(dir, 'sub.sql'));
    const ms = await folderMigrations(dir).getMigrations();
    expect(ms.map((m) => m.name)).toEqual(['0001_a', '0002_b', '9999_early', '10000_late']);
    expect(ms[1]!.dialectChecksums?.sqlite).toMatch(/^[0-9a-f]{64}$/);
    expect(ms[1]!.dialectChecksums?.sqlite).not.toBe(ms[1]!.dialectChecksums?.postgres);
  });

  it('folderMigrations refuses a bad name, half a dialect pair, and both forms at once', async () => {
    const cases = [
      { 'create_a.sql': 'select 1' },
      { '0001_a.sqlite.sql': 'select 1' },
      { '0001_a.sql': 'select 1', '0001_a.postgres.sql': 'select 1' },
    ];
    for (const files of cases) {
      await expect(folderMigrations(folder(files)).getMigrations()).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_MIGRATION_SOURCE'),
      );
    }
    await expect(folderMigrations(join(scratch, 'missing')).getMigrations()).rejects.toSatisfy(
      (e) => isCrystalMathError(e, 'E_MIGRATION_SOURCE'),
    );
  });

  it('checksums: SHA-256 of the text; CRLF and a BOM are the same migration', async () => {
    const [lf] = await codeMigrations({
      '0001_a': { sql: 'create table a\n(id integer)\n' },
    }).getMigrations();
    const [crlf] = await codeMigrations({
      '0001_a': { sql: '\uFEFFcreate table a\r\n(id integer)\r\n' },
    }).getMigrations();
    const [other] = await codeMigrations({
      '0001_a': { sql: 'create table a\n(id int)\n' },
    }).getMigrations();
    expect(lf!.checksum).toMatch(/^[0-9a-f]{64}$/);
    expect(crlf!.checksum).toBe(lf!.checksum);
    expect(other!.checksum).not.toBe(lf!.checksum);
  });

  it('codeMigrations checks names and shapes', () => {
    expect(() => codeMigrations({ nope: { sql: 'select 1' } })).toThrow(/must look like/);
    expect(() => codeMigrations({ '0001_x': {} as never })).toThrow(/must be \{ up \}/);
  });

  it('PRAGMA foreign_keys = OFF in SQL text becomes disableForeignKeys; the pragmas are not run', async () => {
    const [m] = await codeMigrations({
      '0001_x': {
        sql: 'pragma foreign_keys=off;\ncreate table x (id integer);\nPRAGMA main.foreign_keys = ON',
      },
    }).getMigrations();
    expect(m!.disableForeignKeys).toBe(true);
    const [plain] = await codeMigrations({
      '0001_x': { sql: 'PRAGMA foreign_keys;' },
    }).getMigrations();
    expect(plain!.disableForeignKeys).toBeUndefined();
  });

  it('compareMigrationNames: numeric prefix first', () => {
    expect(['10_a', '9_b', '0010_c', '1_a'].sort(compareMigrationNames)).toEqual([
      '1_a',
      '9_b',
      '0010_c',
      '10_a',
    ]);
  });

  it('forbiddenReason: transaction control and, on SQLite, setting foreign_keys', () => {
    const no = (s: string, d: 'sqlite' | 'postgres' = 'sqlite') =>
      forbiddenReason(s, d) !== undefined;
    for (const s of [
      'COMMIT',
      'end transaction',
      'begin immediate',
      'rollback',
      'ROLLBACK TRANSACTION',
      'start transaction',
      'abort',
      "prepare transaction 'x'",
      '/* c */ commit',
    ])
      expect(no(s), s).toBe(true);
    for (const s of [
      'rollback to sp',
      'rollback transaction to savepoint sp',
      'savepoint sp',
      'release sp',
      'select 1',
      'update t set end_at = 1',
      'PRAGMA foreign_keys',
      'PRAGMA foreign_key_check',
    ])
      expect(no(s), s).toBe(false);
    expect(no('PRAGMA foreign_keys = OFF')).toBe(true);
    expect(no('pragma main."foreign_keys"(0)')).toBe(true);
    expect(no('PRAGMA foreign_keys = OFF', 'postgres')).toBe(false);
  });
});
