import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalTransport } from '@crystalmath/core';
import { runnerConformance } from '@crystalmath/core/testing';
import { describe, expect, it } from 'vitest';
import { SessionRunner } from '../session-runner.js';

runnerConformance('SessionRunner (example)', async () => {
  const root = await mkdtemp(join(tmpdir(), 'cm-session-conf-'));
  return {
    runner: new SessionRunner({ transport: new LocalTransport(), root }),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

describe('SessionRunner beyond conformance', () => {
  it('cancel ends the whole process tree, not just the wrapper', async () => {
    const root = await mkdtemp(join(tmpdir(), 'cm-session-kill-'));
    const runner = new SessionRunner({ transport: new LocalTransport(), root });
    const h = await runner.submit({
      key: 'tree',
      spec: { name: 'tree', script: 'sleep 300 &\necho $! > child.pid\nwait\n' },
    });
    const pidFile = join(root, 'tree', 'child.pid');
    const { readFile } = await import('node:fs/promises');
    let pid = 0;
    for (let i = 0; i < 100 && !pid; i++) {
      pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
      if (!pid) await new Promise((r) => setTimeout(r, 50));
    }
    expect(pid).toBeGreaterThan(0);
    await runner.cancel(h);
    const alive = (): boolean => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 50 && alive(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(alive()).toBe(false);
    expect((await runner.poll([h]))[0]?.state).toBe('cancelled');
    await rm(root, { recursive: true, force: true });
  });

  it('is under 150 lines', async () => {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(new URL('../session-runner.ts', import.meta.url), 'utf8');
    expect(text.trimEnd().split('\n').length).toBeLessThan(150);
  });
});

describe('docs/writing-a-runner.md', () => {
  it('its conformance test snippet compiles as pasted, against this runner', async () => {
    const { execFileSync } = await import('node:child_process');
    const { mkdir, readFile, writeFile } = await import('node:fs/promises');
    const guide = await readFile(
      new URL('../../../../docs/writing-a-runner.md', import.meta.url),
      'utf8',
    );
    const snippet = [...guide.matchAll(/```ts\n([\s\S]*?)```/g)]
      .map((m) => m[1] ?? '')
      .find((code) => code.startsWith('// src/__tests__/my-runner.test.ts'));
    expect(snippet, 'the guide has its my-runner.test.ts snippet').toBeDefined();
    // A scratch project beside this one, so '@crystalmath/core' resolves as it would for a user.
    const here = new URL('../../', import.meta.url).pathname;
    const dir = await mkdtemp(join(here, '.snippet-'));
    try {
      await mkdir(join(dir, 'src/__tests__'), { recursive: true });
      await writeFile(join(dir, 'src/__tests__/my-runner.test.ts'), snippet ?? '');
      const runner = join(here, 'src/session-runner.js');
      await writeFile(
        join(dir, 'src/my-runner.ts'),
        `export { SessionRunner as MyRunner } from '${runner}';\n`,
      );
      await writeFile(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          extends: '../tsconfig.json',
          compilerOptions: { noEmit: true, rootDir: '..' },
          include: ['src'],
        }),
      );
      // The workspace's TypeScript (a root devDependency), found the way Node finds packages.
      const { createRequire } = await import('node:module');
      const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
      const out = (() => {
        try {
          execFileSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8' });
          return '';
        } catch (e) {
          return String((e as { stdout?: string }).stdout ?? e);
        }
      })();
      expect(out, 'tsc errors in the snippet').toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
