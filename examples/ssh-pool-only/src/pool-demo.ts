// @crystalmath/ssh-pool on its own, no queue and no runner: forty commands run concurrently
// over at most two connections, a file goes up and comes back over SFTP through SshTransport,
// and the pool's statistics show what happened. Host keys are verified against known_hosts.

import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type SshHostConfig, SshPool, SshTransport } from '@crystalmath/ssh-pool';

export interface DemoReport {
  readonly commands: number;
  readonly distinctShells: number;
  readonly peakConnections: number;
  readonly roundTripBytes: number;
  readonly checksumMatches: boolean;
  readonly remoteHostname: string;
}

/** Runs the demo against `host` (options or an `~/.ssh/config` alias) and returns what it saw. */
export async function runPoolDemo(
  host: SshHostConfig | string,
  log = console.log,
): Promise<DemoReport> {
  const pool = new SshPool({ max: 2, maxChannels: 8 });
  const transport = new SshTransport({ pool, host });
  const local = await mkdtemp(join(tmpdir(), 'cm-ssh-pool-only-'));
  try {
    const hostname = (await transport.exec(['hostname'])).stdout.trim();
    log(`connected to ${transport.description} (${hostname})`);

    // 40 concurrent commands; each prints the pid of its remote shell's parent session.
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        transport.exec(['sh', '-c', 'echo "$1 $PPID"', 'sh', String(i)]),
      ),
    );
    const sessions = new Set(results.map((r) => r.stdout.trim().split(' ')[1]));
    const stats = pool.stats().hosts[0];
    log(`40 commands in ${Date.now() - started} ms over ${stats?.peakConnections} connection(s)`);

    // A 1 MiB file up and back down over SFTP; both copies are atomic (temporary name, rename).
    const data = randomBytes(1024 * 1024);
    const sum = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    await writeFile(join(local, 'up.bin'), data);
    const remoteDir = `cm-ssh-pool-only-${process.pid}`;
    await transport.mkdir(remoteDir);
    await transport.upload(join(local, 'up.bin'), `${remoteDir}/data.bin`);
    const remoteSum = (await transport.exec(['sha256sum', `${remoteDir}/data.bin`])).stdout.split(
      ' ',
    )[0];
    await transport.download(`${remoteDir}/data.bin`, join(local, 'down.bin'));
    const back = await readFile(join(local, 'down.bin'));
    await transport.remove(remoteDir);
    const matches = sum(back) === sum(data) && remoteSum === sum(data);
    log(`1 MiB round trip over SFTP: checksums ${matches ? 'match' : 'DIFFER'}`);

    return {
      commands: results.length,
      distinctShells: sessions.size,
      peakConnections: stats?.peakConnections ?? 0,
      roundTripBytes: back.length,
      checksumMatches: matches,
      remoteHostname: hostname,
    };
  } finally {
    await transport.close?.();
    await pool.close();
    await rm(local, { recursive: true, force: true });
  }
}
