import { describe, expect, it } from 'vitest';
import {
  CrystalMathError,
  isCrystalMathError,
  type JobSpec,
  mergeResources,
  RESOURCE_FIELDS,
  ValidationError,
  validateJobSpec,
} from '../index.js';

function fieldOf(spec: unknown): string | undefined {
  try {
    validateJobSpec(spec as JobSpec);
    return undefined;
  } catch (e) {
    if (!isCrystalMathError(e)) throw e;
    return (e.details as { field?: string }).field;
  }
}

describe('validateJobSpec', () => {
  it('accepts a complete spec', () => {
    expect(
      fieldOf({
        name: 'scf.relax-1',
        argv: ['pw.x', '-in', 'scf.in'],
        workdir: 'calc',
        inputs: [{ content: 'x', to: 'calc/scf.in' }],
        outputs: ['calc/*.out'],
        env: { OMP_NUM_THREADS: '4' },
        modules: ['qe/7.2'],
        resources: {
          nodes: 1,
          tasks: 4,
          cpusPerTask: 2,
          memoryMb: 4000,
          walltimeSeconds: 3600,
          partition: 'debug',
          gpus: 'a100:2',
          array: '0-9%2',
          extraDirectives: ['--mail-type=END'],
        },
      }),
    ).toBeUndefined();
  });

  it.each([
    [{ argv: ['x'] }, 'spec.name'],
    [{ name: 'bad name', argv: ['x'] }, 'spec.name'],
    [{ name: 'n' }, 'spec.argv'],
    [{ name: 'n', argv: ['x'], script: 'y' }, 'spec.argv'],
    [{ name: 'n', argv: [] }, 'spec.argv'],
    [{ name: 'n', argv: ['a', 1] }, 'spec.argv[1]'],
    [{ name: 'n', argv: ['x'], workdir: '/abs' }, 'spec.workdir'],
    [{ name: 'n', argv: ['x'], inputs: [{ content: 'x', to: '../up' }] }, 'spec.inputs[0].to'],
    [{ name: 'n', argv: ['x'], env: { 'A-B': 'x' } }, 'spec.env.A-B'],
    [{ name: 'n', argv: ['x'], resources: { memoryMb: 0 } }, 'spec.resources.memoryMb'],
    [
      { name: 'n', argv: ['x'], resources: { walltimeSeconds: 1.5 } },
      'spec.resources.walltimeSeconds',
    ],
    [
      { name: 'n', argv: ['x'], resources: { partition: 'debug\n#SBATCH --x' } },
      'spec.resources.partition',
    ],
    [
      { name: 'n', argv: ['x'], resources: { extraDirectives: ['--x=$(id)'] } },
      'spec.resources.extraDirectives[0]',
    ],
    [
      { name: 'n', argv: ['x'], resources: { memoryMb: 1, memoryPerCpuMb: 1 } },
      'spec.resources.memoryPerCpuMb',
    ],
    [{ name: 'n', argv: ['x'], modules: ['a; rm -rf'] }, 'spec.modules[0]'],
  ])('rejects %j naming %s', (spec, field) => {
    expect(fieldOf(spec)).toBe(field);
  });
});

describe('errors', () => {
  it('are recognised by code across copies and serialise without the cause', () => {
    const err = new ValidationError('spec.name', 'is required', { cause: new Error('secret') });
    expect(err).toBeInstanceOf(CrystalMathError);
    expect(isCrystalMathError(err, 'E_VALIDATION')).toBe(true);
    expect(isCrystalMathError(err, 'E_NOT_FOUND')).toBe(false);
    expect(isCrystalMathError({ code: 'E_VALIDATION' })).toBe(false);
    expect(JSON.stringify(err)).not.toContain('secret');
    expect(err.name).toBe('ValidationError');
  });
});

describe('mergeResources and RESOURCE_FIELDS', () => {
  it('lets each field the job sets win, and job memory replace both memory defaults', () => {
    expect(mergeResources({ partition: 'debug', tasks: 2 }, { tasks: 4 })).toEqual({
      partition: 'debug',
      tasks: 4,
    });
    expect(mergeResources({ memoryMb: 4000, qos: 'q' }, { memoryPerCpuMb: 500 })).toEqual({
      qos: 'q',
      memoryPerCpuMb: 500,
    });
    expect(mergeResources({ memoryPerCpuMb: 500 }, { cpusPerTask: 2 })).toEqual({
      memoryPerCpuMb: 500,
      cpusPerTask: 2,
    });
    expect(mergeResources(undefined, undefined)).toEqual({});
  });

  it('lists every field validateResources checks', () => {
    for (const [name, kind] of Object.entries(RESOURCE_FIELDS)) {
      const bad = kind === 'flag' ? 'yes' : kind === 'text-list' ? 'x' : -1;
      expect(fieldOf({ name: 'r', argv: ['true'], resources: { [name]: bad } }), name).toBe(
        `spec.resources.${name}`,
      );
    }
  });
});
