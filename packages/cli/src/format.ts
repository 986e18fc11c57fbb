// Small formatting helpers for human output: aligned tables, durations, relative times,
// progress bars, and colour only when the stream is a terminal and NO_COLOR is unset.

import type { JobState } from '@crystalmath/queue';

export interface Colors {
  readonly bold: (s: string) => string;
  readonly dim: (s: string) => string;
  readonly red: (s: string) => string;
  readonly green: (s: string) => string;
  readonly yellow: (s: string) => string;
  readonly cyan: (s: string) => string;
}

const wrap =
  (open: number, close: number) =>
  (s: string): string =>
    `\x1b[${open}m${s}\x1b[${close}m`;
const plain = (s: string): string => s;

/** ANSI colours when `enabled`, identity functions otherwise. */
export function colors(enabled: boolean): Colors {
  if (!enabled)
    return { bold: plain, dim: plain, red: plain, green: plain, yellow: plain, cyan: plain };
  return {
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    red: wrap(31, 39),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
    cyan: wrap(36, 39),
  };
}

/** Colour of a job state: green done, red bad, yellow active, dim waiting. */
export function stateColor(c: Colors, state: JobState | string): (s: string) => string {
  switch (state) {
    case 'succeeded':
      return c.green;
    case 'failed':
    case 'timeout':
    case 'cancelled':
      return c.red;
    case 'running':
    case 'submitting':
    case 'queued':
      return c.yellow;
    case 'skipped':
    case 'waiting':
      return c.dim;
    default:
      return plain;
  }
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping ANSI escapes is the point
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;

/** Visible width of a string (ANSI escapes removed). */
export function visibleLength(s: string): number {
  return s.replace(ANSI, '').length;
}

/** Rows as aligned columns; the first row is the header. */
export function table(rows: readonly (readonly string[])[], gap = 2): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, visibleLength(cell));
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) =>
          i === row.length - 1
            ? cell
            : cell + ' '.repeat((widths[i] ?? 0) - visibleLength(cell) + gap),
        )
        .join('')
        .trimEnd(),
    )
    .join('\n');
}

/** `1.2s`, `42s`, `3m04s`, `2h05m`, `3d04h`: one family, the largest unit first. */
/** A byte count for people: `512 B`, `1.5 KiB`, `3.2 GiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

export function formatDuration(ms: number): string {
  if (ms < 0) ms = 0;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400)
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}

/** `HH:MM:SS` local time of an epoch-ms timestamp. */
export function clockTime(at: number): string {
  const d = new Date(at);
  return [d.getHours(), d.getMinutes(), d.getSeconds()]
    .map((n) => String(n).padStart(2, '0'))
    .join(':');
}

/** `[██████░░░░]` of `width` cells for `done/total`. */
export function bar(done: number, total: number, width = 20, ascii = false): string {
  const ratio = total <= 0 ? 0 : Math.min(1, Math.max(0, done / total));
  const full = Math.round(ratio * width);
  const [on, off] = ascii ? ['#', '-'] : ['█', '░'];
  return `[${on.repeat(full)}${off.repeat(width - full)}]`;
}

/** Parses `30s`, `15m`, `12h`, `7d`, or plain milliseconds, into ms; undefined when invalid. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[unit];
  return factor === undefined ? undefined : Math.round(n * factor);
}

/** Truncates to `width` visible characters with an ellipsis. */
export function truncate(s: string, width: number): string {
  if (s.length <= width) return s;
  return width <= 1 ? s.slice(0, width) : `${s.slice(0, width - 1)}…`;
}
