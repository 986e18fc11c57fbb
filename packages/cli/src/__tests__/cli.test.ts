// The CLI driven as a user would, in-process through main(): real config files, a real SQLite
// store, real local processes. Every failure path must print ONE line naming the problem, exit
// with its documented code, and leave the store as it was.

import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../exit-codes.js';
import { crystalmath, LOCAL_CONFIG, project, until } from './cli-helpers.js';
import { schedulerProcess } from './process-helpers.js';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
async function newProject(config = LOCAL_CONFIG): Promise<string> {
  const d = await project(config);
  dirs.push(d);
  return d;
}
const oneLine = (s: string): void => {
  expect(s.trimEnd().split('\n')).toHaveLength(1);
  expect(s).toMatch(/^crystalmath: /);
};

describe('failures change nothing and say what is wrong in one line', () => {
  it('bad config: exit 3, names the file and field, creates no store', async () => {
    const dir = await newProject('targets:\n  local: { type: local, maxConcurent: 2 }\n');
    const r = await crystalmath(dir, ['submit', '--', 'true']);
    expect(r.code).toBe(ExitCode.CONFIG);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(
      /crystalmath\.config\.yaml: targets\.local: unknown key\(s\) "maxConcurent" \[E_CONFIG\]/,
    );
    expect(existsSync(join(dir, 'crystalmath.db'))).toBe(false);
  });

  it('no config at all: exit 3 and a hint', async () => {
    const dir = await newProject();
    await rm(join(dir, 'crystalmath.config.yaml'));
    const r = await crystalmath(dir, ['list']);
    expect(r.code).toBe(ExitCode.CONFIG);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/crystalmath init/);
  });

  it('unknown target: exit 3, names it and the declared ones, enqueues nothing', async () => {
    const dir = await newProject();
    const r = await crystalmath(dir, ['submit', '--target', 'mars', '--', 'true']);
    expect(r.code).toBe(ExitCode.CONFIG);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(
      /unknown target "mars" \(declared in crystalmath\.config\.yaml: local\)/,
    );
    expect(existsSync(join(dir, 'state/queue.db'))).toBe(false);
    const wf = join(dir, 'wf.yaml');
    await writeFile(wf, 'name: w\njobs:\n  a: { argv: ["true"], target: mars }\n');
    const w = await crystalmath(dir, ['workflow', 'submit', wf]);
    expect(w.code).toBe(ExitCode.CONFIG);
    expect(w.stderr).toMatch(/jobs\.a\.target: unknown target "mars"/);
  });

  it('bad job file: exit 4, names the file and field, enqueues nothing', async () => {
    const dir = await newProject();
    await crystalmath(dir, ['submit', '--', 'true']); // the store now exists with one job
    const file = join(dir, 'job.yaml');
    await writeFile(file, 'name: scf\nargv: [pw.x]\nworkdir: ../../etc\n');
    const r = await crystalmath(dir, ['submit', '--file', 'job.yaml']);
    expect(r.code).toBe(ExitCode.INVALID_INPUT);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/job\.yaml: job\.workdir/);
    await writeFile(file, 'name: scf\nargv: [pw.x\n');
    const y = await crystalmath(dir, ['submit', '--file', 'job.yaml']);
    expect(y.code).toBe(ExitCode.INVALID_INPUT);
    expect(y.stderr).toMatch(/job\.yaml: invalid YAML at line \d/);
    const wf = join(dir, 'wf.yaml');
    await writeFile(wf, 'name: w\njobs:\n  a: { argv: ["true"], dependsOn: [b] }\n');
    const w = await crystalmath(dir, ['workflow', 'submit', 'wf.yaml']);
    expect(w.code).toBe(ExitCode.INVALID_INPUT);
    expect(w.stderr).toMatch(/wf\.yaml: jobs\.a\.dependsOn\[0\]: no job "b"/);
    const list = JSON.parse((await crystalmath(dir, ['list', '--json'])).stdout) as {
      jobs: unknown[];
    };
    expect(list.jobs).toHaveLength(1);
  });

  it('a job file whose local input does not exist: exit 4, names the field, writes nothing', async () => {
    const dir = await newProject();
    await writeFile(
      join(dir, 'job.yaml'),
      'name: scf\nargv: [pw.x]\ninputs: [{ from: inputs/scf.in, to: scf.in }]\n',
    );
    const r = await crystalmath(dir, ['submit', '--file', 'job.yaml']);
    expect(r.code).toBe(ExitCode.INVALID_INPUT);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/job\.yaml: job\.inputs\[0\]\.from: .*inputs\/scf\.in does not exist/);
    expect(existsSync(join(dir, 'state/queue.db'))).toBe(false);
  });

  it('SLURM target defaults get the rules a job gets: exit 3 at load, naming the field, nothing written', async () => {
    const slurm = (extra: string): string =>
      `store: state/queue.db\ntargets:\n  hpc: { type: slurm, root: /tmp/cm-hpc, ${extra} }\n`;
    for (const [extra, field] of [
      [
        'defaults: { extraDirectives: ["--output=/etc/x"] }',
        /targets\.hpc\.defaults\.extraDirectives\[0\]: --output is set by the runner/,
      ],
      [
        'defaults: { extraDirectives: ["--err=/tmp/e"] }',
        /targets\.hpc\.defaults\.extraDirectives\[0\]/,
      ],
      ['defaults: { cpusPerTask: 0 }', /targets\.hpc\.defaults\.cpusPerTask/],
      [
        'skipDirectives: [--output]',
        /targets\.hpc\.skipDirectives\[0\]: --output is required by the runner/,
      ],
      ['skipDirectives: ["mem;x"]', /targets\.hpc\.skipDirectives\[0\]/],
    ] as const) {
      const dir = await newProject(slurm(extra));
      const r = await crystalmath(dir, ['submit', '--', 'true']);
      expect(r.code, extra).toBe(ExitCode.CONFIG);
      oneLine(r.stderr);
      expect(r.stderr, extra).toMatch(field);
      expect(r.stderr).toMatch(/\[E_CONFIG\]/);
      expect(existsSync(join(dir, 'state/queue.db')), extra).toBe(false);
    }
  });

  it('a bad SLURM or Grid Engine field of a job is refused at submit by the target runner: exit 4, naming the field, nothing enqueued', async () => {
    const config =
      'store: state/queue.db\ntargets:\n  local: { type: local }\n' +
      '  hpc: { type: slurm, root: /tmp/cm-hpc }\n  ge: { type: sge, root: /tmp/cm-ge }\n';
    const dir = await newProject(config);
    await crystalmath(dir, ['submit', '--target', 'local', '--', 'true']); // the store exists
    const file = join(dir, 'job.yaml');
    for (const [target, resources, field] of [
      ['hpc', '{ gres: "gpu;rm -rf /" }', /\bresources\.gres: /],
      ['hpc', '{ extraDirectives: ["--wrap=x"] }', /\bresources\.extraDirectives\[0\]: /],
      ['ge', '{ project: "a b" }', /\bresources\.project: must be a Grid Engine name/],
      ['ge', '{ qos: high }', /\bresources\.qos: is not supported by Grid Engine/],
    ] as const) {
      await writeFile(file, `name: scf\nargv: [pw.x]\nresources: ${resources}\n`);
      const r = await crystalmath(dir, ['submit', '--target', target, '--file', 'job.yaml']);
      expect(r.code, resources).toBe(ExitCode.INVALID_INPUT);
      oneLine(r.stderr);
      expect(r.stderr, resources).toMatch(field);
    }
    const list = JSON.parse((await crystalmath(dir, ['list', '--json'])).stdout) as {
      jobs: unknown[];
    };
    expect(list.jobs).toHaveLength(1);
  });

  it('a workflow with a cycle is refused whole', async () => {
    const dir = await newProject();
    const wf = join(dir, 'cycle.yaml');
    await writeFile(
      wf,
      'name: c\njobs:\n  a: { argv: ["true"], dependsOn: [b] }\n  b: { argv: ["true"], dependsOn: [a] }\n  c: { argv: ["true"] }\n',
    );
    const r = await crystalmath(dir, ['workflow', 'submit', 'cycle.yaml']);
    expect(r.code).toBe(ExitCode.INVALID_INPUT);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/E_QUEUE_CYCLE/);
    const list = JSON.parse((await crystalmath(dir, ['list', '--json'])).stdout) as {
      jobs: unknown[];
    };
    expect(list.jobs).toHaveLength(0);
  });

  it('unknown ids: exit 5; cancel with one bad id among good ones changes none', async () => {
    const dir = await newProject();
    const sub = JSON.parse(
      (await crystalmath(dir, ['submit', '--json', '--', 'sleep', '60'])).stdout,
    ) as { id: string };
    const r = await crystalmath(dir, ['cancel', sub.id, 'no-such-id']);
    expect(r.code).toBe(ExitCode.NOT_FOUND);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/no job with id "no-such-id"/);
    const job = JSON.parse((await crystalmath(dir, ['show', sub.id, '--json'])).stdout) as {
      state: string;
    };
    expect(job.state).toBe('ready');
    expect((await crystalmath(dir, ['show', 'nope'])).code).toBe(ExitCode.NOT_FOUND);
    expect((await crystalmath(dir, ['logs', 'nope'])).code).toBe(ExitCode.NOT_FOUND);
  });

  it('usage errors exit 2; --json errors are JSON on stderr', async () => {
    const dir = await newProject();
    expect((await crystalmath(dir, ['frobnicate'])).code).toBe(ExitCode.USAGE);
    expect((await crystalmath(dir, ['list', '--limit', 'many'])).code).toBe(ExitCode.USAGE);
    const r = await crystalmath(dir, ['--json', 'submit', '--target', 'mars', '--', 'true']);
    expect(JSON.parse(r.stderr)).toMatchObject({ error: { code: 'E_QUEUE_UNKNOWN_TARGET' } });
  });

  it('a bad duration for prune: exit 4', async () => {
    const dir = await newProject();
    const r = await crystalmath(dir, ['prune', '--older-than', 'soon']);
    expect(r.code).toBe(ExitCode.INVALID_INPUT);
    expect(r.stderr).toMatch(/--older-than/);
  });
});

describe('a session with the scheduler running in another process', () => {
  // The scheduler is a real `crystalmath run` process, as a user runs it.
  const session = schedulerProcess(() => newProject());

  it('submits a command and waits for it: exit 0, and logs shows its output', async () => {
    const r = await crystalmath(session.dir(), [
      'submit',
      '--wait',
      '--json',
      '--name',
      'greet',
      '--',
      'sh',
      '-c',
      'echo hello from a job',
    ]);
    expect(r.code).toBe(ExitCode.OK);
    const job = JSON.parse(r.stdout) as { id: string; state: string; name: string };
    expect(job).toMatchObject({ state: 'succeeded', name: 'greet' });
    const logs = await crystalmath(session.dir(), ['logs', job.id]);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toBe('hello from a job\n');
    const show = await crystalmath(session.dir(), ['show', job.id]);
    expect(show.stdout).toMatch(/state\s+succeeded/);
  });

  it("collects a finished job's outputs into a local folder", async () => {
    await writeFile(
      join(session.dir(), 'out-job.yaml'),
      'name: writer\nscript: "mkdir -p res; echo 42 > res/answer.txt; echo x > other.txt"\noutputs: ["res/*.txt"]\n',
    );
    const r = await crystalmath(session.dir(), [
      'submit',
      '--file',
      'out-job.yaml',
      '--wait',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const id = (JSON.parse(r.stdout) as { id: string }).id;
    const c = await crystalmath(session.dir(), ['collect', id, 'collected', '--json']);
    expect(c.code, c.stderr).toBe(0);
    expect(JSON.parse(c.stdout)).toMatchObject({ files: ['res/answer.txt'] });
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(join(session.dir(), 'collected/res/answer.txt'), 'utf8')).toBe('42\n');
    expect(existsSync(join(session.dir(), 'collected/other.txt'))).toBe(false);
  });

  it('lists and gets the outputs the queue collected, and show prints the result', async () => {
    await writeFile(
      join(session.dir(), 'art-job.yaml'),
      'name: art\nscript: "mkdir -p res; echo 7 > res/v.txt; printf \'{\\"e\\": 1}\' > result.json"\n' +
        'outputs: ["res/*.txt", { glob: result.json, required: true }]\n',
    );
    const r = await crystalmath(session.dir(), [
      'submit',
      '--file',
      'art-job.yaml',
      '--wait',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const id = (JSON.parse(r.stdout) as { id: string }).id;
    const list = await crystalmath(session.dir(), ['artifacts', id, '--json']);
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { path: string }[]).map((a) => a.path)).toEqual([
      'res/v.txt',
      'result.json',
    ]);
    const human = await crystalmath(session.dir(), ['artifacts', id]);
    expect(human.stdout).toMatch(/res\/v\.txt\s+2 B\s+[0-9a-f]{16}/);
    const get = await crystalmath(session.dir(), [
      'artifacts',
      'get',
      id,
      'res/v.txt',
      'v-copy.txt',
    ]);
    expect(get.code, get.stderr).toBe(0);
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(join(session.dir(), 'v-copy.txt'), 'utf8')).toBe('7\n');
    const missing = await crystalmath(session.dir(), ['artifacts', 'get', id, 'nope.txt']);
    expect(missing.code).not.toBe(0);
    oneLine(missing.stderr);
    expect(missing.stderr).toMatch(/no artifact nope\.txt/);
    const show = await crystalmath(session.dir(), ['show', id]);
    expect(show.stdout).toMatch(/result\s+\{"e":1\}/);
  });

  it('runs a workflow file whose steps pass files with fromJob inputs', async () => {
    await writeFile(
      join(session.dir(), 'pass.yaml'),
      `name: pass
jobs:
  prepare: { script: "echo 5.43 > lattice.txt", outputs: [lattice.txt] }
  calc:
    script: "cat lat.txt > seen.txt"
    inputs: [{ fromJob: prepare, path: lattice.txt, to: lat.txt }]
    outputs: [seen.txt]
`,
    );
    const sub = await crystalmath(session.dir(), [
      'workflow',
      'submit',
      'pass.yaml',
      '--wait',
      '--json',
    ]);
    expect(sub.code, sub.stderr).toBe(0);
    const calc = (JSON.parse(sub.stdout) as { jobs: Record<string, { id: string }> }).jobs.calc!;
    const get = await crystalmath(session.dir(), [
      'artifacts',
      'get',
      calc.id,
      'seen.txt',
      'seen-copy.txt',
    ]);
    expect(get.code, get.stderr).toBe(0);
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(join(session.dir(), 'seen-copy.txt'), 'utf8')).toBe('5.43\n');
  });

  it('--wait exits 9 when the job fails', async () => {
    const r = await crystalmath(session.dir(), ['submit', '--wait', '--', 'sh', '-c', 'exit 4']);
    expect(r.code).toBe(ExitCode.JOB_FAILED);
    expect(r.stdout).toMatch(/failed, exit 4/);
  });

  it('runs a workflow file to the end; list, workflow show and watch --once agree', async () => {
    const wf = join(session.dir(), 'dag.yaml');
    await writeFile(
      wf,
      `name: dag
jobs:
  prepare: { argv: [sh, -c, "echo 1"] }
  calc-a: { argv: [sh, -c, "echo a"], dependsOn: [prepare] }
  calc-b: { argv: [sh, -c, "echo b"], dependsOn: [prepare] }
  aggregate: { argv: [sh, -c, "echo done"], dependsOn: [calc-a, calc-b] }
`,
    );
    const sub = await crystalmath(session.dir(), ['workflow', 'submit', 'dag.yaml', '--json']);
    expect(sub.code).toBe(0);
    const wfId = (JSON.parse(sub.stdout) as { id: string }).id;
    await until(
      async () => {
        const s = JSON.parse(
          (await crystalmath(session.dir(), ['workflow', 'show', wfId, '--json'])).stdout,
        ) as { done: boolean };
        return s.done ? true : undefined;
      },
      30_000,
      'workflow done',
    );
    const show = await crystalmath(session.dir(), ['workflow', 'show', wfId]);
    expect(show.stdout).toMatch(/aggregate\s+succeeded/);
    const list = await crystalmath(session.dir(), ['list', '--workflow', wfId]);
    expect(list.stdout.match(/succeeded/g)).toHaveLength(4);
    const watch = await crystalmath(session.dir(), [
      'watch',
      '--once',
      '--ascii',
      '--workflow',
      wfId,
    ]);
    expect(watch.code).toBe(0);
    expect(watch.stdout).toMatch(/dag #\d+\s+\[#+\]\s+4\/4 .*done/);
    expect(watch.stdout).toMatch(/aggregate {2}\w+ → succeeded/);
  });

  it('cancel a running job, then retry it; cancel of a finished job exits 7', async () => {
    const sub = JSON.parse(
      (await crystalmath(session.dir(), ['submit', '--json', '--', 'sleep', '60'])).stdout,
    ) as { id: string };
    await until(
      async () => {
        const j = JSON.parse(
          (await crystalmath(session.dir(), ['show', sub.id, '--json'])).stdout,
        ) as {
          state: string;
        };
        return j.state === 'running' ? j : undefined;
      },
      20_000,
      'running',
    );
    const c = await crystalmath(session.dir(), ['cancel', sub.id]);
    expect(c.code).toBe(0);
    const cancelled = await until(
      async () => {
        const j = JSON.parse(
          (await crystalmath(session.dir(), ['show', sub.id, '--json'])).stdout,
        ) as {
          state: string;
        };
        return j.state === 'cancelled' ? j : undefined;
      },
      20_000,
      'cancelled',
    );
    expect(cancelled.state).toBe('cancelled');
    expect((await crystalmath(session.dir(), ['cancel', sub.id])).code).toBe(0); // idempotent
    const ok = JSON.parse(
      (await crystalmath(session.dir(), ['submit', '--wait', '--json', '--', 'true'])).stdout,
    ) as { id: string };
    const refused = await crystalmath(session.dir(), ['cancel', ok.id]);
    expect(refused.code).toBe(ExitCode.CONFLICT);
    expect(refused.stderr).toMatch(/already succeeded: nothing to cancel/);
    expect((await crystalmath(session.dir(), ['retry', ok.id])).code).toBe(ExitCode.CONFLICT);
    const retried = await crystalmath(session.dir(), ['retry', sub.id, '--json']);
    expect(retried.code).toBe(0);
    expect((JSON.parse(retried.stdout) as { state: string }).state).toMatch(
      /ready|waiting|submitting|queued|running/,
    );
    await crystalmath(session.dir(), ['cancel', sub.id]);
  });

  it('pause and resume a target; targets shows it', async () => {
    expect((await crystalmath(session.dir(), ['pause', 'local'])).stdout).toBe(
      'target local paused\n',
    );
    const t = JSON.parse((await crystalmath(session.dir(), ['targets', '--json'])).stdout) as {
      name: string;
      paused: boolean;
    }[];
    expect(t.find((x) => x.name === 'local')?.paused).toBe(true);
    expect((await crystalmath(session.dir(), ['pause', 'mars'])).code).toBe(ExitCode.CONFIG);
    expect((await crystalmath(session.dir(), ['resume', 'local'])).code).toBe(0);
  });
});

describe('init and targets check', () => {
  it('init writes a config that works, and refuses to overwrite it', async () => {
    const dir = await newProject();
    await rm(join(dir, 'crystalmath.config.yaml'));
    expect((await crystalmath(dir, ['init'])).code).toBe(0);
    const again = await crystalmath(dir, ['init']);
    expect(again.code).toBe(ExitCode.CONFLICT);
    expect(again.stderr).toMatch(/exists/);
    const check = await crystalmath(dir, ['targets', 'check', '--json']);
    expect(check.code).toBe(0);
    expect(JSON.parse(check.stdout)).toMatchObject({
      ok: true,
      targets: [{ name: 'local', ok: true }],
    });
  });

  it('an unreachable SSH host: exit 6 and a line naming the target and the failure', async () => {
    const { freePort } = await import('@crystalmath/testkit');
    const port = await freePort();
    const { generateKeyPairSync } = await import('node:crypto');
    const key = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
      publicKeyEncoding: { type: 'pkcs1', format: 'pem' },
    }).privateKey;
    const dir = await newProject(`targets:
  local: { type: local }
  lab: { type: ssh, ssh: { host: 127.0.0.1, port: ${port}, user: nobody, privateKeyPath: key.pem }, root: runs }
`);
    await writeFile(join(dir, 'key.pem'), key, { mode: 0o600 });
    const started = Date.now();
    const r = await crystalmath(dir, ['targets', 'check', '--timeout', '5000']);
    expect(r.code).toBe(ExitCode.UNREACHABLE);
    expect(r.stdout).toMatch(/local\s+local\s+ok/);
    expect(r.stdout).toMatch(/lab\s+ssh\s+FAILED/);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/1 of 2 target\(s\) failed: lab: .*E_SSH_CONNECT/);
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
