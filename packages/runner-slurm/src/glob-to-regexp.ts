// Output globs (`*.out`, `results/**/*.json`) matched against relative paths listed on the
// target. Matching happens here, not in a remote shell, so no pattern is ever shell text.

/**
 * Compiles a glob into an anchored RegExp over `/`-separated relative paths.
 * `*` and `?` stay within one segment, `**` spans segments; every other character is literal.
 *
 * @example globToRegExp('out/**\/*.txt').test('out/a/b.txt') // => true
 */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i] as string;
    if (ch === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else {
          re += '.*';
        }
      } else {
        re += '[^/]*';
      }
    } else if (ch === '?') {
      re += '[^/]';
    } else {
      re += ch.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
    }
  }
  return new RegExp(`^${re}$`, 'u');
}
