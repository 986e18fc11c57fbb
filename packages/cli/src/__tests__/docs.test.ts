// The guides promise things this test keeps true: every error code of core's union is
// documented in docs/errors.md, and every exit code in docs/cli.md.

import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../exit-codes.js';

const root = new URL('../../../../', import.meta.url);

describe('documentation', () => {
  it('documents every ErrorCode of @crystalmath/core in docs/errors.md', async () => {
    const source = await readFile(new URL('packages/core/src/errors.ts', root), 'utf8');
    const union = source.slice(
      source.indexOf('export type ErrorCode'),
      source.indexOf('const BRAND'),
    );
    const codes = [...union.matchAll(/'(E_[A-Z_]+)'/g)].map((m) => m[1]);
    expect(codes.length).toBeGreaterThan(30);
    const doc = await readFile(new URL('docs/errors.md', root), 'utf8');
    const missing = codes.filter((c) => !doc.includes(`| \`${c}\` |`));
    expect(missing).toEqual([]);
  });

  it('documents every exit code in docs/cli.md', async () => {
    const doc = await readFile(new URL('docs/cli.md', root), 'utf8');
    const missing = Object.entries(ExitCode).filter(([, n]) => !doc.includes(`| ${n} |`));
    expect(missing).toEqual([]);
  });
});
