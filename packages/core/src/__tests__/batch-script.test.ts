import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { batchExitTrap, batchScriptBody } from '../index.js';

describe('batchScriptBody and batchExitTrap', () => {
  const evil = 'x\n#PBS -N injected\n#SBATCH --x\r\n#$ -wd /nowhere\n';

  it('keeps every value on one line and delivers it byte for byte under bash', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-batch-'));
    try {
      const body = batchScriptBody({
        spec: {
          name: 'b',
          argv: [
            'sh',
            '-c',
            'printf "%s" "$1" > out.txt; printf "%s" "$CM_V" > env.txt',
            'sh',
            evil,
          ],
          env: { CM_V: evil },
          workdir: 'w',
          post: [['sh', '-c', 'exit 9']],
        },
        userScriptFile: '"$cm_dir/.cm/script.sh"',
        directivePrefixes: ['#PBS', '#SBATCH', '#$'],
      });
      for (const line of body) expect(line).not.toMatch(/^\s*#/);
      const script = [
        '#!/bin/bash',
        'cm_dir=$PWD',
        'cm_id=none',
        ...batchExitTrap({ exitFile: '$cm_dir/.cm/exit.$cm_id', resetSignals: ['USR1'] }),
        ...body,
        '',
      ].join('\n');
      mkdirSync(join(dir, '.cm'));
      mkdirSync(join(dir, 'w'));
      writeFileSync(join(dir, 'job.sh'), script);
      execFileSync('bash', ['job.sh'], { cwd: dir, env: { PATH: process.env.PATH ?? '' } });
      expect(readFileSync(join(dir, 'w/out.txt'), 'utf8')).toBe(evil);
      expect(readFileSync(join(dir, 'w/env.txt'), 'utf8')).toBe(evil);
      // The post command's failure does not change the job's exit code.
      expect(readFileSync(join(dir, '.cm/exit.none'), 'utf8')).toBe('0 \n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the bad field of a command', () => {
    expect(() =>
      batchScriptBody({
        spec: { name: 'b', argv: ['true'], pre: [[]] },
        userScriptFile: 'x',
        directivePrefixes: [],
      }),
    ).toThrow(/spec\.pre\[0\]/);
  });
});
