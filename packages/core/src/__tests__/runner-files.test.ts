// The runner file helpers' pure part: where a read may be cut without splitting a character.

import { describe, expect, it } from 'vitest';
import { completeUtf8Length } from '../runner-files.js';

describe('completeUtf8Length', () => {
  it('stops before a cut multi-byte character and keeps whole ones', () => {
    const bytes = Buffer.from('aé✓😀', 'utf8'); // 1 + 2 + 3 + 4 bytes
    expect(completeUtf8Length(bytes)).toBe(10);
    for (const [cut, whole] of [
      [2, 1],
      [4, 3],
      [5, 3],
      [7, 6],
      [9, 6],
    ] as const) {
      expect(completeUtf8Length(bytes.subarray(0, cut))).toBe(whole);
    }
    expect(completeUtf8Length(Buffer.alloc(0))).toBe(0);
  });
});
