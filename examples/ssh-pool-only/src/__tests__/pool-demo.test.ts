import { requireService } from '@crystalmath/testkit';
import { describe, expect, it } from 'vitest';
import { runPoolDemo } from '../pool-demo.js';

const ssh = requireService('ssh');

describe.skipIf(!ssh)('ssh-pool-only against the testbed sshd', () => {
  it('runs 40 commands over at most 2 connections and round-trips a file intact', async () => {
    const lines: string[] = [];
    const report = await runPoolDemo(
      {
        host: ssh!.host,
        port: ssh!.port,
        username: ssh!.user,
        privateKeyPath: ssh!.privateKeyPath,
        knownHostsPath: ssh!.knownHostsPath,
      },
      (line) => lines.push(line),
    );
    expect(report.commands).toBe(40);
    expect(report.peakConnections).toBeGreaterThanOrEqual(1);
    expect(report.peakConnections).toBeLessThanOrEqual(2);
    expect(report.distinctShells).toBeLessThanOrEqual(40);
    expect(report.roundTripBytes).toBe(1024 * 1024);
    expect(report.checksumMatches).toBe(true);
    expect(lines[0]).toMatch(/^connected to ssh:\/\//);
  });

  it('refuses a host whose key is not in known_hosts', async () => {
    await expect(
      runPoolDemo(
        {
          host: ssh!.host,
          port: ssh!.port,
          username: ssh!.user,
          privateKeyPath: ssh!.privateKeyPath,
          knownHostsPath: '/dev/null',
        },
        () => undefined,
      ),
    ).rejects.toMatchObject({ code: 'E_SSH_HOSTKEY_UNKNOWN' });
  });
});
