// Converts a walltime in seconds to SLURM's `D-HH:MM:SS` form. SLURM counts time limits in
// whole minutes, so seconds are rounded UP: a job never gets less time than it asked for.

import { ValidationError } from '@crystalmath/core';

/**
 * Formats `seconds` as a SLURM `--time` value, rounded up to the next whole minute.
 *
 * @example formatWalltime(90) // => '0-00:02:00'
 * @example formatWalltime(86_400 + 3_600) // => '1-01:00:00'
 */
export function formatWalltime(seconds: number, field = 'resources.walltimeSeconds'): string {
  if (!Number.isInteger(seconds) || seconds < 1) {
    throw new ValidationError(field, 'must be a positive integer number of seconds');
  }
  const minutes = Math.ceil(seconds / 60);
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const mins = minutes % 60;
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${days}-${pad(hours)}:${pad(mins)}:00`;
}

/**
 * Parses a SLURM duration (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`,
 * `UNLIMITED`) into seconds; null for `UNLIMITED`, `INVALID` or anything unparseable.
 */
export function parseSlurmDuration(text: string): number | null {
  const t = text.trim();
  const m = /^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$/.exec(t);
  if (!m) return null;
  const [, d, a, b, c] = m;
  const n = (s: string | undefined): number => (s === undefined ? 0 : Number(s));
  if (d !== undefined) {
    // D-HH[:MM[:SS]]
    return n(d) * 86_400 + n(a) * 3_600 + n(b) * 60 + n(c);
  }
  if (c !== undefined) return n(a) * 3_600 + n(b) * 60 + n(c); // HH:MM:SS
  if (b !== undefined) return n(a) * 60 + n(b); // MM:SS
  return n(a) * 60; // MM
}
