// Host-key verification: the known_hosts parser against OpenSSH's own tools (ssh-keygen -H,
// -F, -lf), then real connections to the testbed's sshd refused for unknown, changed and
// revoked keys and a missing file, accepted for plain, wildcard and hashed entries, and
// trust-on-first-use writing the key.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostKeyAlgorithms } from '../connect.js';
import type { SshHostKeyError } from '../errors.js';
import {
  checkHostKey,
  entryMatches,
  fingerprint,
  knownHostsLine,
  knownHostsName,
  parseKnownHosts,
} from '../known-hosts.js';
import type { SshHostConfig } from '../options.js';
import { SshPool } from '../ssh-pool.js';
import { ssh, tempDir, testHost } from './helpers.js';

const dir = tempDir('cm-known-hosts-');
afterAll(() => dir.cleanup());

/** A fresh ed25519 public key line (`ssh-ed25519 AAAA...`) that is not the server's. */
function otherKey(name: string): string {
  const path = join(dir.path, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path]);
  return readFileSync(`${path}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
}

/** `ssh-keygen -H` in place (it keeps a `.old` copy and warns about it on stderr). */
function hashFile(path: string): void {
  execFileSync('ssh-keygen', ['-q', '-H', '-f', path], { stdio: ['ignore', 'ignore', 'ignore'] });
}

function blobOf(publicKeyLine: string): Buffer {
  return Buffer.from(publicKeyLine.split(' ')[1] as string, 'base64');
}

describe('known_hosts parsing', () => {
  const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIADpzr1sqcs/u1bIVYSdlVyy6rS+L4gBkzQwBKzDGltW';
  const blob = blobOf(key);

  it('names hosts as OpenSSH does', () => {
    expect(knownHostsName('Example.ORG', 22)).toBe('example.org');
    expect(knownHostsName('127.0.0.1', 2222)).toBe('[127.0.0.1]:2222');
  });

  it('parses plain, marked, hashed, commented and malformed lines', () => {
    const entries = parseKnownHosts(
      [
        '# comment',
        '',
        `a.example,b.example ${key} comment here`,
        `@revoked * ${key}`,
        `@cert-authority *.example ${key}`,
        '@unknown-marker x ssh-ed25519 AAAA',
        'only-two-fields ssh-ed25519',
        `|1|c2FsdA==|aGFzaA== ${key}`,
      ].join('\n'),
    );
    expect(entries.map((e) => [e.line, e.marker, e.hosts.kind])).toEqual([
      [3, undefined, 'patterns'],
      [4, 'revoked', 'patterns'],
      [5, 'cert-authority', 'patterns'],
      [8, undefined, 'hashed'],
    ]);
    expect(entries[0]?.key.equals(blob)).toBe(true);
  });

  it('matches wildcards, negations and the [host]:port form', () => {
    const e = (hosts: string) => parseKnownHosts(`${hosts} ${key}`)[0]!;
    expect(entryMatches(e('*.example.org'), 'login.example.org')).toBe(true);
    expect(entryMatches(e('*.example.org,!bad.example.org'), 'bad.example.org')).toBe(false);
    expect(entryMatches(e('node?.hpc'), 'node7.hpc')).toBe(true);
    expect(entryMatches(e('node?.hpc'), 'node17.hpc')).toBe(false);
    expect(entryMatches(e('[127.0.0.*]:2222'), '[127.0.0.1]:2222')).toBe(true);
    expect(entryMatches(e('127.0.0.1'), '[127.0.0.1]:2222')).toBe(false);
    expect(entryMatches(e('LOGIN.example.org'), 'login.example.org')).toBe(true);
  });

  it('reports trusted, mismatch, revoked and unknown (with other key types)', () => {
    const other = Buffer.concat([blob.subarray(0, -1), Buffer.from([blob[blob.length - 1]! ^ 1])]);
    const rsa = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDQ';
    const entries = parseKnownHosts(
      [`[h]:2222 ${key}`, `[r]:2222 ${rsa}`, `@revoked [x]:2222 ${key}`, `[x]:2222 ${key}`].join(
        '\n',
      ),
    );
    expect(checkHostKey(entries, 'h', 2222, blob).status).toBe('trusted');
    expect(checkHostKey(entries, 'h', 2222, other).status).toBe('mismatch');
    expect(checkHostKey(entries, 'x', 2222, blob).status).toBe('revoked');
    expect(checkHostKey(entries, 'r', 2222, blob)).toMatchObject({
      status: 'unknown',
      otherTypes: ['ssh-rsa'],
    });
    expect(checkHostKey(entries, 'nobody', 2222, blob)).toMatchObject({
      status: 'unknown',
      otherTypes: [],
    });
  });

  it('prefers the host key algorithms of keys on record', () => {
    expect(hostKeyAlgorithms(['ssh-rsa']).slice(0, 3)).toEqual([
      'rsa-sha2-512',
      'rsa-sha2-256',
      'ssh-rsa',
    ]);
    expect(hostKeyAlgorithms([])[0]).toBe('ssh-ed25519');
    expect(new Set(hostKeyAlgorithms(['ssh-ed25519', 'ecdsa-sha2-nistp256'])).size).toBe(7);
  });
});

describe.skipIf(!ssh)('known_hosts and OpenSSH agree', () => {
  it('computes the fingerprint ssh-keygen -lf prints', () => {
    if (!ssh) return;
    const pub = join(dir.path, 'server.pub');
    writeFileSync(pub, `${ssh.hostPublicKey}\n`);
    const printed = execFileSync('ssh-keygen', ['-lf', pub], { encoding: 'utf8' }).split(' ')[1];
    expect(fingerprint(blobOf(ssh.hostPublicKey))).toBe(printed);
  });

  it('reads names hashed by ssh-keygen -H, and writes hashed names ssh-keygen -F finds', () => {
    if (!ssh) return;
    const file = join(dir.path, 'hash-check');
    writeFileSync(
      file,
      `[127.0.0.1]:2222 ${ssh.hostPublicKey}\nlogin.example.org ${ssh.hostPublicKey}\n`,
    );
    hashFile(file);
    const hashed = parseKnownHosts(readFileSync(file, 'utf8'));
    expect(hashed.every((e) => e.hosts.kind === 'hashed')).toBe(true);
    const blob = blobOf(ssh.hostPublicKey);
    expect(checkHostKey(hashed, '127.0.0.1', 2222, blob).status).toBe('trusted');
    expect(checkHostKey(hashed, 'login.example.org', 22, blob).status).toBe('trusted');
    expect(checkHostKey(hashed, 'other.example.org', 22, blob).status).toBe('unknown');

    const ours = join(dir.path, 'ours-hashed');
    writeFileSync(ours, `${knownHostsLine('127.0.0.1', 2222, blob, true)}\n`);
    const found = execFileSync('ssh-keygen', ['-F', '[127.0.0.1]:2222', '-f', ours], {
      encoding: 'utf8',
    });
    expect(found).toContain('found: line 1');
  });
});

describe.skipIf(!ssh)('host-key verification against the testbed sshd', () => {
  let pool: SshPool;
  beforeAll(() => {
    pool = new SshPool({
      circuitBreaker: { failureThreshold: 1_000 },
      reconnectBackoff: { initialMs: 0, maxMs: 0 },
    });
  });
  afterAll(() => pool.close());

  const withFile = (
    name: string,
    content: string | undefined,
    extra: Partial<SshHostConfig> = {},
  ) => {
    const path = join(dir.path, name);
    if (content !== undefined) writeFileSync(path, content);
    return testHost('user', { knownHostsPath: path, ...extra });
  };
  const connect = (host: SshHostConfig) =>
    pool.withSession(host, (s) => s.exec(['echo', 'in'])).then((r) => r.stdout);
  const refusal = (host: SshHostConfig) =>
    connect(host).then(
      () => {
        throw new Error('connected, but should have been refused');
      },
      (e: unknown) => e as SshHostKeyError,
    );

  it('refuses when the known_hosts file is missing, with the fingerprint and the ssh-keyscan hint', async () => {
    const host = withFile('missing', undefined);
    const e = await refusal(host);
    expect(e.code).toBe('E_SSH_HOSTKEY_UNKNOWN');
    expect(e.fingerprint).toBe(fingerprint(blobOf(ssh!.hostPublicKey)));
    expect(e.message).toContain(e.fingerprint);
    expect(e.message).toContain(`ssh-keyscan -p 2222 127.0.0.1 >> ${host.knownHostsPath}`);
    expect(e.message).toContain('does not exist');
    expect(existsSync(host.knownHostsPath!)).toBe(false); // strict never writes
  });

  it('refuses an unknown host', async () => {
    const e = await refusal(
      withFile(
        'unknown',
        `[127.0.0.1]:2223 ${ssh!.hostPublicKey}\nother.example ${ssh!.hostPublicKey}\n`,
      ),
    );
    expect(e.code).toBe('E_SSH_HOSTKEY_UNKNOWN');
  });

  it('refuses a changed key with E_SSH_HOSTKEY_MISMATCH', async () => {
    const wrong = otherKey('mismatch');
    const e = await refusal(withFile('mismatch', `[127.0.0.1]:2222 ${wrong}\n`));
    expect(e.code).toBe('E_SSH_HOSTKEY_MISMATCH');
    expect(e.details.expected).toEqual([fingerprint(blobOf(wrong))]);
    expect(e.message).toContain('MISMATCH');
  });

  it('refuses a revoked key even when another line trusts it', async () => {
    const e = await refusal(
      withFile(
        'revoked',
        `[127.0.0.1]:2222 ${ssh!.hostPublicKey}\n@revoked * ${ssh!.hostPublicKey}\n`,
      ),
    );
    expect(e.code).toBe('E_SSH_HOSTKEY_REVOKED');
  });

  it('refuses a host known only through @cert-authority, saying it is unsupported', async () => {
    const e = await refusal(withFile('ca', `@cert-authority [127.0.0.1]:2222 ${otherKey('ca')}\n`));
    expect(e.code).toBe('E_SSH_HOSTKEY_UNKNOWN');
    expect(e.message).toContain('@cert-authority');
  });

  it('accepts plain, wildcard and hashed entries', async () => {
    expect(
      await connect(
        withFile('plain', `# testbed\n[127.0.0.1]:2222 ${ssh!.hostPublicKey} comment\n`),
      ),
    ).toBe('in\n');
    expect(
      await connect(withFile('wildcard', `[127.0.0.*]:2222,!10.0.0.1 ${ssh!.hostPublicKey}\n`)),
    ).toBe('in\n');
    const hashedPath = join(dir.path, 'hashed');
    writeFileSync(hashedPath, `[127.0.0.1]:2222 ${ssh!.hostPublicKey}\n`);
    hashFile(hashedPath);
    expect(readFileSync(hashedPath, 'utf8')).toMatch(/^\|1\|/);
    expect(await connect(testHost('user', { knownHostsPath: hashedPath }))).toBe('in\n');
  });

  it('refuses a hashed entry with another key', async () => {
    const path = join(dir.path, 'hashed-wrong');
    writeFileSync(path, `[127.0.0.1]:2222 ${otherKey('hashed-wrong')}\n`);
    hashFile(path);
    const e = await refusal(testHost('user', { knownHostsPath: path }));
    expect(e.code).toBe('E_SSH_HOSTKEY_MISMATCH');
  });

  it('trust on first use writes the key once, then verifies it strictly', async () => {
    const path = join(dir.path, 'tofu', 'known_hosts'); // the directory does not exist yet
    const tofu = testHost('user', { knownHostsPath: path, hostKeyPolicy: 'tofu' });
    const tofuPool = new SshPool({ max: 5, maxChannels: 1 });
    try {
      const outs = await Promise.all(
        Array.from({ length: 5 }, () =>
          tofuPool.withSession(tofu, (s) => s.exec(['echo', 'tofu'])),
        ),
      );
      expect(outs.map((o) => o.stdout)).toEqual(Array(5).fill('tofu\n'));
    } finally {
      await tofuPool.close();
    }
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    expect(lines).toEqual([`[127.0.0.1]:2222 ${ssh!.hostPublicKey}`]);
    expect(await connect(testHost('user', { knownHostsPath: path }))).toBe('in\n');
    const found = execFileSync('ssh-keygen', ['-F', '[127.0.0.1]:2222', '-f', path], {
      encoding: 'utf8',
    });
    expect(found).toContain('found: line 1');
  });

  it('trust on first use still refuses a changed key and leaves the file alone', async () => {
    const content = `[127.0.0.1]:2222 ${otherKey('tofu-mismatch')}\n`;
    const host = withFile('tofu-mismatch', content, { hostKeyPolicy: 'tofu' });
    const e = await refusal(host);
    expect(e.code).toBe('E_SSH_HOSTKEY_MISMATCH');
    expect(readFileSync(host.knownHostsPath!, 'utf8')).toBe(content);
  });

  it('trust on first use can write hashed names', async () => {
    const host = withFile('tofu-hashed', undefined, {
      hostKeyPolicy: 'tofu',
      hashKnownHosts: true,
    });
    expect(await connect(host)).toBe('in\n');
    const text = readFileSync(host.knownHostsPath!, 'utf8');
    expect(text).toMatch(/^\|1\|[^ ]+ ssh-ed25519 /);
    expect(await connect(testHost('user', { knownHostsPath: host.knownHostsPath! }))).toBe('in\n');
  });
});
