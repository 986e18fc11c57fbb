import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJobFile, parseWorkflowFile, readDataFile } from '../job-file.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cm-cli-jobfile-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('job files', () => {
  it('turns a job file into a spec, resolving input paths against the file', async () => {
    const file = join(dir, 'job.yaml');
    await mkdir(join(dir, 'inputs'), { recursive: true });
    await writeFile(join(dir, 'inputs/scf.in'), '&control /\n');
    await writeFile(
      file,
      `name: scf
argv: [pw.x, -in, scf.in]
inputs: [{ from: inputs/scf.in, to: scf.in }]
resources: { cpusPerTask: 4, walltimeSeconds: 600 }
priority: 5
tags: [si]
`,
    );
    const parsed = parseJobFile(await readDataFile(file), file);
    expect(parsed.spec).toEqual({
      name: 'scf',
      argv: ['pw.x', '-in', 'scf.in'],
      inputs: [{ from: join(dir, 'inputs/scf.in'), to: 'scf.in' }],
      resources: { cpusPerTask: 4, walltimeSeconds: 600 },
    });
    expect(parsed.options('laptop')).toEqual({ target: 'laptop', priority: 5, tags: ['si'] });
  });

  it('refuses a local input that does not exist (or is neither a file nor a folder), naming the field', async () => {
    const file = join(dir, 'missing-input.yaml');
    const value = { name: 'x', argv: ['true'], inputs: [{ from: 'nope/scf.in', to: 'scf.in' }] };
    expect(() => parseJobFile(value, file)).toThrow(
      /job\.inputs\[0\]\.from: .*nope\/scf\.in does not exist/,
    );
    // A folder is staged recursively (issue 14); a device or socket is refused.
    const folder = {
      ...value,
      inputs: [
        { content: 'x', to: 'a' },
        { from: '.', to: 'b' },
      ],
    };
    expect(parseJobFile(folder, file).spec.inputs).toHaveLength(2);
    const device = {
      ...value,
      inputs: [
        { content: 'x', to: 'a' },
        { from: '/dev/null', to: 'b' },
      ],
    };
    expect(() => parseJobFile(device, file)).toThrow(
      /job\.inputs\[1\]\.from: .* is not a regular file or a folder/,
    );
    const wf = { name: 'w', jobs: { a: value } };
    expect(() => parseWorkflowFile(wf, join(dir, 'wf.yaml'))).toThrow(/jobs\.a\.inputs\[0\]\.from/);
  });

  it('rejects a job with both argv and script, naming the field', () => {
    expect(() =>
      parseJobFile({ name: 'x', argv: ['true'], script: 'true' }, '/j/job.yaml'),
    ).toThrow(/job\.yaml: job\.argv: exactly one of argv and script is required/);
  });

  it('rejects a workdir that escapes the job directory', () => {
    expect(() =>
      parseJobFile({ name: 'x', argv: ['true'], workdir: '../up' }, '/j/job.yaml'),
    ).toThrow(/job\.workdir/);
  });

  it('rejects unknown keys and wrong types', () => {
    expect(() => parseJobFile({ name: 'x', argv: ['true'], cpus: 4 }, '/j/job.yaml')).toThrow(
      /unknown key\(s\) "cpus"/,
    );
    expect(() => parseJobFile({ name: 'x', argv: 'true' }, '/j/job.yaml')).toThrow(
      /job\.yaml: argv:/,
    );
  });

  it('gives the line of a YAML syntax error', async () => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, 'name: x\nargv: [true\n');
    await expect(readDataFile(file)).rejects.toThrow(/broken\.yaml: invalid YAML at line \d/);
  });

  it('says when the file does not exist', async () => {
    await expect(readDataFile(join(dir, 'nope.yaml'))).rejects.toMatchObject({
      code: 'E_NOT_FOUND',
    });
  });
});

describe('workflow files', () => {
  it('turns a workflow file into a definition; job names default to keys', () => {
    const wf = parseWorkflowFile(
      {
        name: 'relax',
        target: 'laptop',
        jobs: {
          prepare: { argv: ['true'] },
          calc: { script: 'echo hi', dependsOn: ['prepare'], resources: { cpusPerTask: 2 } },
          report: { argv: ['true'], dependsOn: [{ job: 'calc', condition: 'afterany' }] },
        },
      },
      '/w/flow.yaml',
    );
    expect(wf.name).toBe('relax');
    expect(wf.target).toBe('laptop');
    expect(wf.jobs.calc).toEqual({
      spec: { name: 'calc', script: 'echo hi', resources: { cpusPerTask: 2 } },
      dependsOn: ['prepare'],
    });
    expect(wf.jobs.report?.dependsOn).toEqual([{ job: 'calc', condition: 'afterany' }]);
  });

  it('rejects a dependency on a job the workflow does not have, naming it', () => {
    expect(() =>
      parseWorkflowFile(
        { name: 'w', jobs: { a: { argv: ['true'], dependsOn: ['ghost'] } } },
        '/w/flow.yaml',
      ),
    ).toThrow(/flow\.yaml: jobs\.a\.dependsOn\[0\]: no job "ghost" in this workflow/);
  });

  it('rejects a bad resource inside a job, naming the job', () => {
    expect(() =>
      parseWorkflowFile(
        { name: 'w', jobs: { a: { argv: ['true'], resources: { gpus: 'x:y' } } } },
        '/w/f.yaml',
      ),
    ).toThrow(/jobs\.a\.resources\.gpus/);
  });

  it('rejects an empty workflow', () => {
    expect(() => parseWorkflowFile({ name: 'w', jobs: {} }, '/w/f.yaml')).toThrow(
      /at least one job/,
    );
  });
});
