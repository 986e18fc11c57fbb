// Confinement for every path that comes from a job spec or a template: relative, no `..`,
// no NUL, resolved inside a root. The original tool allowed `../` traversal in templates.

import { posix } from 'node:path';
import { UnsafePathError } from './errors.js';

/**
 * Validates a relative path and returns it normalised with `/` separators.
 *
 * Rejects: empty strings, absolute paths (`/x`, `C:\x`, `\\server`), any `..` segment,
 * NUL bytes and newlines. `.` segments and repeated slashes are removed.
 *
 * @example safeRelativePath('out/./a.txt', 'spec.workdir') // => 'out/a.txt'
 */
export function safeRelativePath(path: string, field = 'path'): string {
  if (typeof path !== 'string') throw new UnsafePathError(field, 'must be a string');
  if (path.length === 0) throw new UnsafePathError(field, 'must not be empty');
  if (path.includes('\0')) throw new UnsafePathError(field, 'must not contain a NUL byte');
  if (/[\r\n]/.test(path)) throw new UnsafePathError(field, 'must not contain a line break');
  const unified = path.replaceAll('\\', '/');
  if (unified.startsWith('/') || /^[A-Za-z]:/.test(unified)) {
    throw new UnsafePathError(field, `must be relative, got an absolute path`);
  }
  const segments = unified.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) throw new UnsafePathError(field, 'must not contain ".." segments');
  if (segments.length === 0) throw new UnsafePathError(field, 'must name something below the root');
  return segments.join('/');
}

/**
 * Resolves a relative path inside `root` (a POSIX path, as on a remote host) and returns the
 * joined path. Throws UnsafePathError for any input that would leave `root`.
 */
export function resolveInside(root: string, path: string, field = 'path'): string {
  const rel = safeRelativePath(path, field);
  const base = posix.normalize(root.replaceAll('\\', '/'));
  const joined = posix.join(base, rel);
  const prefix = base.endsWith('/') ? base : `${base}/`;
  if (!joined.startsWith(prefix)) throw new UnsafePathError(field, 'escapes its root');
  return joined;
}
