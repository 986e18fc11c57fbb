// `crystalmath store check` and `store backup` on a real SQLite queue file.

import { readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../exit-codes.js';
import { crystalmath, LOCAL_CONFIG, project } from './cli-helpers.js';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('crystalmath store', () => {
  it('backs up a queue online, and checks both copies; a damaged copy fails the check', async () => {
    const dir = await project(LOCAL_CONFIG);
    dirs.push(dir);
    for (let i = 0; i < 3; i++) {
      expect((await crystalmath(dir, ['submit', '--', 'echo', String(i)])).code).toBe(0);
    }
    const check = await crystalmath(dir, ['store', 'check']);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toMatch(/queue\.db: ok/);

    const backup = await crystalmath(dir, ['store', 'backup', 'copy.db']);
    expect(backup.code, backup.stderr).toBe(0);
    const again = await crystalmath(dir, ['store', 'backup', 'copy.db']);
    expect(again.code).toBe(ExitCode.STORE);
    expect(again.stderr).toMatch(/copy\.db exists/);

    // The copy is a queue with the same jobs: point a project at it.
    writeFileSync(join(dir, 'copy.yaml'), LOCAL_CONFIG.replace('state/queue.db', 'copy.db'));
    const list = await crystalmath(dir, ['--config', 'copy.yaml', '--json', 'list']);
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.stringify(JSON.parse(list.stdout))).toContain('echo');

    const bytes = readFileSync(join(dir, 'copy.db'));
    bytes.fill(0xa5, 4096 + 8, 4096 * 2);
    writeFileSync(join(dir, 'copy.db'), bytes);
    const bad = await crystalmath(dir, ['--config', 'copy.yaml', 'store', 'check']);
    expect(bad.code).toBe(ExitCode.STORE);
    expect(bad.stderr).toMatch(/copy\.db is damaged/);
  }, 60_000);
});
