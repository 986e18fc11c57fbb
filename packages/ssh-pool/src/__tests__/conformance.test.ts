// core's Transport conformance suite against the testbed's real sshd, through the pool, as
// the normal user (scratch directory relative to its home) and as root (absolute, in /tmp).

import { transportConformance } from '@crystalmath/core/testing';
import { describe } from 'vitest';
import { SshPool } from '../ssh-pool.js';
import { SshTransport } from '../ssh-transport.js';
import { ssh, testHost } from './helpers.js';

const suffix = () => `${process.pid}-${Date.now().toString(36)}`;

describe.skipIf(!ssh)('SshTransport over the testbed sshd', () => {
  transportConformance('ssh (normal user, relative paths)', async () => {
    const pool = new SshPool({ max: 2 });
    const transport = new SshTransport({ pool, host: testHost('user') });
    const root = `cm-ssh-conformance-${suffix()}`;
    await transport.mkdir(root);
    return {
      transport,
      root,
      cleanup: async () => {
        await transport.remove(root);
        await pool.close();
      },
    };
  });

  transportConformance('ssh (root, absolute paths)', async () => {
    const pool = new SshPool({ max: 2 });
    const transport = new SshTransport({ pool, host: testHost('root') });
    const root = `/tmp/cm-ssh-conformance-root-${suffix()}`;
    await transport.mkdir(root);
    return {
      transport,
      root,
      cleanup: async () => {
        await transport.remove(root);
        await pool.close();
      },
    };
  });
});
