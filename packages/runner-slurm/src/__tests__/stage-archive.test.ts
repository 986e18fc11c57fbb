// The submission archive against the real `tar` of this machine: what it unpacks is byte for
// byte what was packed, with its mode, including names longer than ustar's 100-byte field.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCrystalMathError } from '@crystalmath/core';
import { describe, expect, it } from 'vitest';
import { ustarArchive } from '../stage-archive.js';

describe('ustarArchive', () => {
  it('unpacks with tar -x -o -p into the same bytes, modes and nested names', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-ustar-'));
    try {
      const binary = Buffer.from(Array.from({ length: 1500 }, (_, i) => (i * 31) % 256));
      const long = `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(90)}.dat`;
      const files = [
        { path: 'a.txt', data: Buffer.from('héllo\n'), mode: 0o644, field: 'a' },
        { path: 'sub/bin.dat', data: binary, mode: 0o600, field: 'b' },
        { path: '.cm/job.sbatch', data: Buffer.from('#!/bin/sh\ntrue\n'), mode: 0o755, field: 'c' },
        { path: long, data: Buffer.alloc(0), mode: 0o644, field: 'd' },
        { path: 'exact512', data: Buffer.alloc(512, 7), mode: 0o644, field: 'e' },
      ];
      const r = spawnSync('tar', ['-x', '-o', '-p', '-f', '-'], {
        cwd: dir,
        input: ustarArchive(files),
      });
      expect(r.stderr.toString()).toBe('');
      expect(r.status).toBe(0);
      for (const f of files) {
        expect(Buffer.compare(readFileSync(join(dir, f.path)), f.data)).toBe(0);
        expect(statSync(join(dir, f.path)).mode & 0o777).toBe(f.mode);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a name ustar cannot hold, naming the field', () => {
    const path = `${'x'.repeat(120)}.txt`;
    let error: unknown;
    try {
      ustarArchive([{ path, data: Buffer.alloc(1), mode: 0o644, field: 'spec.inputs[3]' }]);
    } catch (e) {
      error = e;
    }
    expect(isCrystalMathError(error, 'E_VALIDATION')).toBe(true);
    expect((error as { field?: string }).field).toBe('spec.inputs[3]');
  });
});
