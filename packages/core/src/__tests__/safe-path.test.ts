import { posix } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isCrystalMathError, resolveInside, safeRelativePath } from '../index.js';

const segment = fc.oneof(
  fc.constantFrom('..', '.', '', 'a', 'b c', '...', '..a', '~', '\\..', '..\\', 'C:', '/'),
  fc.string({ maxLength: 6 }),
);
const pathArb = fc
  .array(segment, { maxLength: 8 })
  .map((parts) => parts.join(fc.sample(fc.constantFrom('/', '\\'), 1)[0]));

describe('safeRelativePath / resolveInside', () => {
  it('never lets any input escape the root', () => {
    const root = '/srv/jobs/root';
    fc.assert(
      fc.property(fc.oneof(pathArb, fc.string({ maxLength: 30 })), (p) => {
        let resolved: string;
        try {
          resolved = resolveInside(root, p, 'spec.workdir');
        } catch (e) {
          expect(isCrystalMathError(e, 'E_PATH_UNSAFE')).toBe(true);
          return;
        }
        expect(resolved.startsWith(`${root}/`)).toBe(true);
        expect(posix.normalize(resolved)).toBe(resolved);
        expect(posix.relative(root, resolved).split('/')).not.toContain('..');
      }),
      { numRuns: 20_000 },
    );
  });

  it('normalises harmless forms', () => {
    expect(safeRelativePath('a/./b//c/')).toBe('a/b/c');
    expect(safeRelativePath('a\\b')).toBe('a/b');
    expect(resolveInside('/r/', 'x/y')).toBe('/r/x/y');
  });

  it.each([
    ['../x'],
    ['a/../../x'],
    ['a/..'],
    ['/etc/passwd'],
    ['\\\\server\\share'],
    ['C:\\Windows'],
    ['a\0b'],
    ['a\nb'],
    [''],
    ['.'],
    ['./'],
  ])('rejects %j with an error naming the field', (p) => {
    expect(() => safeRelativePath(p, 'spec.inputs[0].to')).toThrow(/spec\.inputs\[0\]\.to/);
  });
});
