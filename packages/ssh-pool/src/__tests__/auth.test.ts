// Authentication against the testbed's sshd: an encrypted key whose passphrase is asked once
// per pool, an ssh-agent, and the typed refusals (wrong key, wrong passphrase, missing file,
// nothing to authenticate with). No secret appears in an error.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { isCrystalMathError } from '@crystalmath/core';
import { afterAll, describe, expect, it } from 'vitest';
import { SshPool } from '../ssh-pool.js';
import { ssh, tempDir, testHost, waitFor } from './helpers.js';

const PASSPHRASE = 'correct horse battery staple';

describe.skipIf(!ssh)('authentication', () => {
  const dir = tempDir('cm-ssh-auth-');
  const pool = new SshPool({
    circuitBreaker: { failureThreshold: 1_000 },
    reconnectBackoff: { initialMs: 0, maxMs: 0 },
  });
  let agent: ChildProcess | undefined;
  afterAll(async () => {
    agent?.kill();
    await pool.close();
    dir.cleanup();
  });

  const codeOf = async (p: Promise<unknown>) =>
    p.then(
      () => 'connected',
      (e: unknown) => {
        expect(String((e as Error).message)).not.toContain(PASSPHRASE);
        return isCrystalMathError(e) ? e.code : String(e);
      },
    );

  it('decrypts an encrypted key with the passphrase callback, asked once for many connections', async () => {
    const encrypted = join(dir.path, 'encrypted');
    copyFileSync(ssh!.privateKeyPath, encrypted);
    execFileSync('ssh-keygen', ['-q', '-p', '-f', encrypted, '-P', '', '-N', PASSPHRASE]);
    let asked = 0;
    const host = testHost('user', {
      privateKeyPath: encrypted,
      passphrase: async () => {
        asked++;
        return PASSPHRASE;
      },
    });
    const own = new SshPool({ max: 3, maxChannels: 1 });
    try {
      // The three sessions are held at once (maxChannels 1), so the pool must open three
      // connections, however fast a command returns its session.
      let arrived = 0;
      let allHeld!: () => void;
      const held = new Promise<void>((resolve) => {
        allHeld = resolve;
      });
      const outs = await Promise.all(
        [1, 2, 3].map((i) =>
          own.withSession(host, async (s) => {
            if (++arrived === 3) allHeld();
            await held;
            return s.exec(['echo', `${i}`]);
          }),
        ),
      );
      expect(outs.map((o) => o.stdout)).toEqual(['1\n', '2\n', '3\n']);
      expect(own.stats().hosts[0]?.opened).toBe(3);
      expect(asked).toBe(1);
    } finally {
      await own.close();
    }
    expect(
      await codeOf(
        pool.warmup(
          testHost('user', { privateKeyPath: encrypted, passphrase: async () => 'wrong' }),
        ),
      ),
    ).toBe('E_SSH_AUTH');
    expect(await codeOf(pool.warmup(testHost('user', { privateKeyPath: encrypted })))).toBe(
      'E_SSH_CONFIG',
    );
  });

  it('authenticates through an ssh-agent', async () => {
    const socket = join(dir.path, 'agent.sock');
    agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    await waitFor(() => existsSync(socket), 5_000, 'ssh-agent socket');
    execFileSync('ssh-add', ['-q', ssh!.privateKeyPath], {
      env: { ...process.env, SSH_AUTH_SOCK: socket },
      stdio: 'ignore',
    });
    const host = testHost('user', { agent: socket });
    delete (host as { privateKeyPath?: string }).privateKeyPath;
    const r = await pool.withSession(host, (s) => s.exec(['id', '-un']));
    expect(r.stdout.trim()).toBe(ssh!.user);
  });

  it('refuses a key the server does not know with E_SSH_AUTH', async () => {
    const stranger = join(dir.path, 'stranger');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', stranger]);
    expect(await codeOf(pool.warmup(testHost('user', { privateKeyPath: stranger })))).toBe(
      'E_SSH_AUTH',
    );
  });

  it('does not ask for a password the server does not accept', async () => {
    let asked = 0;
    const host = testHost('user', {
      password: async () => {
        asked++;
        return PASSPHRASE;
      },
    });
    delete (host as { privateKeyPath?: string }).privateKeyPath;
    expect(await codeOf(pool.warmup(host))).toBe('E_SSH_AUTH');
    expect(asked).toBe(0); // PasswordAuthentication no: never offered, never asked
  });

  it('reports a missing key file and missing credentials with E_SSH_CONFIG', async () => {
    expect(
      await codeOf(pool.warmup(testHost('user', { privateKeyPath: join(dir.path, 'nope') }))),
    ).toBe('E_SSH_CONFIG');
    const bare = testHost('user');
    delete (bare as { privateKeyPath?: string }).privateKeyPath;
    expect(await codeOf(pool.warmup(bare))).toBe('E_SSH_CONFIG');
  });
});
