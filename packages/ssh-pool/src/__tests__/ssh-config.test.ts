// ~/.ssh/config resolution (through the ssh-config parser) and ProxyJump chains over real
// connections: the jump hop goes through a counting proxy, the target is reached through it.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isCrystalMathError } from '@crystalmath/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveSshConfig } from '../ssh-config.js';
import { SshPool } from '../ssh-pool.js';
import { SshTransport } from '../ssh-transport.js';
import { knownHostsFor, ssh, TcpProxy, tempDir } from './helpers.js';

describe('resolveSshConfig', () => {
  const dir = tempDir('cm-ssh-config-');
  const key = join(dir.path, 'id_test');
  const configPath = join(dir.path, 'config');
  beforeAll(() => {
    writeFileSync(key, 'not read by resolveSshConfig');
    writeFileSync(
      join(dir.path, 'extra-1.conf'),
      ['Host included', '  HostName inc.example.org', '  User inc'].join('\n'),
    );
    writeFileSync(
      configPath,
      [
        'Host cluster',
        '  HostName login.%h.example.org',
        '  User alice',
        '  Port 2200',
        `  IdentityFile ${join(dir.path, 'missing-key')}`,
        `  IdentityFile ${key}`,
        '  ServerAliveInterval 7',
        '  ConnectTimeout 9',
        `  UserKnownHostsFile ${join(dir.path, 'kh-%r')}`,
        '  IdentityAgent none',
        '',
        'Host behind',
        '  HostName 10.0.0.5',
        '  ProxyJump bob@gate:2022,cluster',
        '',
        'Host gate',
        '  HostName gate.example.org',
        '  StrictHostKeyChecking accept-new',
        '',
        'Host lax',
        '  StrictHostKeyChecking no',
        '',
        'Host legacy',
        '  ProxyCommand nc %h %p',
        '',
        'Host loop1',
        '  ProxyJump loop2',
        'Host loop2',
        '  ProxyJump loop1',
        '',
        `Include ${join(dir.path, 'extra-*.conf')}`,
        '',
        'Host *',
        '  User fallback',
        '  Port 2201',
      ].join('\n'),
    );
  });
  afterAll(() => dir.cleanup());

  it('maps HostName, User, Port, IdentityFile, ServerAliveInterval, ConnectTimeout, UserKnownHostsFile', async () => {
    expect(await resolveSshConfig('cluster', { configPath })).toEqual({
      host: 'login.cluster.example.org',
      port: 2200,
      username: 'alice',
      privateKeyPath: key,
      knownHostsPath: join(dir.path, 'kh-alice'),
      keepaliveIntervalMs: 7_000,
      connectTimeoutMs: 9_000,
    });
  });

  it('flattens ProxyJump chains, each hop resolved through the config', async () => {
    const r = await resolveSshConfig('behind', { configPath });
    expect(r).toMatchObject({ host: '10.0.0.5', username: 'fallback', port: 2201 });
    expect(r.jump?.map((j) => [j.username, j.host, j.port, j.hostKeyPolicy])).toEqual([
      ['bob', 'gate.example.org', 2022, 'tofu'],
      ['alice', 'login.cluster.example.org', 2200, undefined],
    ]);
  });

  it('expands Include globs and uses Host * defaults; an unknown alias is a host name', async () => {
    expect(await resolveSshConfig('included', { configPath })).toMatchObject({
      host: 'inc.example.org',
      username: 'inc',
      port: 2201,
    });
    expect(await resolveSshConfig('plain.example.org', { configPath })).toMatchObject({
      host: 'plain.example.org',
      username: 'fallback',
    });
    expect(
      await resolveSshConfig('x', { configPath: join(dir.path, 'no-such-config') }),
    ).toMatchObject({
      host: 'x',
      port: 22,
    });
  });

  it('never turns host key checking off', async () => {
    expect((await resolveSshConfig('lax', { configPath })).hostKeyPolicy).toBeUndefined();
  });

  it('refuses ProxyCommand, ProxyJump loops and bad aliases with E_SSH_CONFIG', async () => {
    for (const alias of ['legacy', 'loop1', 'two words', '']) {
      await expect(resolveSshConfig(alias, { configPath })).rejects.toSatisfy((e) =>
        isCrystalMathError(e, 'E_SSH_CONFIG'),
      );
    }
  });
});

describe.skipIf(!ssh)('ProxyJump through the testbed sshd', () => {
  const dir = tempDir('cm-ssh-jump-');
  let proxy: TcpProxy;
  afterAll(async () => {
    await proxy?.close();
    dir.cleanup();
  });

  it('reaches the target through a jump host (forwardOut), from an ~/.ssh/config alias', async () => {
    if (!ssh) return;
    proxy = await TcpProxy.start(ssh.host, ssh.port);
    const jumpKnownHosts = knownHostsFor(dir.path, proxy.port, 'kh-jump');
    const configPath = join(dir.path, 'config');
    writeFileSync(
      configPath,
      [
        'Host cm-gate',
        '  HostName 127.0.0.1',
        `  Port ${proxy.port}`,
        `  User ${ssh.rootUser}`,
        `  IdentityFile ${ssh.privateKeyPath}`,
        `  UserKnownHostsFile ${jumpKnownHosts}`,
        'Host cm-inside',
        // As seen from the jump host: its own sshd.
        '  HostName 127.0.0.1',
        `  Port ${ssh.port}`,
        `  User ${ssh.user}`,
        `  IdentityFile ${ssh.privateKeyPath}`,
        `  UserKnownHostsFile ${ssh.knownHostsPath}`,
        '  ProxyJump cm-gate',
      ].join('\n'),
    );
    const host = await resolveSshConfig('cm-inside', { configPath });
    expect(host.jump).toHaveLength(1);
    const pool = new SshPool({ max: 1 });
    const transport = new SshTransport({ pool, host });
    try {
      expect(transport.description).toBe(
        `ssh://${ssh.user}@127.0.0.1:${ssh.port} via root@127.0.0.1:${proxy.port}`,
      );
      const r = await transport.exec(['id', '-un']);
      expect(r.stdout.trim()).toBe(ssh.user);
      await transport.writeFile(`cm-jump-${process.pid}.txt`, 'through the jump host');
      expect((await transport.readFile(`cm-jump-${process.pid}.txt`)).toString()).toBe(
        'through the jump host',
      );
      await transport.remove(`cm-jump-${process.pid}.txt`);
      // Only the jump hop crossed the proxy; the target was reached through it.
      expect(proxy.connections).toHaveLength(1);
      const runs = await Promise.all(
        Array.from({ length: 12 }, (_, i) => transport.exec(['echo', `${i}`])),
      );
      expect(runs.map((x) => x.stdout)).toEqual(Array.from({ length: 12 }, (_, i) => `${i}\n`));
    } finally {
      await pool.close();
    }
    expect(proxy.active).toBe(0); // closing the target also closed its jump connection
  });
});
