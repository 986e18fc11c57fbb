// Pure parts: exit records, poll output parsing, and the generated
// wrapper checked by real shells (dash and bash parse it; values survive a round trip).

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobSpec } from '@crystalmath/core';
import { describe, expect, it } from 'vitest';
import {
  POLL_SCRIPT,
  type PollTarget,
  parseExitRecord,
  parsePollOutput,
  pollInput,
} from '../poll-script.js';
import { renderWrapper, sleepSeconds } from '../render-wrapper.js';

describe('exit records and poll output', () => {
  it('parses every exit state with its code, signal and times', () => {
    expect(parseExitRecord('v1 failed 137 100 105 exit status 137')).toEqual({
      state: 'failed',
      nativeState: 'exited',
      exitCode: 137,
      signal: 'SIGKILL',
      startedAt: 100_000,
      endedAt: 105_000,
      reason: 'exit status 137',
    });
    expect(parseExitRecord('v1 succeeded 0 1 2 ')).toMatchObject({
      state: 'succeeded',
      exitCode: 0,
    });
    expect(parseExitRecord('v1 cancelled - 1 2 cancelled before it started')).toMatchObject({
      state: 'cancelled',
    });
    expect(parseExitRecord('v1 running 0 1 2 x')).toBeNull();
    expect(parseExitRecord('garbage')).toBeNull();
  });

  const target = (jobDir: string): PollTarget => ({
    jobDir,
    wrapperPid: 10,
    wrapperStartTime: 20,
    pid: undefined,
    startTime: undefined,
    bootId: 'b-1',
    startedAt: 5_000,
  });

  it('sends two lines per job, the directory verbatim on its own line', () => {
    expect(pollInput([target('a b/$(x)')])).toBe('10 20 - - b-1\na b/$(x)\n');
  });

  it('maps each kind of answer, and refuses output that does not cover every job', () => {
    const ts = [target('a'), target('b'), target('c'), target('d')];
    const out =
      '0 running wrapper\n1 dead 0 0 1 1 \n2 dead 0 0 1 1 cannot enter workdir w\n3 nodir\n@@cm:end 4\n';
    const st = parsePollOutput(out, ts);
    expect(st?.map((x) => x.state)).toEqual(['running', 'lost', 'failed', 'lost']);
    expect(st?.[0]?.startedAt).toBe(5_000);
    expect(st?.[2]?.reason).toMatch(/cannot enter workdir w/);
    expect(parsePollOutput('0 running wrapper\n@@cm:end 1\n', ts)).toBeNull();
    expect(parsePollOutput('0 running wrapper\n1 nodir\n2 nodir\n', ts)).toBeNull();
  });

  it('is a script that dash and bash both parse', () => {
    for (const sh of ['dash', 'bash']) {
      expect(() => execFileSync(sh, ['-n', '-c', POLL_SCRIPT])).not.toThrow();
    }
  });
});

describe('renderWrapper', () => {
  const base: JobSpec = {
    name: 'w',
    argv: ['printf', '%s', "it's $(x)"],
    workdir: 'a b/c',
    env: { V: 'line1\nline2 $HOME' },
    modules: ['gcc/12'],
    pre: [['true']],
    post: [['true']],
    resources: { walltimeSeconds: 5, cpusPerTask: 2 },
  };

  it('renders a wrapper that dash and bash both parse, for argv and script jobs', () => {
    for (const spec of [
      base,
      { ...base, argv: undefined, script: 'echo hi' },
      { name: 'min', argv: ['true'] },
    ]) {
      const { wrapper } = renderWrapper({
        key: 'k-1',
        spec: spec as JobSpec,
        killGraceMs: 1500,
        shell: '/bin/sh',
      });
      for (const sh of ['dash', 'bash']) {
        expect(() => execFileSync(sh, ['-n', '-c', wrapper])).not.toThrow();
      }
    }
  });

  it('keeps multi-line env values byte for byte (no indentation inside quotes)', async () => {
    const { wrapper } = renderWrapper({ key: 'k-1', spec: base, killGraceMs: 0, shell: '/bin/sh' });
    expect(wrapper).toContain("export V='line1\nline2 $HOME'");
    expect(wrapper).toContain('export OMP_NUM_THREADS=2');
    expect(wrapper).toContain('cm_walltime=5');
  });

  it('rejects environment names the wrapper keeps for itself', () => {
    for (const name of ['cm', 'cm_dir', 'cm_rc']) {
      expect(() =>
        renderWrapper({
          key: 'k',
          spec: { name: 'x', argv: ['true'], env: { [name]: '1' } },
          killGraceMs: 0,
          shell: '/bin/sh',
        }),
      ).toThrow(expect.objectContaining({ code: 'E_VALIDATION', field: `spec.env.${name}` }));
    }
    expect(() =>
      renderWrapper({
        key: 'k',
        spec: { name: 'x', argv: ['true'], env: { CM_OK: '1', cmd: '1' } },
        killGraceMs: 0,
        shell: '/bin/sh',
      }),
    ).not.toThrow();
  });

  it('formats the grace period for sleep', () => {
    expect(sleepSeconds(10_000)).toBe('10');
    expect(sleepSeconds(1_500)).toBe('1.5');
    expect(sleepSeconds(250)).toBe('0.25');
    expect(sleepSeconds(0)).toBe('0');
  });

  it('the job mode runs setup and the command in its cwd with the values intact', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cm-rp-wrap-'));
    try {
      const spec: JobSpec = {
        name: 'direct',
        argv: [
          'sh',
          '-c',
          'printf "%s|%s|%s" "$1" "$V" "$(basename "$PWD")" > ../../out.txt',
          'sh',
          "it's $(x)",
        ],
        workdir: 'a b/c',
        env: { V: 'v $HOME `id`' },
      };
      const { wrapper } = renderWrapper({ key: 'k', spec, killGraceMs: 0, shell: '/bin/sh' });
      execFileSync('mkdir', ['-p', join(dir, '.cm')]);
      await writeFile(join(dir, '.cm', 'wrapper.sh'), wrapper);
      execFileSync('/bin/sh', ['.cm/wrapper.sh', 'job'], { cwd: dir });
      const out = execFileSync('cat', [join(dir, 'out.txt')], { encoding: 'utf8' });
      expect(out).toBe("it's $(x)|v $HOME `id`|c");
      expect(existsSync(join(dir, '.cm', 'setup'))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('never accepts a NUL byte anywhere in a value', () => {
    expect(() =>
      renderWrapper({
        key: 'k',
        spec: { name: 'x', argv: ['a\0b'] },
        killGraceMs: 0,
        shell: '/bin/sh',
      }),
    ).toThrow(expect.objectContaining({ code: 'E_VALIDATION' }));
  });
});
