import { readdirSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalTransport } from '../index.js';
import { transportConformance } from '../testing/index.js';

/** How long a killed process may take to be gone before the test fails (CI is loaded). */
const EVENT_TIMEOUT_MS = 30_000;

/** PIDs of live processes whose working directory is `dir` (zombies have none). */
function processesIn(dir: string): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((pid) => {
      try {
        return readlinkSync(`/proc/${pid}/cwd`) === dir;
      } catch {
        return false;
      }
    })
    .map(Number);
}

transportConformance('LocalTransport', async () => {
  const root = await mkdtemp(join(tmpdir(), 'cm-local-'));
  return {
    transport: new LocalTransport(),
    root,
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

describe('LocalTransport', () => {
  it('resolves relative paths and cwd against its home', async () => {
    const home = await mkdtemp(join(tmpdir(), 'cm-home-'));
    try {
      const t = new LocalTransport({ home });
      await t.mkdir('sub');
      await t.writeFile('sub/f.txt', 'x');
      const r = await t.exec(['cat', 'f.txt'], { cwd: 'sub' });
      expect(r.stdout).toBe('x');
      expect(t.resolvePath('sub')).toBe(join(home, 'sub'));
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('kills the whole process tree on timeout, not only the first process', async () => {
    const home = await mkdtemp(join(tmpdir(), 'cm-tree-'));
    try {
      const t = new LocalTransport({ home, killGraceMs: 200 });
      // The grandchild would touch the marker after 2 s if it survived the kill. Wait until no
      // process works in `home` any more (a survivor would exit after touching it), then look.
      await expect(
        t.exec(['sh', '-c', '(sleep 2; touch marker) & wait'], { timeoutMs: 200 }),
      ).rejects.toThrow(/timed out/);
      const deadline = Date.now() + EVENT_TIMEOUT_MS;
      while (processesIn(home).length > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(processesIn(home)).toEqual([]);
      expect(await t.stat('marker')).toBeNull();
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
