// Inputs that come from elsewhere than the spec itself: another job's collected artifacts
// (`{ fromJob, path, to }`, which imply the dependency) and local paths (checked to exist at
// enqueue, so a typo is refused at the call and not discovered at submit, perhaps hours later).
// Before a submit, `stageFromJobs` copies the parents' artifacts out of the artifact store into
// a private folder and hands the runner plain `{ from, to }` inputs.

import { randomBytes } from 'node:crypto';
import { createWriteStream, statSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  type ArtifactStore,
  globToRegExp,
  type JobSpec,
  type StageIn,
  ValidationError,
} from '@crystalmath/core';
import type { ArtifactRow, JobRow, QueueStore } from './store/store.js';

type FromJob = Extract<StageIn, { fromJob: string }>;

/** The `fromJob` inputs of a spec, with their index. */
export function fromJobInputs(spec: JobSpec): { input: FromJob; i: number }[] {
  const out: { input: FromJob; i: number }[] = [];
  spec.inputs?.forEach((input, i) => {
    if ('fromJob' in input) out.push({ input, i });
  });
  return out;
}

/**
 * Refuses a local `from` input that does not exist (or is neither a file nor a folder), naming
 * the field. Read on this machine: the process that enqueues is expected to be the one whose
 * files the scheduler stages (or to share them).
 */
export function checkLocalInputs(spec: JobSpec, field: string): void {
  spec.inputs?.forEach((input, i) => {
    if (!('from' in input)) return;
    const st = statSync(input.from, { throwIfNoEntry: false });
    if (st === undefined)
      throw new ValidationError(`${field}.inputs[${i}].from`, `${input.from} does not exist`);
    if (!st.isFile() && !st.isDirectory())
      throw new ValidationError(
        `${field}.inputs[${i}].from`,
        `${input.from} is not a regular file or a folder`,
      );
  });
}

/** Where each of a parent's artifacts goes for one input: a file, a folder, or a glob. */
function select(
  artifacts: readonly ArtifactRow[],
  input: FromJob,
): { artifact: ArtifactRow; dest: string }[] {
  const exact = artifacts.find((a) => a.path === input.path);
  if (exact) return [{ artifact: exact, dest: input.to }];
  const prefix = `${input.path}/`;
  const inFolder = artifacts.filter((a) => a.path.startsWith(prefix));
  if (inFolder.length > 0)
    return inFolder.map((a) => ({
      artifact: a,
      dest: `${input.to}/${a.path.slice(prefix.length)}`,
    }));
  if (!/[*?[]/.test(input.path)) return [];
  const re = globToRegExp(input.path);
  return artifacts
    .filter((a) => re.test(a.path))
    .map((a) => ({ artifact: a, dest: `${input.to}/${a.path}` }));
}

/**
 * The spec a runner gets for a job with `fromJob` inputs: each replaced by `{ from, to }`
 * inputs of local copies (verified against their recorded sha256) under `stagingDir`.
 * `done()` removes the copies (after the submit). An input that names no job of the workflow
 * or no artifact is a ValidationError naming it: the job fails and nothing is submitted.
 */
export async function stageFromJobs(
  row: JobRow,
  spec: JobSpec,
  store: QueueStore,
  artifacts: ArtifactStore | null,
  stagingDir: string | null,
  signal: AbortSignal,
): Promise<{ spec: JobSpec; done(): Promise<void> }> {
  const wanted = fromJobInputs(spec);
  if (wanted.length === 0) return { spec, done: async () => undefined };
  if (artifacts === null || stagingDir === null)
    throw new ValidationError(
      'spec.inputs',
      'inputs from other jobs need an artifact store (openQueue({ artifacts }))',
    );
  let keys: Map<string, number> | null = null;
  if (row.workflow_id !== null) {
    const jobs = await store.workflowJobs(Number(row.workflow_id));
    keys = new Map(jobs.map((j) => [String(j.workflow_key), Number(j.id)]));
  }
  const dir = join(stagingDir, `in-${row.id}-a${row.attempt}-${randomBytes(4).toString('hex')}`);
  const done = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    const inputs: StageIn[] = [];
    let n = 0;
    for (const [k, input] of (spec.inputs ?? []).entries()) {
      if (!('fromJob' in input)) {
        inputs.push(input);
        continue;
      }
      const field = `spec.inputs[${k}]`;
      const parent =
        keys?.get(input.fromJob) ??
        (/^[1-9][0-9]*$/.test(input.fromJob) ? Number(input.fromJob) : null);
      if (parent === null)
        throw new ValidationError(`${field}.fromJob`, `no job "${input.fromJob}" in the workflow`);
      const chosen = select(await store.artifacts(parent), input);
      if (chosen.length === 0)
        throw new ValidationError(
          `${field}.path`,
          `job ${input.fromJob} has no collected output "${input.path}"`,
        );
      for (const { artifact, dest } of chosen) {
        const local = join(dir, String(n++));
        await mkdir(dirname(local), { recursive: true });
        const source = await artifacts.get(String(parent), artifact.path, {
          sha256: artifact.sha256,
          signal,
        });
        await pipeline(source, createWriteStream(local, { mode: Number(artifact.mode) || 0o644 }));
        inputs.push({ from: local, to: dest });
      }
    }
    return { spec: { ...spec, inputs }, done };
  } catch (error) {
    await done();
    throw error;
  }
}
