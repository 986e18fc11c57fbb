// `pnpm start [alias]`: runs the demo against an `~/.ssh/config` alias, or against the
// repository's testbed sshd (127.0.0.1:2222) when it is up. Without either it says so and exits 0.

import { existsSync, readFileSync } from 'node:fs';
import type { SshHostConfig } from '@crystalmath/ssh-pool';
import { runPoolDemo } from './pool-demo.js';

function testbedHost(): SshHostConfig | undefined {
  const file = `${process.env.CRYSTALMATH_TESTBED_DIR || '/tmp/crystalmath-testbed'}/env.json`;
  if (!existsSync(file)) return undefined;
  const ssh = (JSON.parse(readFileSync(file, 'utf8')) as { ssh?: Record<string, string | number> })
    .ssh;
  if (!ssh) return undefined;
  return {
    host: String(ssh.host),
    port: Number(ssh.port),
    username: String(ssh.user),
    privateKeyPath: String(ssh.privateKeyPath),
    knownHostsPath: String(ssh.knownHostsPath),
  };
}

const host = process.argv[2] ?? testbedHost();
if (host === undefined) {
  console.log(
    'no host: pass an ~/.ssh/config alias (pnpm start <alias>) or start the testbed (scripts/testbed up)',
  );
} else {
  const report = await runPoolDemo(host);
  console.log(JSON.stringify(report));
}
