// core's Transport conformance suite against the testbed's real sshd, through the pool, as
// the normal user (scratch directory relative to its home) and as root (absolute, in /tmp).

import { transportConformance } from '@crystalmath/core/testing';
import { describe } from 'vitest';
import { SshPool } from '../ssh-pool.js';
import { SshTransport } from '../ssh-transport.js';
import { ssh, testHost } from './helpers.js';

const suffix = () => `${process.pid}-${Date.now().toString(36)}`;

/**
 * What one command costs for `as` on the testbed, measured once on a warm connection: every
 * exec starts the account's shell, whose rc files may be slow (root's ~/.bashrc runs
 * `pyenv init`: ~2.8 s a command here, more on a loaded machine).
 */
async function measureExecMs(as: 'user' | 'root'): Promise<number> {
  const pool = new SshPool({ max: 1 });
  try {
    const transport = new SshTransport({ pool, host: testHost(as) });
    await transport.exec(['true']);
    const started = Date.now();
    await transport.exec(['true']);
    return Date.now() - started;
  } finally {
    await pool.close();
  }
}

/**
 * How long a command may wait for a session: 30 s (the pool's default), plus the widest case
 * ("runs 20 commands concurrently") as if its 20 commands ran one after another at the
 * measured cost. A hang, or a pool that stops serving, still fails; a slow login shell on a
 * loaded machine alone does not. Each test may take that long and 30 s more.
 */
const acquireBudgetMs = async (as: 'user' | 'root'): Promise<number> =>
  30_000 + 20 * (await measureExecMs(as));
const USER_ACQUIRE_MS = ssh ? await acquireBudgetMs('user') : 30_000;
const ROOT_ACQUIRE_MS = ssh ? await acquireBudgetMs('root') : 30_000;

describe.skipIf(!ssh)('SshTransport over the testbed sshd', () => {
  transportConformance(
    'ssh (normal user, relative paths)',
    async () => {
      const pool = new SshPool({ max: 2 });
      const transport = new SshTransport({
        pool,
        host: testHost('user'),
        acquireTimeoutMs: USER_ACQUIRE_MS,
      });
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
    },
    { timeoutMs: USER_ACQUIRE_MS + 30_000 },
  );

  transportConformance(
    'ssh (root, absolute paths)',
    async () => {
      const pool = new SshPool({ max: 2 });
      const transport = new SshTransport({
        pool,
        host: testHost('root'),
        acquireTimeoutMs: ROOT_ACQUIRE_MS,
      });
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
    },
    { timeoutMs: ROOT_ACQUIRE_MS + 30_000 },
  );
});
