// The suite every ArtifactStore must pass (the filesystem store here, an embedder's S3 store):
// streams in and out, atomic replace, checksums checked both ways, paths confined.

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArtifactStore } from '../artifact-store.js';
import { isCrystalMathError } from '../errors.js';

export interface ArtifactStoreFixture {
  readonly store: ArtifactStore;
  /** Called once after the suite. */
  readonly cleanup?: () => Promise<void>;
}

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks).toString('utf8');
}

function sha(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** Registers the ArtifactStore conformance tests for the store `make` returns. */
export function artifactStoreConformance(
  name: string,
  make: () => Promise<ArtifactStoreFixture>,
): void {
  describe(`ArtifactStore conformance: ${name}`, () => {
    let f: ArtifactStoreFixture;
    beforeAll(async () => {
      f = await make();
    });
    afterAll(async () => {
      await f.cleanup?.();
    });

    it('puts a stream and gets it back, with its size, mode and sha256', async () => {
      const put = await f.store.put('1', 'out/a.txt', Readable.from([Buffer.from('hello')]), {
        mode: 0o640,
      });
      expect(put).toEqual({ path: 'out/a.txt', size: 5, mode: 0o640, sha256: sha('hello') });
      expect(await text(await f.store.get('1', 'out/a.txt'))).toBe('hello');
      expect(await f.store.stat('1', 'out/a.txt')).toEqual({
        path: 'out/a.txt',
        size: 5,
        mode: 0o640,
      });
      expect(await f.store.stat('1', 'nope')).toBeNull();
    });

    it('lists a job by path and replaces an artifact whole', async () => {
      await f.store.put('2', 'b.txt', Readable.from(['first version']));
      await f.store.put('2', 'a/c.txt', Readable.from(['c']));
      await f.store.put('2', 'b.txt', Readable.from(['second']));
      expect((await f.store.list('2')).map((e) => [e.path, e.size])).toEqual([
        ['a/c.txt', 1],
        ['b.txt', 6],
      ]);
      expect(await text(await f.store.get('2', 'b.txt'))).toBe('second');
      expect(await f.store.list('no-such-job')).toEqual([]);
    });

    it('stores nothing when the bytes do not have the expected checksum or size', async () => {
      const bad = f.store.put('3', 'x.txt', Readable.from(['data']), { sha256: sha('other') });
      await expect(bad).rejects.toMatchObject({ code: 'E_ARTIFACT_CHECKSUM' });
      const short = f.store.put('3', 'y.txt', Readable.from(['data']), { size: 10 });
      await expect(short).rejects.toMatchObject({ code: 'E_ARTIFACT_CHECKSUM' });
      expect(await f.store.list('3')).toEqual([]);
    });

    it('leaves nothing visible when the source stream fails mid-way', async () => {
      async function* failing(): AsyncGenerator<Buffer> {
        yield Buffer.from('partial');
        throw new Error('source broke');
      }
      await expect(f.store.put('4', 'p.bin', failing())).rejects.toThrow();
      expect(await f.store.list('4')).toEqual([]);
      expect(await f.store.stat('4', 'p.bin')).toBeNull();
    });

    it('detects a checksum mismatch on get when given the expected sha256', async () => {
      await f.store.put('5', 'r.txt', Readable.from(['real']));
      await expect(
        text(await f.store.get('5', 'r.txt', { sha256: sha('fake') })),
      ).rejects.toSatisfy((e: unknown) => isCrystalMathError(e, 'E_ARTIFACT_CHECKSUM'));
      expect(await text(await f.store.get('5', 'r.txt', { sha256: sha('real') }))).toBe('real');
    });

    it('refuses paths that leave the job and job ids that are not ids', async () => {
      for (const p of ['../x', '/etc/passwd', 'a/../../b', ''])
        await expect(f.store.put('6', p, Readable.from(['x']))).rejects.toMatchObject({
          code: 'E_PATH_UNSAFE',
        });
      for (const id of ['..', '../6', 'a/b', ''])
        await expect(f.store.put(id, 'x', Readable.from(['x']))).rejects.toMatchObject({
          code: 'E_VALIDATION',
        });
      await expect(f.store.get('6', 'missing')).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
    });

    it('removes one artifact or all of a job, and a missing one without error', async () => {
      await f.store.put('7', 'a', Readable.from(['a']));
      await f.store.put('7', 'b', Readable.from(['b']));
      await f.store.remove('7', 'a');
      expect((await f.store.list('7')).map((e) => e.path)).toEqual(['b']);
      await f.store.remove('7');
      await f.store.remove('7', 'zzz');
      expect(await f.store.list('7')).toEqual([]);
    });
  });
}
