// The `collecting` phase with a real runner (LocalRunner: real processes, real files) on both
// stores: declared outputs come home before the job counts as ended, recorded with their
// checksums; `required` and `when` are honoured; symlinks never lead outside the job folder;
// a corrupted stored file is detected on read; transient faults retry, persistent ones fail typed.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type CollectResult,
  CrystalMathError,
  type RunnerCallOptions,
  type RunnerHandle,
} from '@crystalmath/core';
import { LocalRunner } from '@crystalmath/runner-process';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import type { Queue, QueueEvent } from '../types.js';
import { collect, describeStores, open, type TestStore, tempDir } from './helpers.js';

/** Real processes on a loaded machine: generous, named. */
const DRAIN_TIMEOUT_MS = 60_000;
/** How long the on-success cleanup of an ended job may take on a loaded machine. */
const CLEANUP_TIMEOUT_MS = 30_000;
// Above the drains' own bound, so a slow machine fails with the drain's message, not vitest's.
vi.setConfig({ testTimeout: 2 * DRAIN_TIMEOUT_MS });

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

async function text(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks).toString('utf8');
}

/** A LocalRunner whose next `collect` calls fail with the given errors (fault injection). */
class FlakyCollectRunner extends LocalRunner {
  faults: Error[] = [];
  collects = 0;
  override async collect(
    handle: RunnerHandle,
    dest: string,
    options?: RunnerCallOptions & { readonly globs?: readonly string[] },
  ): Promise<CollectResult> {
    this.collects++;
    const fault = this.faults.shift();
    if (fault) throw fault;
    return super.collect(handle, dest, options);
  }
}

describeStores((makeStore) => {
  let store: TestStore;
  let dir: ReturnType<typeof tempDir>;
  let runner: FlakyCollectRunner;
  let queue: Queue;
  let artifactsDir: string;

  const openWith = async (cleanup?: 'keep' | 'on-success' | 'always'): Promise<Queue> =>
    open(store, {
      targets: { here: { runner, ...(cleanup ? { cleanup } : {}) } },
      scheduler: { pollIntervalMs: 50 },
      artifacts: { dir: artifactsDir },
    });

  beforeEach(async () => {
    store = await makeStore();
    dir = tempDir('cm-artifacts-');
    artifactsDir = join(dir.dir, 'artifacts');
    runner = new FlakyCollectRunner({ root: join(dir.dir, 'runs') });
    queue = await openWith();
  });

  afterEach(async () => {
    await queue.close();
    await store.cleanup();
    dir.cleanup();
  });

  it('brings declared outputs home before the job ends, recorded with size, mode and sha256', async () => {
    const job = await queue.enqueue(
      {
        name: 'producer',
        script:
          'mkdir -p out; printf 42 > out/answer.txt; printf "%s" \'{"energy": -7.5}\' > result.json; printf x > other.dat; chmod 750 out/answer.txt',
        outputs: ['out/*.txt', { glob: 'result.json', required: true }],
      },
      { target: 'here' },
    );
    await queue.start();
    await queue.drain({ ids: [job.id], timeoutMs: DRAIN_TIMEOUT_MS });
    const done = (await queue.get(job.id))!;
    expect(done.state).toBe('succeeded');
    expect(done.result).toEqual({ energy: -7.5 });
    const arts = await queue.artifacts(job.id);
    expect(arts.map((a) => [a.path, a.size, a.sha256, a.attempt])).toEqual([
      ['out/answer.txt', 2, sha('42'), 1],
      ['result.json', 16, sha('{"energy": -7.5}'), 1],
    ]);
    expect(arts[0]!.mode).toBe(0o750);
    expect(await text(await queue.readArtifact(job.id, 'out/answer.txt'))).toBe('42');
    // The phase is visible in the log: running -> collecting -> succeeded, in that order.
    const moves = (await collect(queue.events({ follow: false })))
      .filter((e): e is Extract<QueueEvent, { type: 'job:state' }> => e.type === 'job:state')
      .filter((e) => e.jobId === job.id)
      .map((e) => e.to);
    expect(moves.slice(-2)).toEqual(['collecting', 'succeeded']);
    // Nothing but the job's own folder (and the private staging folder) in the store's root.
    expect(readdirSync(artifactsDir).sort()).toEqual(['.staging', job.id]);
    expect(readdirSync(join(artifactsDir, '.staging'))).toEqual([]);
  });

  it("fails a job whose required output is missing, naming the glob, and still brings 'always' logs home", async () => {
    const job = await queue.enqueue(
      {
        name: 'forgetful',
        script: 'echo log > run.log; echo partial > half.txt',
        outputs: [
          { glob: 'final/*.cif', required: true },
          { glob: '*.log', when: 'always' },
        ],
      },
      { target: 'here' },
    );
    const failing = await queue.enqueue(
      {
        name: 'crashes',
        script: 'echo boom > crash.log; echo no > data.txt; exit 4',
        outputs: ['data.txt', { glob: 'crash.log', when: 'always' }],
      },
      { target: 'here' },
    );
    await queue.start();
    await queue.drain({ ids: [job.id, failing.id], timeoutMs: DRAIN_TIMEOUT_MS });
    const j = (await queue.get(job.id))!;
    expect(j.state).toBe('failed');
    expect(j.reason).toContain('E_ARTIFACT_MISSING');
    expect(j.reason).toContain('"final/*.cif"');
    expect((await queue.artifacts(job.id)).map((a) => a.path)).toEqual(['run.log']);
    const f = (await queue.get(failing.id))!;
    expect(f.state).toBe('failed');
    expect(f.exitCode).toBe(4);
    // `data.txt` applies to a success only; the crash log comes home.
    expect((await queue.artifacts(failing.id)).map((a) => a.path)).toEqual(['crash.log']);
  });

  it('never reads through a symlink to a file or a folder outside the job directory', async () => {
    const outside = join(dir.dir, 'outside');
    mkdirSync(join(outside, 'secrets'), { recursive: true });
    writeFileSync(join(outside, 'secret.txt'), 'do not copy');
    writeFileSync(join(outside, 'secrets', 'key.txt'), 'do not copy either');
    const job = await queue.enqueue(
      {
        name: 'escaper',
        argv: [
          'sh',
          '-c',
          'ln -s "$1" leak.txt; ln -s "$2" leakdir; ln -s "$2" mine.txt.d; echo ok > mine.txt',
          'sh',
          join(outside, 'secret.txt'),
          join(outside, 'secrets'),
        ],
        outputs: ['**', 'leakdir/*', 'leak.txt'],
      },
      { target: 'here' },
    );
    await queue.start();
    await queue.drain({ ids: [job.id], timeoutMs: DRAIN_TIMEOUT_MS });
    expect((await queue.get(job.id))!.state).toBe('succeeded');
    const paths = (await queue.artifacts(job.id)).map((a) => a.path);
    expect(paths.filter((p) => !p.startsWith('.cm/'))).toEqual(['mine.txt']);
    // Nothing outside changed, and nothing landed outside the job's artifact folder.
    expect(readdirSync(outside).sort()).toEqual(['secret.txt', 'secrets']);
    expect(readdirSync(join(outside, 'secrets'))).toEqual(['key.txt']);
    expect(readdirSync(artifactsDir).sort()).toEqual(['.staging', job.id]);
  });

  it('detects a stored artifact whose bytes changed (checksum mismatch) when it is read', async () => {
    const job = await queue.enqueue(
      { name: 'writer', script: 'printf original > data.txt', outputs: ['data.txt'] },
      { target: 'here' },
    );
    await queue.start();
    await queue.drain({ ids: [job.id], timeoutMs: DRAIN_TIMEOUT_MS });
    writeFileSync(join(artifactsDir, job.id, 'data.txt'), 'tampered');
    await expect(text(await queue.readArtifact(job.id, 'data.txt'))).rejects.toMatchObject({
      code: 'E_ARTIFACT_CHECKSUM',
    });
  });

  it('retries a collection that met a transient fault; a persistent fault fails the job typed', async () => {
    runner.faults = [
      new CrystalMathError('E_TRANSPORT_CLOSED', '[test] connection dropped'),
      new CrystalMathError('E_SSH_TIMEOUT', '[test] no answer'),
    ];
    const ok = await queue.enqueue(
      { name: 'flaky', script: 'printf a > a.txt', outputs: ['a.txt'] },
      { target: 'here' },
    );
    await queue.start();
    await queue.drain({ ids: [ok.id], timeoutMs: DRAIN_TIMEOUT_MS });
    expect((await queue.get(ok.id))!.state).toBe('succeeded');
    expect(runner.collects).toBe(3);
    expect((await queue.artifacts(ok.id)).map((a) => a.path)).toEqual(['a.txt']);

    runner.faults = [new CrystalMathError('E_SSH_AUTH', '[test] key refused')];
    const bad = await queue.enqueue(
      { name: 'refused', script: 'printf b > b.txt', outputs: ['b.txt'] },
      { target: 'here' },
    );
    await queue.drain({ ids: [bad.id], timeoutMs: DRAIN_TIMEOUT_MS });
    const b = (await queue.get(bad.id))!;
    expect(b.state).toBe('failed');
    expect(b.reason).toMatch(/^collect failed: E_SSH_AUTH/);
    expect(await queue.artifacts(bad.id)).toEqual([]);
  });

  it('cleans the job directory on the target after a success when asked (on-success)', async () => {
    await queue.close();
    queue = await openWith('on-success');
    const good = await queue.enqueue(
      { name: 'tidy', script: 'printf t > t.txt', outputs: ['t.txt'] },
      { target: 'here' },
    );
    const bad = await queue.enqueue(
      {
        name: 'kept',
        script: 'printf k > k.log; exit 1',
        outputs: [{ glob: 'k.log', when: 'always' }],
      },
      { target: 'here' },
    );
    await queue.start();
    await queue.drain({ ids: [good.id, bad.id], timeoutMs: DRAIN_TIMEOUT_MS });
    const g = (await queue.get(good.id))!;
    const k = (await queue.get(bad.id))!;
    expect(g.state).toBe('succeeded');
    expect(k.state).toBe('failed');
    // Cleanup runs once the job has ended (its artifacts are safe), so it may finish after
    // drain() returns: wait for the directory to go, within a named generous bound.
    await vi.waitFor(() => expect(existsSync(String(g.handle!.data.jobDir))).toBe(false), {
      timeout: CLEANUP_TIMEOUT_MS,
      interval: 20,
    });
    expect(readFileSync(join(String(k.handle!.data.jobDir), 'k.log'), 'utf8')).toBe('k');
    expect(await text(await queue.readArtifact(good.id, 't.txt'))).toBe('t');
  });

  it('passes files, folders and globs from one job to the next with fromJob inputs (implied afterok)', async () => {
    const wf = await queue.submitWorkflow({
      name: 'chain',
      target: 'here',
      jobs: {
        make: {
          spec: {
            name: 'make',
            script:
              'mkdir -p save/sub; echo a > save/a.dat; echo b > save/sub/b.dat; echo 5.43 > lattice.txt',
            outputs: ['save/**', 'lattice.txt'],
          },
        },
        use: {
          spec: {
            name: 'use',
            script:
              'cat in/a.dat in/sub/b.dat lat.txt g/lattice.txt > seen.txt; printf "{\\"files\\": %s}" "$(wc -l < seen.txt)" > result.json',
            inputs: [
              { fromJob: 'make', path: 'save', to: 'in' },
              { fromJob: 'make', path: 'lattice.txt', to: 'lat.txt' },
              { fromJob: 'make', path: '*.txt', to: 'g' },
            ],
            outputs: ['seen.txt', { glob: 'result.json', required: true }],
          },
        },
      },
    });
    expect(wf.jobs.use!.state).toBe('waiting'); // the input implied the dependency
    expect(wf.jobs.use!.dependsOn).toEqual([{ job: wf.jobs.make!.id, condition: 'afterok' }]);
    await queue.start();
    await queue.drain({ timeoutMs: DRAIN_TIMEOUT_MS });
    const use = (await queue.get(wf.jobs.use!.id))!;
    expect(use.state, use.reason ?? '').toBe('succeeded');
    expect(use.result).toEqual({ files: 4 });
    expect(await text(await queue.readArtifact(use.id, 'seen.txt'))).toBe('a\nb\n5.43\n5.43\n');
  });

  it('fails a job whose fromJob input names no collected output, submitting nothing', async () => {
    const parent = await queue.enqueue(
      { name: 'p', script: 'echo x > x.txt', outputs: ['x.txt'] },
      { target: 'here' },
    );
    const child = await queue.enqueue(
      { name: 'c', argv: ['true'], inputs: [{ fromJob: parent.id, path: 'nope.txt', to: 'n' }] },
      { target: 'here' },
    );
    expect(child.dependsOn).toEqual([{ job: parent.id, condition: 'afterok' }]);
    await queue.start();
    await queue.drain({ timeoutMs: DRAIN_TIMEOUT_MS });
    const c = (await queue.get(child.id))!;
    expect(c.state).toBe('failed');
    expect(c.reason).toContain('spec.inputs[0].path');
    expect(c.reason).toContain('nope.txt');
    expect(c.handle).toBeNull();
    await expect(
      queue.submitWorkflow({
        name: 'bad',
        target: 'here',
        jobs: {
          a: {
            spec: { name: 'a', argv: ['true'], inputs: [{ fromJob: 'zz', path: 'x', to: 'x' }] },
          },
        },
      }),
    ).rejects.toMatchObject({ code: 'E_QUEUE_UNKNOWN_DEPENDENCY' });
  });

  it('stages a local folder recursively and refuses a missing local path at enqueue', async () => {
    const src = join(dir.dir, 'pseudo');
    mkdirSync(join(src, 'deep'), { recursive: true });
    writeFileSync(join(src, 'Si.upf'), 'si');
    writeFileSync(join(src, 'deep', 'O.upf'), 'o');
    const job = await queue.enqueue(
      {
        name: 'reader',
        script: 'cat pp/Si.upf pp/deep/O.upf > both.txt',
        inputs: [{ from: src, to: 'pp' }],
        outputs: ['both.txt'],
      },
      { target: 'here' },
    );
    await expect(
      queue.enqueue(
        { name: 'typo', argv: ['true'], inputs: [{ from: join(dir.dir, 'nope'), to: 'x' }] },
        { target: 'here' },
      ),
    ).rejects.toMatchObject({ code: 'E_VALIDATION', field: 'spec.inputs[0].from' });
    await queue.start();
    await queue.drain({ ids: [job.id], timeoutMs: DRAIN_TIMEOUT_MS });
    expect((await queue.get(job.id))!.state).toBe('succeeded');
    expect(await text(await queue.readArtifact(job.id, 'both.txt'))).toBe('sio');
    expect((await queue.counts()).total).toBe(1); // the refused one changed nothing
  });
});
