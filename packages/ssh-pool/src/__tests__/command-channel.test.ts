// The persistent command channel against the testbed's real sshd: commands run on the helper
// (counted by route in stats), byte-exact argv, stdin, stdout and stderr whatever they hold,
// frame-like output, big output, concurrency beyond the one helper, a hung command past its
// deadline, the helper killed mid-command, and a server with no session to spare for it
// (a private sshd with MaxSessions 1: every command falls back to exec channels).

import { isCrystalMathError } from '@crystalmath/core';
import { type PrivateSshd, privateSshd } from '@crystalmath/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePrintfB, MarkedStream } from '../command-channel.js';
import type { SshHostConfig } from '../options.js';
import { SshPool } from '../ssh-pool.js';
import { SshTransport } from '../ssh-transport.js';
import { EVENT_TIMEOUT_MS, ssh, testHost, waitFor } from './helpers.js';

const TEST_TIMEOUT_MS = 120_000;

/** Waits until the helper of the pool's one connection is up (the first command starts it). */
async function warm(pool: SshPool, t: SshTransport): Promise<void> {
  await t.exec(['true']);
  await waitFor(
    async () => {
      const before = pool.stats().hosts[0]?.commands.channel ?? 0;
      await t.exec(['true']);
      return (pool.stats().hosts[0]?.commands.channel ?? 0) > before;
    },
    EVENT_TIMEOUT_MS,
    'the command channel to take a command',
  );
}

const channelCount = (pool: SshPool): number => pool.stats().hosts[0]?.commands.channel ?? 0;

describe('encodePrintfB', () => {
  it('keeps printable ASCII and escapes the rest, the backslash included', () => {
    expect(encodePrintfB(Buffer.from('a\\b%\n\0'))).toBe('a\\0134b%\\0012\\0000');
  });
});

describe('MarkedStream', () => {
  it('finds markers split across chunks at every point and cuts the ack out wherever it lands', () => {
    const m = '0123456789abcdef';
    const text = Buffer.from(`out\x1e${m}A 4242\nput\x1eR 1 0 5\n\x1e${m}R 3\ntrailing`, 'latin1');
    for (let a = 0; a < text.length; a++) {
      for (let b = a; b < text.length; b += 7) {
        let pid = '';
        const s = new MarkedStream(m, 'R ', 'A ', (t) => {
          pid = t;
        });
        for (const part of [text.subarray(0, a), text.subarray(a, b), text.subarray(b)]) {
          if (part.length > 0) s.push(part);
        }
        expect(s.done).toBe(true);
        expect(pid).toBe('4242');
        expect(s.endText).toBe('3');
        expect(s.output()).toBe('output\x1eR 1 0 5\n');
      }
    }
  });
});

describe.skipIf(!ssh)('command channel (testbed sshd)', () => {
  let pool: SshPool;
  let t: SshTransport;

  beforeAll(async () => {
    pool = new SshPool({ max: 1, killGraceMs: 500 });
    t = new SshTransport({ pool, host: testHost('user') });
    await warm(pool, t);
  }, TEST_TIMEOUT_MS);
  afterAll(async () => {
    await pool?.close();
  });

  it('runs argv, cwd, env and binary stdin on the helper, byte for byte', async () => {
    const before = channelCount(pool);
    const nasty = ["it's", '"$HOME"', '`id`', 'a\nb', ' ', '\x1eR 1 0 0 0', '\\0101', '%s%%'];
    const r1 = await t.exec(['printf', '%s\\0', ...nasty]);
    expect(r1.stdout.split('\0').slice(0, -1)).toEqual(nasty);
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const r2 = await t.exec(['sh', '-c', 'od -An -v -tx1 | tr -d " \\n"; echo "|$CM_X|$(pwd)"'], {
      stdin: bytes,
      env: { CM_X: "va'l\nue" },
      cwd: '/tmp',
    });
    expect(r2.stdout).toBe(`${bytes.toString('hex')}|va'l\nue|/tmp\n`);
    const r3 = await t.exec(['sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(r3).toMatchObject({ stdout: 'out\n', stderr: 'err\n', exitCode: 3, signal: null });
    const r4 = await t.exec(['sh', '-c', 'kill -TERM $$']);
    expect(r4).toMatchObject({ exitCode: null, signal: 'SIGTERM' });
    expect(channelCount(pool) - before).toBe(4);
  });

  it('passes output that looks like frames, NUL bytes and a partial frame through intact', async () => {
    const evil = '\x1eA 99 12\n\x1eR 99 0 5 5\nabc';
    const r = await t.exec(['sh', '-c', 'printf "%s\\000def\\036R 1" "$1"', 'sh', evil]);
    expect(r.stdout).toBe(`${evil}\0def\x1eR 1`);
    const e = await t.exec(['sh', '-c', 'printf "%s" "$1" >&2', 'sh', evil]);
    expect(e.stderr).toBe(evil);
    expect((await t.exec(['echo', 'next'])).stdout).toBe('next\n');
  });

  it('returns a big stdout (8 MiB) and stderr intact', async () => {
    const r = await t.exec([
      'sh',
      '-c',
      'head -c 8388608 /dev/zero | tr "\\0" x; head -c 100000 /dev/zero | tr "\\0" y >&2',
    ]);
    expect(r.stdout.length).toBe(8_388_608);
    expect(/^x+$/.test(r.stdout)).toBe(true);
    expect(r.stderr).toBe('y'.repeat(100_000));
  });

  it(
    'runs 40 concurrent commands: one at a time on the helper, the rest in exec channels',
    async () => {
      const before = pool.stats().hosts[0]?.commands ?? { channel: 0, exec: 0 };
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => t.exec(['printf', '%s', `n${i}`])),
      );
      expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 40 }, (_, i) => `n${i}`));
      const after = pool.stats().hosts[0]?.commands ?? { channel: 0, exec: 0 };
      expect(after.channel - before.channel + after.exec - before.exec).toBe(40);
      expect(after.channel).toBeGreaterThan(before.channel);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'ends a hung command past its deadline (its process group killed) and frees the helper',
    async () => {
      const tag = `cmhung${process.pid}${Date.now()}`;
      await warm(pool, t); // the helper is free
      const before = channelCount(pool);
      const started = Date.now();
      await expect(
        t.exec(['sh', '-c', 'sleep 60 & wait', tag], { timeoutMs: 300 }),
      ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_TRANSPORT_TIMEOUT'));
      expect(Date.now() - started).toBeLessThan(EVENT_TIMEOUT_MS);
      expect(channelCount(pool)).toBe(before + 1);
      // Its process group (sh and the backgrounded sleep) is gone...
      await waitFor(
        async () => (await t.exec(['pgrep', '-f', tag])).exitCode === 1,
        EVENT_TIMEOUT_MS,
        'the timed-out command to be killed',
      );
      // ...and the helper takes commands again.
      await waitFor(
        async () => {
          const n = channelCount(pool);
          await t.exec(['true']);
          return channelCount(pool) > n;
        },
        EVENT_TIMEOUT_MS,
        'the helper to be free again',
      );
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'stops a command when its AbortSignal fires',
    async () => {
      const ac = new AbortController();
      const run = t.exec(['sleep', '30'], { signal: ac.signal });
      setTimeout(() => ac.abort(), 100);
      await expect(run).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_ABORTED'));
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'reports a command whose helper was killed as E_SSH_CHANNEL (started), kills it and carries on',
    async () => {
      const tag = `cmorphan${process.pid}${Date.now()}`;
      await warm(pool, t); // the helper is free (an exec channel's parents would be sshd's)
      // The command's parent reports its result; the helper's read loop is that one's parent.
      const err = await t
        .exec(['sh', '-c', 'kill -KILL "$(ps -o ppid= -p "$PPID" | tr -d " ")"; sleep 60', tag])
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(isCrystalMathError(err, 'E_SSH_CHANNEL')).toBe(true);
      expect((err as { details: { started?: boolean } }).details.started).toBe(true);
      await waitFor(
        async () => (await t.exec(['pgrep', '-f', tag])).exitCode === 1,
        EVENT_TIMEOUT_MS,
        'the orphaned command to be killed',
      );
      await warm(pool, t); // a new helper comes up and takes commands
      expect((await t.exec(['echo', 'ok'])).stdout).toBe('ok\n');
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'ends a command whose reporter was killed at its deadline, kills it, and replaces the helper',
    async () => {
      const tag = `cmreporter${process.pid}${Date.now()}`;
      await warm(pool, t);
      const before = pool.stats().hosts[0]?.commands.channel ?? 0;
      // $PPID is the helper's reporter for this command: without it no result ever comes.
      await expect(
        t.exec(['sh', '-c', 'kill -KILL $PPID; sleep 60', tag], { timeoutMs: 1_000 }),
      ).rejects.toSatisfy((e) => isCrystalMathError(e, 'E_TRANSPORT_TIMEOUT'));
      expect(channelCount(pool)).toBe(before + 1);
      await waitFor(
        async () => (await t.exec(['pgrep', '-f', tag])).exitCode === 1,
        EVENT_TIMEOUT_MS,
        'the command to be killed',
      );
      // The stuck helper is closed after the kill grace; a new one takes commands.
      await warm(pool, t);
    },
    TEST_TIMEOUT_MS,
  );
});

describe.skipIf(!ssh)('command channel fallbacks', () => {
  let limited: PrivateSshd;
  const host = (server: PrivateSshd): SshHostConfig => ({
    host: server.host,
    port: server.port,
    username: server.user,
    privateKeyPath: server.privateKeyPath,
    knownHostsPath: server.knownHostsPath,
  });

  beforeAll(async () => {
    limited = await privateSshd({ config: ['MaxSessions 1'] });
  }, TEST_TIMEOUT_MS);
  afterAll(async () => {
    await limited?.close();
  });

  it(
    'gives the session back to exec channels on a host with none to spare (MaxSessions 1)',
    async () => {
      const pool = new SshPool({ max: 1 });
      try {
        const t = new SshTransport({ pool, host: host(limited) });
        const results = await Promise.all(
          Array.from({ length: 6 }, (_, i) => t.exec(['printf', '%s', `m${i}`])),
        );
        expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 6 }, (_, i) => `m${i}`));
        for (let i = 0; i < 3; i++)
          expect((await t.exec(['echo', `s${i}`])).stdout).toBe(`s${i}\n`);
        expect(pool.stats().hosts[0]?.commandChannel).toBe(false);
        expect(pool.stats().hosts[0]?.commands).toEqual({ channel: 0, exec: 9 });
      } finally {
        await pool.close();
      }
    },
    TEST_TIMEOUT_MS,
  );

  it('runs every command in an exec channel with commandChannel: false', async () => {
    const pool = new SshPool({ max: 1, commandChannel: false });
    try {
      const t = new SshTransport({ pool, host: testHost('user') });
      for (let i = 0; i < 3; i++) await t.exec(['true']);
      expect(pool.stats().hosts[0]?.commands).toEqual({ channel: 0, exec: 3 });
      expect(pool.stats().hosts[0]?.commandChannel).toBe(false);
    } finally {
      await pool.close();
    }
  });
});
