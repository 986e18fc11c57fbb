import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCrystalMathError } from '@crystalmath/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, pickTarget } from '../config/load-config.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cm-cli-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configFrom(name: string, text: string) {
  const sub = await mkdtemp(join(dir, 'c-'));
  await writeFile(join(sub, name), text);
  return loadConfig({ cwd: sub, env: {} });
}

async function configError(name: string, text: string): Promise<Error & { code: string }> {
  try {
    await configFrom(name, text);
  } catch (err) {
    expect(isCrystalMathError(err)).toBe(true);
    return err as Error & { code: string };
  }
  throw new Error('expected the config to be rejected');
}

describe('loadConfig', () => {
  it('reads a YAML config and resolves paths against its folder', async () => {
    const cfg = await configFrom(
      'crystalmath.config.yaml',
      `store: data/jobs.db
defaultTarget: laptop
targets:
  laptop: { type: local, root: runs, maxConcurrent: 2 }
  cluster:
    type: slurm
    ssh: { host: login, user: alice, privateKeyPath: keys/id }
    root: /scratch/alice/cm
    pollIntervalMs: 30000
    defaults: { partition: debug, walltimeSeconds: 3600 }
`,
    );
    const dirOf = cfg.file.slice(0, cfg.file.lastIndexOf('/'));
    expect(cfg.store).toEqual({ kind: 'sqlite', path: join(dirOf, 'data/jobs.db') });
    expect(cfg.targets.laptop).toMatchObject({
      type: 'local',
      root: join(dirOf, 'runs'),
      maxConcurrent: 2,
    });
    expect(cfg.targets.cluster).toMatchObject({
      type: 'slurm',
      root: '/scratch/alice/cm',
      ssh: { host: 'login', user: 'alice', privateKeyPath: join(dirOf, 'keys/id') },
    });
    expect(pickTarget(cfg, undefined)).toBe('laptop');
  });

  it('reads a JSON config with a postgres store', async () => {
    const cfg = await configFrom(
      'crystalmath.config.json',
      JSON.stringify({
        store: { postgres: 'postgres://u@127.0.0.1:54329/db' },
        targets: { a: { type: 'local' } },
      }),
    );
    expect(cfg.store).toEqual({ kind: 'postgres', url: 'postgres://u@127.0.0.1:54329/db' });
    expect(pickTarget(cfg, undefined)).toBe('a');
  });

  it('names the field of an unknown key (a typo is never ignored)', async () => {
    const err = await configError(
      'crystalmath.config.yaml',
      'targets:\n  laptop: { type: local, maxConcurent: 2 }\n',
    );
    expect(err.code).toBe('E_CONFIG');
    expect(err.message).toMatch(
      /crystalmath\.config\.yaml: targets\.laptop: unknown key\(s\) "maxConcurent"/,
    );
    expect(err.message).not.toContain('\n');
  });

  it('names the field of a wrong value', async () => {
    const err = await configError(
      'crystalmath.config.yaml',
      'targets:\n  laptop: { type: local, maxConcurrent: -1 }\n',
    );
    expect(err.message).toMatch(/targets\.laptop\.maxConcurrent/);
  });

  it('rejects an unknown target type naming the allowed ones', async () => {
    const err = await configError(
      'crystalmath.config.yaml',
      'targets:\n  x: { type: kubernetes }\n',
    );
    expect(err.message).toMatch(/targets\.x.*"local", "ssh", "slurm"/);
  });

  it('gives the line of a YAML syntax error', async () => {
    const err = await configError(
      'crystalmath.config.yaml',
      'targets:\n  a: { type: local\n  b: [\n',
    );
    expect(err.code).toBe('E_CONFIG');
    expect(err.message).toMatch(/invalid YAML at line \d+/);
  });

  it('checks default resources with the same rules as jobs', async () => {
    const err = await configError(
      'crystalmath.config.yaml',
      'targets:\n  c: { type: slurm, root: /x, defaults: { partition: "bad partition" } }\n',
    );
    expect(err.message).toMatch(/targets\.c\.defaults\.partition/);
  });

  it('reads a Grid Engine target and checks its defaults with the Grid Engine rules', async () => {
    const cfg = await configFrom(
      'crystalmath.config.yaml',
      `targets:
  ge:
    type: sge
    root: ge-runs
    pollIntervalMs: 30000
    deleteErrorJobs: false
    defaults: { partition: all.q, parallelEnvironment: smp, project: chem, walltimeSeconds: 3600 }
`,
    );
    const dirOf = cfg.file.slice(0, cfg.file.lastIndexOf('/'));
    expect(cfg.targets.ge).toMatchObject({
      type: 'sge',
      root: join(dirOf, 'ge-runs'),
      deleteErrorJobs: false,
      defaults: { parallelEnvironment: 'smp', project: 'chem' },
    });
    const err = await configError(
      'crystalmath.config.yaml',
      'targets:\n  ge: { type: sge, root: /x, defaults: { qos: high } }\n',
    );
    expect(err.code).toBe('E_CONFIG');
    expect(err.message).toMatch(/targets\.ge\.defaults\.qos/);
  });

  it('rejects a defaultTarget that is not declared', async () => {
    const err = await configError(
      'crystalmath.config.yaml',
      'defaultTarget: nope\ntargets:\n  a: { type: local }\n',
    );
    expect(err.message).toMatch(/defaultTarget: "nope" is not one of the declared targets \(a\)/);
  });

  it('requires at least one target', async () => {
    const err = await configError('crystalmath.config.yaml', 'targets: {}\n');
    expect(err.message).toMatch(/targets: declare at least one target/);
  });

  it('says where it looked when there is no config file', async () => {
    const empty = await mkdtemp(join(dir, 'empty-'));
    await expect(loadConfig({ cwd: empty, env: {} })).rejects.toThrow(
      /no crystalmath\.config\.json or crystalmath\.config\.yaml in .*empty-/,
    );
    await expect(loadConfig({ cwd: empty, env: {}, path: 'missing.yaml' })).rejects.toThrow(
      /config file not found: .*missing\.yaml/,
    );
  });

  it('finds the file named by CRYSTALMATH_CONFIG', async () => {
    const sub = await mkdtemp(join(dir, 'env-'));
    await writeFile(join(sub, 'other.yaml'), 'targets: { a: { type: local } }\n');
    const cfg = await loadConfig({
      cwd: dir,
      env: { CRYSTALMATH_CONFIG: join(sub, 'other.yaml') },
    });
    expect(Object.keys(cfg.targets)).toEqual(['a']);
  });

  it('refuses an unknown target when picking one, naming the known ones', async () => {
    const cfg = await configFrom(
      'crystalmath.config.yaml',
      'targets:\n  a: { type: local }\n  b: { type: local }\n',
    );
    expect(() => pickTarget(cfg, 'c')).toThrow(
      /unknown target "c" \(declared in crystalmath\.config\.yaml: a, b\)/,
    );
    expect(() => pickTarget(cfg, undefined)).toThrow(/no target given and no defaultTarget/);
  });
});
