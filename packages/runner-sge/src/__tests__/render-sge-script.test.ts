// The qsub script generator: directives from typed resources, the extra-option allow-list, and
// the guarantee that no user value can put a `#$` line into the script (qsub reads them
// anywhere, even inside a quoted string — seen on the real Grid Engine).

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCrystalMathError, type JobSpec } from '@crystalmath/core';
import { NASTY_STRINGS } from '@crystalmath/core/testing';
import { describe, expect, it } from 'vitest';
import { renderSgeScript, sgeJobName } from '../render-sge-script.js';
import type { SgeResources } from '../sge-resources.js';

const render = (spec: Partial<JobSpec> & { resources?: SgeResources }, key = 'job-1-a1') =>
  renderSgeScript({ key, spec: { name: 'x', argv: ['true'], ...spec } as JobSpec });

const directives = (script: string): string[] =>
  script.split('\n').filter((l) => l.startsWith('#$'));

const rejects = (fn: () => unknown, field: RegExp): void => {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(isCrystalMathError(error, 'E_VALIDATION')).toBe(true);
  expect((error as Error).message).toMatch(field);
};

describe('renderSgeScript', () => {
  it('writes the runner directives for a minimal job', () => {
    expect(directives(render({}).script)).toEqual([
      '#$ -N job-1-a1',
      '#$ -S /bin/bash',
      '#$ -cwd',
      '#$ -o sge-$JOB_ID.out',
      '#$ -e sge-$JOB_ID.err',
      '#$ -r n',
    ]);
  });

  it('translates resources: slots through the PE, h_vmem per slot, h_rt, queue, project, account, array', () => {
    const r = render({
      resources: {
        tasks: 2,
        cpusPerTask: 2,
        parallelEnvironment: 'smp',
        memoryMb: 1000,
        walltimeSeconds: 90,
        partition: 'all.q',
        project: 'chem',
        account: 'grant-7',
        array: '1-9:2%3',
        extraDirectives: ['--l=scratch=10G', '--m=ea', '--notify', '--hold-jid=12'],
      },
    });
    expect(directives(r.script).slice(6)).toEqual([
      '#$ -pe smp 4',
      '#$ -l h_vmem=250M',
      '#$ -l h_rt=90',
      '#$ -q all.q',
      '#$ -P chem',
      '#$ -A grant-7',
      '#$ -t 1-9:2',
      '#$ -tc 3',
      '#$ -l scratch=10G',
      '#$ -m ea',
      '#$ -notify',
      '#$ -hold_jid 12',
    ]);
    expect(directives(r.script)[3]).toBe('#$ -o sge-$JOB_ID.$TASK_ID.out');
    expect([r.arrayTasks, r.arrayFirst]).toEqual([5, 1]);
    expect(directives(render({ resources: { memoryPerCpuMb: 300 } }).script)).toContain(
      '#$ -l h_vmem=300M',
    );
  });

  it('refuses what Grid Engine cannot express, naming the field', () => {
    rejects(() => render({ resources: { tasks: 2 } }), /parallelEnvironment/);
    rejects(() => render({ resources: { nodes: 2 } }), /resources\.nodes/);
    rejects(() => render({ resources: { gpus: 1 } }), /resources\.gpus/);
    rejects(() => render({ resources: { qos: 'high' } }), /resources\.qos/);
    rejects(() => render({ resources: { exclusive: true } }), /resources\.exclusive/);
    rejects(() => render({ resources: { array: '0-3' } }), /resources\.array/);
    rejects(() => render({ resources: { array: '1,3,5' } }), /resources\.array/);
    rejects(() => render({ resources: { project: 'a b' } }), /resources\.project/);
    rejects(() => render({ resources: { memoryMb: -1 } }), /memoryMb/);
  });

  it('allows only listed extra options', () => {
    for (const bad of [
      '--o=/etc/passwd',
      '--N=other',
      '--v=A=1',
      '--wd=/x',
      '--t=1-2',
      '--b=y',
      '--sync=y',
      '--pe=smp',
    ]) {
      rejects(() => render({ resources: { extraDirectives: [bad] } }), /extraDirectives\[0\]/);
    }
    rejects(
      () => render({ resources: { extraDirectives: ['-l h_rt=1'] } }),
      /extraDirectives\[0\]/,
    );
  });

  it('gives keys that start with a digit a name Grid Engine accepts', () => {
    expect(sgeJobName('9abc')).toBe('_9abc');
    expect(sgeJobName('job-1')).toBe('job-1');
    expect(directives(render({}, '9abc').script)[0]).toBe('#$ -N _9abc');
  });

  it('keeps every user value on one line, so none can become a #$ directive', () => {
    const evil = 'x\n#$ -N injected\n#$ -o /tmp/pwned\r\n';
    const r = render({
      argv: ['echo', evil, ...NASTY_STRINGS],
      env: { CM_EVIL: evil },
      pre: [['true', evil]],
      post: [['true', evil]],
    });
    expect(directives(r.script)).toEqual(directives(render({}).script));
    expect(r.script).not.toContain('\n#$ -N injected');
  });

  it('delivers those values byte for byte when bash runs the body', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-sge-render-'));
    try {
      const evil = 'x\n#$ -N injected\r\ny';
      const { script } = render({
        argv: [
          'sh',
          '-c',
          'printf "%s\\0" "$@" > out.bin; printf "%s" "$CM_V" > env.bin',
          'sh',
          evil,
          ...NASTY_STRINGS,
        ],
        env: { CM_V: evil },
      });
      writeFileSync(join(dir, 'job.sh'), script);
      mkdirSync(join(dir, '.cm'));
      execFileSync('bash', ['job.sh'], { cwd: dir, env: { PATH: process.env.PATH ?? '' } });
      expect(readFileSync(join(dir, 'out.bin'), 'utf8').split('\0').slice(0, -1)).toEqual([
        evil,
        ...NASTY_STRINGS,
      ]);
      expect(readFileSync(join(dir, 'env.bin'), 'utf8')).toBe(evil);
      expect(readFileSync(join(dir, '.cm/exit.none'), 'utf8')).toBe('0 \n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
