// SgeRunner behaviour that needs no scheduler: `validate` refuses what `submit` would, without
// I/O, naming the field under the caller's prefix.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type JobSpec, LocalTransport } from '@crystalmath/core';
import { countingTransport } from '@crystalmath/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SgeRunner } from '../sge-runner.js';

function thrown(fn: () => unknown): { field?: string; code?: string } {
  try {
    fn();
  } catch (e) {
    return e as { field?: string; code?: string };
  }
  throw new Error('expected a throw');
}

describe('SgeRunner without a scheduler', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cm-sge-unit-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('validate(spec) refuses a bad Grid Engine field without I/O, naming the field under the caller prefix', () => {
    const counted = countingTransport(new LocalTransport());
    const runner = new SgeRunner({
      transport: counted.transport,
      root,
      defaults: { parallelEnvironment: 'smp' },
    });
    expect(runner.capabilities.validate).toBe(true);
    const bad = (resources: Record<string, unknown>): JobSpec =>
      ({ name: 'bad', argv: ['true'], resources }) as JobSpec;
    // Four slots through the default parallel environment: fine.
    expect(() => runner.validate(bad({ tasks: 4 }))).not.toThrow();
    expect(thrown(() => runner.validate(bad({ project: 'a b' }))).field).toBe(
      'spec.resources.project',
    );
    expect(thrown(() => runner.validate(bad({ qos: 'high' }), 'items[2].spec')).field).toBe(
      'items[2].spec.resources.qos',
    );
    expect(
      thrown(() => runner.validate(bad({ extraDirectives: ['--V'] }), 'options.spec')).field,
    ).toBe('options.spec.resources.extraDirectives[0]');
    expect(thrown(() => runner.validate(bad({ parallelEnvironment: 'x;y' }))).code).toBe(
      'E_VALIDATION',
    );
    expect(counted.execs()).toBe(0);
  });
});
