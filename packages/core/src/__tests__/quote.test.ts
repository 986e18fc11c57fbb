import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isCrystalMathError, shExports, shJoin, shQuote } from '../index.js';

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
});
