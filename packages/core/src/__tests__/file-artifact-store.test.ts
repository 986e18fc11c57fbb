// The filesystem ArtifactStore: the shared conformance suite, then what only a folder can show
// (no temporary file left visible, a symlinked folder planted in the store is not followed out).

import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileArtifactStore } from '../local/file-artifact-store.js';
import { artifactStoreConformance } from '../testing/artifact-store-conformance.js';

artifactStoreConformance('FileArtifactStore', async () => {
  const root = await mkdtemp(join(tmpdir(), 'cm-artifacts-'));
  return {
    store: new FileArtifactStore({ root }),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

describe('FileArtifactStore on disk', () => {
  let root: string;
  let outside: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'cm-artifacts-'));
    outside = await mkdtemp(join(tmpdir(), 'cm-outside-'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  it('keeps a failed write invisible and sweeps its temporary file', async () => {
    const store = new FileArtifactStore({ root });
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(1024, 1);
      throw new Error('broken source');
    }
    await expect(store.put('9', 'big.bin', failing())).rejects.toThrow();
    expect(await readdir(join(root, '9'))).toEqual([]);
    // A crash (no catch ran) leaves a .cm-part- file: never listed, removed by sweep.
    await writeFile(join(root, '9', '.cm-part-abc'), 'half');
    expect(await store.list('9')).toEqual([]);
    expect(await store.sweep('9')).toBe(1);
    expect(await readdir(join(root, '9'))).toEqual([]);
  });

  it('does not write through a symlinked folder planted inside a job folder', async () => {
    const store = new FileArtifactStore({ root });
    await mkdir(join(root, '8'), { recursive: true });
    await symlink(outside, join(root, '8', 'link'));
    await expect(store.put('8', 'link/x.txt', Readable.from(['x']))).rejects.toMatchObject({
      code: 'E_PATH_UNSAFE',
    });
    expect(await readdir(outside)).toEqual([]);
  });
});
