// The suite every Transport implementation must pass. Call it from a test file with a factory
// that returns a fresh transport and a scratch directory on its target.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCrystalMathError } from '../errors.js';
import type { Transport } from '../transport.js';

export interface TransportFixture {
  readonly transport: Transport;
  /** An existing, empty scratch directory on the target (absolute, or relative to its home). */
  readonly root: string;
  /** Called once after the suite: remove the scratch directory, close the transport. */
  readonly cleanup?: () => Promise<void>;
}

export interface TransportConformanceOptions {
  /** Per-test timeout in ms. Default 30 000. */
  readonly timeoutMs?: number;
}

/** Strings that break naive quoting: the exec round trip must return them byte for byte. */
export const NASTY_STRINGS: readonly string[] = [
  '',
  ' ',
  'plain',
  'two words',
  "it's",
  '"double"',
  '$(touch /tmp/pwned)',
  '`id`',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell expansion that must stay literal
  '$HOME ${PATH}',
  'a\nb\nc',
  'tab\there',
  '\\back\\slash\\',
  '*?[a-z]{1,2}',
  ';&|<>()!#~',
  '-n',
  '--',
  'ünïcödé ✓ 雪',
  "'; rm -rf / #",
  '\r\n',
  // A line that a batch scheduler reading directives anywhere in a script (Grid Engine's `#$`)
  // would obey: a runner that lets it through puts the job in a directory that does not exist.
  '\n#$ -wd /nonexistent-cm\n#SBATCH --chdir=/nonexistent-cm\n',
  // sbatch obeys `#PBS` lines anywhere in a script, even inside a quoted string: `-N` would rename
  // the job and `-d` (an option sbatch does not know) makes it refuse the script outright.
  '\n#PBS -N injected\n#PBS -d /nonexistent-cm\n#SBATCH --x\n',
  // Words a shell reads specially in command position (see COMMAND_WORDS).
  'X=1',
  'PATH=/nonexistent',
  'if',
  'then',
  'fi',
  'done',
  'in',
  '!',
  '{',
  '}',
  '[[',
  'time',
  '%1',
];

/**
 * Words that are not programs but that a shell reads as something else in command position
 * (an assignment, a reserved word). Run as argv[0] they must fail like `execvp` does: exit 127.
 * A representative few (each costs a command on the target); core's own tests try every word
 * of `SHELL_RESERVED_WORDS` through `shCommand`.
 */
export const COMMAND_WORDS: readonly string[] = [
  'X=1',
  'PATH=/nonexistent',
  'if',
  'then',
  'done',
  'case',
  'function',
  '!',
  '{',
  '[[',
];

/** Registers the Transport conformance suite under `describe(name)`. */
export function transportConformance(
  name: string,
  makeFixture: () => Promise<TransportFixture>,
  options: TransportConformanceOptions = {},
): void {
  const timeout = options.timeoutMs ?? 30_000;
  describe(`Transport conformance: ${name}`, { timeout }, () => {
    let fx: TransportFixture;
    let t: Transport;
    let root: string;
    let local: string;
    const p = (rel: string): string => `${root}/${rel}`;

    beforeAll(async () => {
      fx = await makeFixture();
      t = fx.transport;
      root = fx.root;
      local = await mkdtemp(join(tmpdir(), 'cm-transport-conf-'));
    }, timeout);
    afterAll(async () => {
      await fx?.cleanup?.();
      await rm(local, { recursive: true, force: true });
    }, timeout);

    it('round-trips every argv element byte for byte', async () => {
      const r = await t.exec(['printf', '%s\\0', ...NASTY_STRINGS]);
      expect(r.exitCode).toBe(0);
      expect(r.stdout.split('\0').slice(0, -1)).toEqual(NASTY_STRINGS);
    });

    it('reports the exit code and separates stdout from stderr', async () => {
      const r = await t.exec(['sh', '-c', 'echo out; echo err >&2; exit 3']);
      expect(r).toMatchObject({ stdout: 'out\n', stderr: 'err\n', exitCode: 3, signal: null });
    });

    it('runs a script with sh', async () => {
      const r = await t.exec({ script: 'x=4; echo $((x * 2)); exit 0' });
      expect(r.stdout).toBe('8\n');
      expect(r.exitCode).toBe(0);
    });

    it('reports a missing program with exit code 127', async () => {
      const r = await t.exec(['cm-no-such-program-xyz']);
      expect(r.exitCode).toBe(127);
    });

    it(
      'runs a word in command position as a program, like execvp: an assignment or a reserved word exits 127',
      async () => {
        const commands = [...COMMAND_WORDS.map((w) => [w]), ['PATH=/nonexistent', 'true']];
        const results = await Promise.all(commands.map((argv) => t.exec(argv)));
        results.forEach((r, i) => {
          const argv = JSON.stringify(commands[i]);
          expect(r.exitCode, `argv ${argv} must fail like execvp: program not found`).toBe(127);
        });
      },
      timeout * 2,
    );

    it('rejects a NUL byte in an argv element, an env value, cwd or a script with a ValidationError naming the field', async () => {
      const field = async (run: () => Promise<unknown>): Promise<string | undefined> => {
        try {
          await run();
        } catch (e) {
          if (isCrystalMathError(e, 'E_VALIDATION')) return (e as { field?: string }).field;
          throw e;
        }
        return undefined;
      };
      expect(await field(() => t.exec(['printf', '%s', 'a\0b']))).toBe('argv[2]');
      expect(await field(() => t.exec(['true\0']))).toBe('argv[0]');
      expect(await field(() => t.exec(['true'], { env: { CM_X: 'a\0b' } }))).toBe(
        'options.env.CM_X',
      );
      expect(await field(() => t.exec(['true'], { cwd: 'a\0b' }))).toBe('options.cwd');
      expect(await field(() => t.exec({ script: 'true\0' }))).toBe('command.script');
    });

    it('reports the signal that ended a command', async () => {
      const r = await t.exec(['sh', '-c', 'kill -TERM $$']);
      expect(r.exitCode).toBeNull();
      expect(r.signal).toBe('SIGTERM');
    });

    it('honours cwd, env and stdin', async () => {
      await t.mkdir(p('cwd-test'));
      const env = { CM_A: 'va\'l "$x" `y`', CM_B: 'line1\nline2' };
      const r = await t.exec(['sh', '-c', 'pwd; printf "%s|%s|" "$CM_A" "$CM_B"; cat'], {
        cwd: p('cwd-test'),
        env,
        stdin: 'from stdin ✓',
      });
      const [pwd, rest] = [
        r.stdout.slice(0, r.stdout.indexOf('\n')),
        r.stdout.slice(r.stdout.indexOf('\n') + 1),
      ];
      expect(pwd.endsWith('/cwd-test')).toBe(true);
      expect(rest).toBe(`${env.CM_A}|${env.CM_B}|from stdin ✓`);
    });

    it('rejects an environment variable name that is not an identifier', async () => {
      await expect(t.exec(['true'], { env: { 'A;B': 'x' } })).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_VALIDATION'),
      );
    });

    it('streams output through onStdout and keeps large output intact', async () => {
      const chunks: Buffer[] = [];
      const r = await t.exec(
        ['sh', '-c', 'i=0; while [ $i -lt 20000 ]; do echo "line $i"; i=$((i+1)); done'],
        {
          onStdout: (c) => chunks.push(c),
        },
      );
      const lines = r.stdout.trimEnd().split('\n');
      expect(lines).toHaveLength(20_000);
      expect(lines[19_999]).toBe('line 19999');
      expect(Buffer.concat(chunks).toString('utf8')).toBe(r.stdout);
    });

    it('kills a command that exceeds its timeout and throws E_TRANSPORT_TIMEOUT', async () => {
      const marker = p('timeout-marker');
      const started = Date.now();
      await expect(
        t.exec(['sh', '-c', 'sleep 3; touch "$1"', 'sh', marker], {
          timeoutMs: 300,
        }),
      ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_TRANSPORT_TIMEOUT'));
      expect(Date.now() - started).toBeLessThan(2_900);
      await new Promise((r) => setTimeout(r, 3_500));
      expect(await t.stat(marker)).toBeNull();
    });

    it('stops a command when its AbortSignal fires and throws E_ABORTED', async () => {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 200);
      await expect(t.exec(['sleep', '5'], { signal: ac.signal })).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_ABORTED'),
      );
      await expect(t.exec(['true'], { signal: AbortSignal.abort() })).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_ABORTED'),
      );
    });

    it('runs 20 commands concurrently', async () => {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => t.exec(['printf', '%s', `n${i}`])),
      );
      expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 20 }, (_, i) => `n${i}`));
    });

    it('writes and reads files, text and binary, with partial reads', async () => {
      const bytes = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7) % 256);
      await t.writeFile(p('bin'), bytes);
      expect(Buffer.compare(await t.readFile(p('bin')), Buffer.from(bytes))).toBe(0);
      await t.writeFile(p('text.txt'), 'héllo\nworld\n');
      expect((await t.readFile(p('text.txt'))).toString('utf8')).toBe('héllo\nworld\n');
      expect((await t.readFile(p('text.txt'), { offset: 7 })).toString()).toBe('world\n');
      expect((await t.readFile(p('text.txt'), { offset: 7, length: 3 })).toString()).toBe('wor');
      expect((await t.readFile(p('text.txt'), { offset: 1000 })).length).toBe(0);
    });

    it('replaces an existing file atomically and applies the mode', async () => {
      await t.writeFile(p('replace'), 'one');
      await t.writeFile(p('replace'), 'two', { mode: 0o600 });
      expect((await t.readFile(p('replace'))).toString()).toBe('two');
      expect((await t.stat(p('replace')))?.mode).toBe(0o600);
      const r = await t.exec(['sh', '-c', 'ls -a "$1" | grep -c tmp || true', 'sh', root]);
      expect(r.stdout.trim()).toBe('0');
    });

    it('throws E_NOT_FOUND when reading a missing file', async () => {
      await expect(t.readFile(p('missing'))).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_NOT_FOUND'),
      );
    });

    it('stats files and directories and returns null for a missing path', async () => {
      await t.writeFile(p('s.txt'), '12345');
      const f = await t.stat(p('s.txt'));
      expect(f).toMatchObject({ size: 5, isFile: true, isDirectory: false });
      expect(f?.mtimeMs).toBeGreaterThan(Date.now() - 3_600_000);
      expect(await t.stat(root)).toMatchObject({ isDirectory: true, isFile: false });
      expect(await t.stat(p('nope'))).toBeNull();
    });

    it('creates nested directories idempotently and removes trees', async () => {
      await t.mkdir(p('a/b/c'));
      await t.mkdir(p('a/b/c'));
      await t.writeFile(p('a/b/c/f'), 'x');
      expect((await t.stat(p('a/b/c')))?.isDirectory).toBe(true);
      await t.remove(p('a'));
      expect(await t.stat(p('a'))).toBeNull();
      await t.remove(p('a'));
    });

    it('renames, replacing the destination', async () => {
      await t.writeFile(p('r1'), 'first');
      await t.writeFile(p('r2'), 'second');
      await t.rename(p('r1'), p('r2'));
      expect((await t.readFile(p('r2'))).toString()).toBe('first');
      expect(await t.stat(p('r1'))).toBeNull();
    });

    it('uploads and downloads files byte for byte', async () => {
      const src = join(local, 'src.bin');
      const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31) % 251));
      await writeFile(src, data);
      await t.upload(src, p('up.bin'));
      expect((await t.stat(p('up.bin')))?.size).toBe(data.length);
      const dst = join(local, 'down.bin');
      await t.download(p('up.bin'), dst);
      expect(Buffer.compare(await readFile(dst), data)).toBe(0);
      await expect(t.download(p('not-there'), join(local, 'x'))).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_NOT_FOUND'),
      );
    });
  });
}
