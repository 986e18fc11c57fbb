// What a user of `crystalmath` runs into day to day: the order of `list`, long waits, pipes,
// tables that stay tables, and the plain facts (ids, hosts, folders) a user needs. Driven
// in-process through main() and, where a real process matters, the built binary.

import { spawn, spawnSync } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Job } from '@crystalmath/queue';
import { afterAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../exit-codes.js';
import { colors } from '../format.js';
import { jobsTable } from '../render/job-view.js';
import { describeEvent } from '../render/render-watch.js';
import { crystalmath, LOCAL_CONFIG, project, until } from './cli-helpers.js';
import { BIN, schedulerProcess } from './process-helpers.js';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
async function newProject(config = LOCAL_CONFIG): Promise<string> {
  const d = await project(config);
  dirs.push(d);
  return d;
}

interface JobJson {
  id: string;
  name: string;
  state: string;
}

async function submit(dir: string, ...args: string[]): Promise<JobJson> {
  const r = await crystalmath(dir, ['submit', '--json', ...args]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as JobJson;
}

describe('list', () => {
  it('shows the newest jobs first, and its limit keeps the newest', async () => {
    const dir = await newProject();
    for (let i = 1; i <= 5; i++) await submit(dir, '--name', `job${i}`, '--', 'true');
    const r = await crystalmath(dir, ['list', '-l', '3']);
    expect(r.code).toBe(0);
    const names = [...r.stdout.matchAll(/^\d+\s+(job\d)\s/gm)].map((m) => m[1]);
    expect(names).toEqual(['job5', 'job4', 'job3']);
    expect(r.stdout).toMatch(/older jobs not shown: raise --limit/);
    const json = JSON.parse((await crystalmath(dir, ['list', '--json'])).stdout) as {
      jobs: JobJson[];
    };
    expect(json.jobs.map((j) => j.name)).toEqual(['job5', 'job4', 'job3', 'job2', 'job1']);
  });

  it('keeps a reason with newlines (an sbatch error) on its row', () => {
    const job = {
      id: '7',
      name: 'scf',
      state: 'failed',
      target: 'cluster',
      workflowId: null,
      workflowKey: null,
      attempt: 1,
      maxAttempts: 1,
      startedAt: null,
      endedAt: 1_000,
      createdAt: 0,
      reason: 'sbatch: error: Batch job submission failed\nsbatch: error: invalid partition',
    } as unknown as Job;
    const table = jobsTable([job], colors(false), 2_000);
    const lines = table.split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/submission failed \| sbatch: error: invalid partition$/);
    const line = describeEvent(
      {
        seq: 1,
        at: 0,
        type: 'job:state',
        jobId: '7',
        from: 'submitting',
        to: 'failed',
        target: 'cluster',
        reason: 'a\nb',
      } as never,
      new Map(),
      colors(false),
    );
    expect(line.split('\n')).toHaveLength(1);
  });
});

describe('usage errors and messages', () => {
  const oneLine = (s: string): void => {
    expect(s.trimEnd().split('\n')).toHaveLength(1);
    expect(s).toMatch(/^crystalmath: .* \[E_[A-Z_]+\]\n$/);
  };

  it('usage errors have the one-line form, honour --json, and suggest -- for submit', async () => {
    const dir = await newProject();
    const unknown = await crystalmath(dir, ['frobnicate']);
    expect(unknown.code).toBe(2);
    oneLine(unknown.stderr);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'.*\[E_USAGE\]/);
    const json = await crystalmath(dir, ['--json', 'list', '--limit', 'many']);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stderr)).toMatchObject({
      error: { code: 'E_USAGE', message: expect.stringMatching(/--limit must be an integer/) },
    });
    const ls = await crystalmath(dir, ['submit', 'ls', '-la']);
    expect(ls.code).toBe(2);
    oneLine(ls.stderr);
    expect(ls.stderr).toMatch(/unknown option '-la'.*put `--` before the command/);
  });

  it('config and job-file type errors speak of mappings and lists, not zod types', async () => {
    const dir = await newProject();
    const { writeFile: write } = await import('node:fs/promises');
    await write(join(dir, 'wf.yaml'), 'name: w\njobs: [a, b]\n');
    const r = await crystalmath(dir, ['workflow', 'submit', 'wf.yaml']);
    expect(r.code).toBe(4);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/jobs: expected a mapping \(key: value lines\), got a list/);
    expect(r.stderr).not.toMatch(/Invalid input|record/);
  });

  it('init over an existing config exits 7 (E_EXISTS); help carries examples', async () => {
    const dir = await newProject();
    const r = await crystalmath(dir, ['init']);
    expect(r.code).toBe(ExitCode.CONFLICT);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/\[E_EXISTS\]/);
    for (const cmd of [['submit'], ['list'], ['workflow', 'submit'], ['watch'], ['run']]) {
      const help = await crystalmath(dir, [...cmd, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout, cmd.join(' ')).toMatch(/Examples:\n {2}\$ crystalmath /);
    }
  });

  it('durations have one format', async () => {
    const { formatDuration } = await import('../format.js');
    expect([9_000, 10_000, 59_000, 61_000, 3_600_000].map(formatDuration)).toEqual([
      '9.0s',
      '10s',
      '59s',
      '1m01s',
      '1h00m',
    ]);
  });
});

describe('with a scheduler running in another process', () => {
  // The scheduler is a real `crystalmath run` process, as a user runs it.
  const session = schedulerProcess(() => newProject());

  it('refusals read as sentences: "job 5 succeeded", not "job 5 is succeeded"', async () => {
    const ok = await submit(session.dir(), '--wait', '--', 'true');
    const r = await crystalmath(session.dir(), ['retry', ok.id]);
    expect(r.code).toBe(ExitCode.CONFLICT);
    expect(r.stderr).toMatch(new RegExp(`retry: job ${ok.id} succeeded: only failed`));
  });

  it('Ctrl-C on --wait says the job keeps running; a retried job reads "2 (1 of 1 since retry)"', async () => {
    const controller = new AbortController();
    const waiting = crystalmath(
      session.dir(),
      ['submit', '--wait', '--name', 'long', '--', 'sleep', '30'],
      {
        signal: controller.signal,
      },
    );
    const running = await until(
      async () => {
        const page = JSON.parse(
          (await crystalmath(session.dir(), ['list', '--json', '-l', '5'])).stdout,
        ) as {
          jobs: JobJson[];
        };
        return page.jobs.find((j) => j.name === 'long' && j.state === 'running');
      },
      20_000,
      'the job running',
    );
    controller.abort();
    const r = await waiting;
    expect(r.code).toBe(ExitCode.INTERRUPTED);
    expect(r.stderr).toMatch(
      new RegExp(`job ${running.id} keeps running in the queue .*crystalmath cancel ${running.id}`),
    );
    expect((await crystalmath(session.dir(), ['cancel', running.id])).code).toBe(0);
    await until(
      async () => {
        const j = JSON.parse(
          (await crystalmath(session.dir(), ['show', running.id, '--json'])).stdout,
        ) as JobJson;
        return j.state === 'cancelled' ? true : undefined;
      },
      20_000,
      'cancelled',
    );
    expect((await crystalmath(session.dir(), ['retry', running.id])).code).toBe(0);
    await until(
      async () => {
        const j = JSON.parse(
          (await crystalmath(session.dir(), ['show', running.id, '--json'])).stdout,
        ) as JobJson;
        return j.state === 'running' ? true : undefined;
      },
      20_000,
      'running again',
    );
    const show = await crystalmath(session.dir(), ['show', running.id]);
    expect(show.stdout).toMatch(/attempt\s+2 \(1 of 1 since retry\)/);
    expect(show.stdout).toMatch(/native id\s+pid \d+/);
    expect(show.stdout).toMatch(/host\s+this machine/);
    expect(show.stdout).toMatch(new RegExp(`folder\\s+${session.dir()}/runs/\\S+`));
    expect(show.stdout).not.toMatch(/2 of 1/);
    await crystalmath(session.dir(), ['cancel', running.id]);
  });

  it('collect of a job with no outputs, and logs of a skipped job, say why', async () => {
    const { writeFile: write } = await import('node:fs/promises');
    const { existsSync } = await import('node:fs');
    const plain = await submit(session.dir(), '--wait', '--name', 'plain', '--', 'true');
    const c = await crystalmath(session.dir(), ['collect', plain.id, 'nothing-here']);
    expect(c.code).toBe(ExitCode.INVALID_INPUT);
    expect(c.stderr).toMatch(/declares no outputs: name the files with --glob/);
    expect(existsSync(join(session.dir(), 'nothing-here'))).toBe(false);

    await write(
      join(session.dir(), 'fails.yaml'),
      'name: fails\njobs:\n  c: { argv: [sh, -c, "exit 3"] }\n  d: { argv: ["true"], dependsOn: [c] }\n',
    );
    const wf = JSON.parse(
      (await crystalmath(session.dir(), ['workflow', 'submit', 'fails.yaml', '--wait', '--json']))
        .stdout,
    ) as { id: string; jobs: Record<string, JobJson> };
    const skipped = wf.jobs.d as JobJson;
    expect(skipped.state).toBe('skipped');
    const logs = await crystalmath(session.dir(), ['logs', skipped.id]);
    expect(logs.code).toBe(ExitCode.CONFLICT);
    expect(logs.stderr).toMatch(new RegExp(`job ${skipped.id} never ran \\(skipped`));
    expect(logs.stderr).not.toMatch(/has not started yet/);
    // The skipped step names the workflow key (and id) of the step that failed; the failed
    // step's reason does not repeat its state.
    const failed = wf.jobs.c as JobJson & { reason: string };
    expect(logs.stderr).toContain(`skipped: dependency c (job ${failed.id}) failed (afterok)`);
    expect(failed.reason).toBe('exit 3');
  });

  it('job and workflow ids cannot be confused; workflow cancel stops a whole workflow', async () => {
    const { writeFile: write } = await import('node:fs/promises');
    await write(
      join(session.dir(), 'slow.yaml'),
      'name: slow\njobs:\n  a: { argv: [sleep, "30"] }\n  b: { argv: [sleep, "30"] }\n  c: { argv: ["true"], dependsOn: [a, b] }\n',
    );
    const sub = await crystalmath(session.dir(), ['workflow', 'submit', 'slow.yaml']);
    expect(sub.code).toBe(0);
    const label = /submitted workflow (w(\d+)) \(slow\)/.exec(sub.stdout);
    expect(label, sub.stdout).not.toBeNull();
    const [, wref, wnum] = label as unknown as [string, string, string];
    // A job with the workflow's number exists (ids count from 1 in both): show says so.
    const asJob = await crystalmath(session.dir(), ['show', wnum]);
    expect(asJob.code).toBe(0);
    expect(asJob.stdout).toMatch(new RegExp(`^id\\s+${wnum}$`, 'm'));
    expect(asJob.stderr).toMatch(new RegExp(`workflow ${wref} \\(slow\\) also exists`));
    const asWorkflow = await crystalmath(session.dir(), ['show', wref]);
    expect(asWorkflow.stdout).toMatch(new RegExp(`slow\\s+workflow ${wref}`));
    const list = await crystalmath(session.dir(), ['list', '--workflow', wref]);
    expect(list.stdout.match(new RegExp(`\\s${wref}\\s`, 'g'))).toHaveLength(3);

    const cancel = await crystalmath(session.dir(), ['workflow', 'cancel', wref]);
    expect(cancel.code, cancel.stderr).toBe(0);
    expect(cancel.stdout).toMatch(/cancelling 3 job\(s\)/);
    await until(
      async () => {
        const w = JSON.parse(
          (await crystalmath(session.dir(), ['workflow', 'show', wref, '--json'])).stdout,
        ) as {
          done: boolean;
          jobs: Record<string, JobJson>;
        };
        return w.done ? w : undefined;
      },
      20_000,
      'workflow cancelled',
    );
    const again = await crystalmath(session.dir(), ['workflow', 'cancel', wnum]);
    expect(again.stdout).toMatch(/nothing to cancel/);
  });

  it('--wait holds one abort listener however long it waits', async () => {
    const controller = new AbortController();
    let most = 0;
    const sampler = setInterval(() => {
      most = Math.max(most, getEventListeners(controller.signal, 'abort').length);
    }, 50);
    try {
      const r = await crystalmath(session.dir(), ['submit', '--wait', '--', 'sleep', '4'], {
        signal: controller.signal,
      });
      expect(r.code, r.stderr).toBe(0);
    } finally {
      clearInterval(sampler);
    }
    // Several polls happened (500 ms apart over 4 s); each used to add a listener for good.
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(2);
  });

  it('watch --json whose reader goes away (| head -1) exits 0 without a stack trace', async () => {
    await submit(session.dir(), '--', 'true');
    const child = spawn(process.execPath, [BIN, 'watch', '--json', '--interval', '100'], {
      cwd: session.dir(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    // Read one line, then close our end, as `head -1` does.
    await new Promise<void>((resolve) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) {
          child.stdout.destroy();
          resolve();
        }
      });
    });
    // New events make watch write again, into the closed pipe.
    await submit(session.dir(), '--', 'true');
    const code = await exited;
    expect(err).not.toMatch(/EPIPE|Error|at /);
    expect(code).toBe(0);
  });
});

describe('start-up', () => {
  // Which modules a command loads, from a resolve hook that logs every specifier: a command
  // that loads less starts faster, whatever the machine's load (the figures are in bench/).
  /** The specifiers `crystalmath <args>` imports, each with the URL it resolved to. */
  async function importsOf(
    dir: string,
    args: readonly string[],
  ): Promise<{ specifier: string; url: string }[]> {
    const hooks = join(dir, 'log-hooks.mjs');
    await writeFile(
      hooks,
      `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(process.env.CM_LOAD_LOG, specifier + '\\t' + resolved.url + '\\n');
  return resolved;
}
`,
    );
    const register = join(dir, 'register.mjs');
    await writeFile(
      register,
      "import { register } from 'node:module';\nregister('./log-hooks.mjs', import.meta.url);\n",
    );
    const log = join(dir, `loaded-${args.join('-')}.log`);
    await writeFile(log, '');
    const r = spawnSync(process.execPath, ['--import', register, BIN, ...args], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, CM_LOAD_LOG: log },
    });
    expect(r.status, r.stderr).toBe(0);
    return (await readFile(log, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [specifier = '', url = ''] = line.split('\t');
        return { specifier, url };
      });
  }

  async function modulesLoaded(dir: string, args: readonly string[]): Promise<string[]> {
    return (await importsOf(dir, args)).map((i) => i.specifier);
  }

  /**
   * The text of every file of this package's `dist` that `crystalmath <args>` loads. The
   * executable is bundled (tsup.config.ts), so a workspace package shows as its code in the
   * chunks loaded, not as an import of its name.
   */
  async function distCodeLoaded(dir: string, args: readonly string[]): Promise<string> {
    const distUrl = new URL('../../dist/', import.meta.url).href;
    const files = new Set(
      (await importsOf(dir, args)).map((i) => i.url).filter((u) => u.startsWith(distUrl)),
    );
    const texts = await Promise.all([...files].map((u) => readFile(new URL(u), 'utf8')));
    return texts.join('\n');
  }

  it('--version loads no command, library or commander; list loads only what it needs', async () => {
    const dir = await newProject();
    const version = await modulesLoaded(dir, ['--version']);
    expect(version.filter((m) => !m.startsWith('node:') && !/^(fs|path|url)$/.test(m))).toEqual([
      expect.stringMatching(/dist\/bin\.js$/),
    ]);
    const list = await modulesLoaded(dir, ['list']);
    for (const unneeded of ['cli-progress', '@crystalmath/ssh-pool', 'pg'])
      expect(list).not.toContain(unneeded);
    // The same, as code: the queue's store is loaded; the SSH pool and the progress bar are not.
    const code = await distCodeLoaded(dir, ['list']);
    expect(code).toContain('function sqliteStore(');
    expect(code).not.toContain('[ssh-pool]');
    expect(code).not.toContain('GenericBar'); // cli-progress's own code
  });
});
