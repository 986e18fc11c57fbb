import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  isCrystalMathError,
  SH_LINE_BREAK_VARS,
  SHELL_RESERVED_WORDS,
  shCommand,
  shCommandOneLine,
  shExports,
  shExportsOneLine,
  shJoin,
  shQuote,
  shQuoteOneLine,
} from '../index.js';

/** What `sh -c <script>` prints, as raw bytes decoded as UTF-8. */
function sh(script: string): string {
  const r = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sh failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

const nasty = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({
    unit: fc.constantFrom(
      "'",
      '"',
      '$',
      '(',
      ')',
      '`',
      '\\',
      '\n',
      ' ',
      '\t',
      '!',
      '*',
      ';',
      '&',
      '|',
      'a',
      'é',
      '雪',
      '-',
      '#',
      '~',
      '{',
      '}',
    ),
    maxLength: 40,
  }),
  fc.string({ unit: 'binary', maxLength: 20 }).map((s) => s.replaceAll('\0', '')),
);

describe('shQuote', () => {
  it('round-trips 10,000 random strings byte for byte through sh -c printf', () => {
    // Batched: each sh invocation checks 100 strings, separated by NUL on output.
    fc.assert(
      fc.property(fc.array(nasty, { minLength: 100, maxLength: 100 }), (values) => {
        const out = sh(`printf '%s\\0' ${values.map((v) => shQuote(v)).join(' ')}`);
        expect(out.split('\0').slice(0, -1)).toEqual(values);
      }),
      { numRuns: 100 },
    );
  });

  it('leaves safe words bare and quotes everything else', () => {
    expect(shQuote('abc-1.2/x')).toBe('abc-1.2/x');
    expect(shQuote('')).toBe("''");
    expect(shQuote("it's")).toBe(`'it'\\''s'`);
    expect(shQuote('$(id)')).toBe(`'$(id)'`);
  });

  it('rejects NUL with a validation error naming the field', () => {
    try {
      shJoin(['ok', 'bad\0'], 'spec.argv');
      expect.unreachable();
    } catch (e) {
      expect(isCrystalMathError(e, 'E_VALIDATION')).toBe(true);
      expect((e as Error).message).toContain('spec.argv[1]');
    }
  });

  it('builds export lines that set exactly the given values', () => {
    const env = { A: "x'y", B: '$(touch /tmp/nope)\nz' };
    expect(sh(`${shExports(env)}\nprintf '%s|%s' "$A" "$B"`)).toBe(`${env.A}|${env.B}`);
    expect(() => shExports({ 'BAD NAME': 'x' })).toThrow(/BAD NAME/);
  });

  describe('shCommand', () => {
    /** Exit status and stderr of `<shell> -c <script>`. */
    function run(shell: string, script: string): { status: number | null; stderr: string } {
      const r = spawnSync(shell, ['-c', script], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH },
      });
      return { status: r.status, stderr: r.stderr };
    }

    for (const shell of ['/bin/sh', '/bin/bash']) {
      it(`runs an assignment-looking word as a program, like execvp (${shell})`, () => {
        expect(run(shell, shCommand(['X=1'])).status).toBe(127);
        expect(run(shell, `${shCommand(['PATH=/nonexistent', 'true'])}`).status).toBe(127);
        expect(run(shell, `${shCommand(['X=1', 'printf', 'ran'])}; echo " $?"`).status).toBe(0);
      });

      it(`runs a reserved word as a program: the script still parses (${shell})`, () => {
        const words = [...SHELL_RESERVED_WORDS].filter((w) => w !== 'time'); // also a program
        const script = words.map((w) => `${shCommand([w])}\necho "$?" >&2`).join('\n');
        const r = run(shell, script);
        const statuses = r.stderr.split('\n').filter((l) => /^\d+$/.test(l));
        expect(statuses, r.stderr).toEqual(words.map(() => '127'));
      });
    }

    it('quotes only the first word specially, and refuses an empty argv naming the field', () => {
      expect(shCommand(['printf', '%s', 'X=1'])).toBe('printf %s X=1');
      expect(shCommand(['X=1', 'if'])).toBe("'X=1' if");
      expect(shCommand(['if'])).toBe("'if'");
      expect(() => shCommand([], 'spec.pre[0]')).toThrow(/spec\.pre\[0\]/);
    });
  });
});

describe('shQuoteOneLine (values in a batch script)', () => {
  const prelude = SH_LINE_BREAK_VARS.join('\n');

  it('round-trips 2,000 random strings byte for byte, never putting a line break in the text', () => {
    fc.assert(
      fc.property(fc.array(nasty, { minLength: 100, maxLength: 100 }), (values) => {
        const words = values.map((v) => shQuoteOneLine(v));
        for (const w of words) expect(w).not.toMatch(/[\r\n]/);
        const out = sh(`${prelude}\nprintf '%s\\0' ${words.join(' ')}`);
        expect(out.split('\0').slice(0, -1)).toEqual(values);
      }),
      { numRuns: 20 },
    );
  });

  it('keeps a scheduler directive inside a value off a line of its own', () => {
    const value = 'x\n#PBS -N injected\r\n#SBATCH --x\n#$ -wd /nowhere\n';
    const word = shQuoteOneLine(value);
    expect(word).toBe(
      `x"$cm_nl"'#PBS -N injected'"$cm_cr""$cm_nl"'#SBATCH --x'"$cm_nl"'#$ -wd /nowhere'"$cm_nl"`,
    );
    expect(sh(`${prelude}\nprintf '%s' ${word}`)).toBe(value);
  });

  it('quotes a command word as a program, exports names checked, empty argv refused', () => {
    expect(shCommandOneLine(['X=1', 'a\nb'])).toBe(`'X=1' a"$cm_nl"b`);
    expect(sh(`${prelude}\n${shCommandOneLine(['printf', '%s', 'a\nb'])}`)).toBe('a\nb');
    expect(() => shCommandOneLine([], 'spec.post[1]')).toThrow(/spec\.post\[1\]/);
    expect(shExportsOneLine({ A: 'l1\nl2' })).toEqual([`export A=l1"$cm_nl"l2`]);
    expect(() => shExportsOneLine({ 'A-B': 'x' }, 'spec.env')).toThrow(/spec\.env\.A-B/);
  });
});
