// Pure parts, no server: the command line builder, the stderr pid-marker reader, the circuit
// breaker and the connect rate limiter.

import { execFileSync } from 'node:child_process';
import { isCrystalMathError } from '@crystalmath/core';
import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from '../circuit-breaker.js';
import { buildCommandLine, MAX_COMMAND_LINE_BYTES } from '../command-line.js';
import { RateLimiter } from '../rate-limiter.js';
import { PidMarkerReader } from '../remote-command.js';

describe('buildCommandLine', () => {
  it('quotes argv, cwd and env and ends with exec', () => {
    expect(
      buildCommandLine(['printf', '%s', "it's"], { cwd: 'jobs/a b', env: { X: '1', Y: '$HOME' } }),
    ).toBe("cd 'jobs/a b' && export X=1 && export Y='$HOME' && exec printf %s 'it'\\''s'");
    expect(buildCommandLine({ script: 'echo "$1"; exit 3' })).toBe(
      `exec /bin/sh -c 'echo "$1"; exit 3'`,
    );
    expect(buildCommandLine(['-weird'])).toBe('-weird');
  });

  it('gives a line sh runs with exactly the argv given', () => {
    const argv = ['printf', '%s\\n', "a'b", '$(id)', '`x`', 'a\nb', '', ' ', '*', '\\'];
    const out = execFileSync('/bin/sh', ['-c', buildCommandLine(argv)], { encoding: 'utf8' });
    expect(out).toBe(`${argv.slice(2).join('\n')}\n`);
  });

  it('rejects what cannot be passed safely', () => {
    const invalid = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return isCrystalMathError(e, 'E_VALIDATION') ? String(e.details.field) : String(e);
      }
      return 'no error';
    };
    expect(invalid(() => buildCommandLine([]))).toBe('argv');
    expect(invalid(() => buildCommandLine(['a\0b']))).toBe('argv[0]');
    expect(invalid(() => buildCommandLine(['true'], { env: { 'A;B': 'x' } }))).toBe(
      'options.env.A;B',
    );
    expect(invalid(() => buildCommandLine(['true'], { cwd: '' }))).toBe('options.cwd');
    expect(invalid(() => buildCommandLine({ script: 'x'.repeat(MAX_COMMAND_LINE_BYTES) }))).toBe(
      'command.script',
    );
  });
});

describe('PidMarkerReader', () => {
  const run = (chunks: string[]) => {
    const out: Buffer[] = [];
    let pid: number | undefined;
    const r = new PidMarkerReader(
      'cmabc:',
      (c) => out.push(c),
      (p) => {
        pid = p;
      },
    );
    for (const c of chunks) r.push(Buffer.from(c, 'latin1'));
    r.flush();
    return { text: Buffer.concat(out).toString('latin1'), pid };
  };

  it('strips the marker wherever chunks split it, keeping what surrounds it', () => {
    const marker = '\x1ecmabc:4242\x1e';
    for (let cut = 0; cut <= marker.length; cut++) {
      const full = `rc says hi\n${marker}err\n`;
      const at = 'rc says hi\n'.length + cut;
      expect(run([full.slice(0, at), full.slice(at)])).toEqual({
        text: 'rc says hi\nerr\n',
        pid: 4242,
      });
    }
    expect(run(['\x1ecmabc:', '17', '\x1e', 'x'])).toEqual({ text: 'x', pid: 17 });
  });

  it('passes everything on when there is no marker', () => {
    expect(run(['a\x1eb', 'c'])).toEqual({ text: 'a\x1ebc', pid: undefined });
  });
});

describe('CircuitBreaker', () => {
  it('opens after the threshold, lets one trial through after the cool-down, doubles it on failure', () => {
    const states: string[] = [];
    const b = new CircuitBreaker(
      { failureThreshold: 2, cooldownMs: 100, maxCooldownMs: 300 },
      (s) => states.push(s),
    );
    b.failure(new Error('1'), 0);
    expect(b.canAttempt(0)).toBe(true);
    b.failure(new Error('2'), 0);
    expect(b.canAttempt(50)).toBe(false);
    expect(b.openUntil).toBe(100);
    expect(b.canAttempt(100)).toBe(true); // half-open
    b.attemptStarted(100);
    expect(b.canAttempt(100)).toBe(false); // one trial at a time
    b.failure(new Error('3'), 110);
    expect(b.openUntil).toBe(310); // 200 ms now
    expect(b.canAttempt(310)).toBe(true);
    b.attemptStarted(310);
    b.success();
    expect(b.state()).toBe('closed');
    expect(states).toEqual(['open', 'half-open', 'open', 'half-open', 'closed']);
  });
});

describe('RateLimiter', () => {
  it('allows `limit` starts per sliding interval', () => {
    const r = new RateLimiter(2, 1_000);
    expect(r.tryTake(0)).toBe(true);
    expect(r.tryTake(10)).toBe(true);
    expect(r.tryTake(20)).toBe(false);
    expect(r.nextFreeAt(20)).toBe(1_000);
    expect(r.tryTake(1_000)).toBe(true);
    expect(r.tryTake(1_005)).toBe(false);
    expect(r.tryTake(1_010)).toBe(true);
  });
});
