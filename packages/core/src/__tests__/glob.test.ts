// globToRegExp: the outputs-glob reading every runner shares.

import { describe, expect, it } from 'vitest';
import { globToRegExp } from '../glob.js';

describe('globToRegExp', () => {
  it.each([
    ['*.out', 'scf.out', true],
    ['*.out', 'a/scf.out', false],
    ['**/*.out', 'scf.out', true],
    ['**/*.out', 'a/b/scf.out', true],
    ['out/**', 'out/a/b', true],
    ['file?.txt', 'file1.txt', true],
    ['file?.txt', 'file/.txt', false],
    ['[ab].txt', 'a.txt', true],
    ['[!ab].txt', 'a.txt', false],
    ['a+b(c).txt', 'a+b(c).txt', true],
    ['$x.txt', '$x.txt', true],
  ])('%s matches %s: %s', (glob, path, expected) => {
    expect(globToRegExp(glob).test(path)).toBe(expected);
  });
});
