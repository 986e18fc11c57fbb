// 2,000 random argv arrays (any Unicode, quotes, shell metacharacters, newlines, control
// characters) must reach the remote program byte for byte: `printf '%s\0' ...` echoes them.

import { NASTY_STRINGS } from '@crystalmath/core/testing';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { SshPool } from '../ssh-pool.js';
import { SshTransport } from '../ssh-transport.js';
import { ssh, testHost } from './helpers.js';

const RUNS = 2_000;
const CONCURRENCY = 16;

const noNul = (s: string) => s.replaceAll('\0', '');
const word = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 24 }).map(noNul),
  fc.string({ unit: 'binary-ascii', maxLength: 40 }).map(noNul),
  fc.string({ unit: fc.constantFrom(...`'"\\$\`!*?[]{}();&|<>#~ \t\n\r-=%\x1e`), maxLength: 16 }),
  fc.constantFrom(...NASTY_STRINGS),
);
const argvs = fc.array(word, { maxLength: 12 });

describe.skipIf(!ssh)('argv fuzz', () => {
  const pool = new SshPool({ max: 2 });
  afterAll(() => pool.close());

  it(`round-trips ${RUNS} random argv arrays byte for byte through exec`, async () => {
    const transport = new SshTransport({ pool, host: testHost() });
    const seed = Number(process.env.CM_FUZZ_SEED ?? Date.now() % 2 ** 31);
    const samples = fc.sample(argvs, { numRuns: RUNS, seed });
    const failures: { argv: string[]; got: string }[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < samples.length) {
          const argv = samples[next++] as string[];
          const r = await transport.exec(['printf', '%s\\0', ...argv]);
          const expected = argv.length === 0 ? '\0' : argv.map((a) => `${a}\0`).join('');
          if (
            r.exitCode !== 0 ||
            r.stdout !== expected ||
            Buffer.compare(Buffer.from(r.stdout), Buffer.from(expected)) !== 0
          ) {
            failures.push({ argv, got: r.stdout });
          }
        }
      }),
    );
    expect(failures.slice(0, 3), `seed ${seed} (rerun with CM_FUZZ_SEED=${seed})`).toEqual([]);
  });
});
