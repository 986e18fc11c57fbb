// The Runner conformance suite for SshRunner against the testbed's real sshd on loopback, as
// the unprivileged user `cmtest`, plus the PID-reuse and process-tree checks over SSH.
// @crystalmath/ssh-pool is loaded at run time, so this package's other tests do not depend on
// its build; outside CI a missing build skips this file, under CI it fails it.

import type { RunnerHandle, Transport } from '@crystalmath/core';
import { runnerConformance, testJobKey, waitForTerminal } from '@crystalmath/core/testing';
import { testbedSshTransport } from '@crystalmath/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SshRunner } from '../index.js';

const connect = await testbedSshTransport<Transport>(
  'runner-process',
  (s) => import(/* @vite-ignore */ s),
);

const uniqueRoot = (): string => `cm-rp-ssh-${Date.now().toString(36)}`;

describe.skipIf(!connect)('SshRunner over SshTransport', () => {
  runnerConformance(
    'process (ssh)',
    async () => {
      const { transport, close } = connect!();
      // Relative to cmtest's login directory.
      const root = uniqueRoot();
      const runner = new SshRunner({ transport, root, killGraceMs: 1_000 });
      return {
        runner,
        cleanup: async () => {
          await transport.remove(root).catch(() => undefined);
          await close();
        },
      };
    },
    { jobTimeoutMs: 30_000, pollIntervalMs: 100 },
  );

  describe('beyond conformance', () => {
    let transport: Transport;
    let close: () => Promise<void>;
    let runner: SshRunner;
    const root = uniqueRoot();

    beforeAll(() => {
      ({ transport, close } = connect!());
      runner = new SshRunner({ transport, root, killGraceMs: 300 });
    });
    afterAll(async () => {
      await transport.remove(root).catch(() => undefined);
      await close();
    });

    const alive = async (pid: number): Promise<boolean> => {
      // A zombie (nobody reaps orphans in the testbed's container) counts as dead.
      const r = await transport.exec([
        'sh',
        '-c',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
        'IFS= read -r st < "/proc/$1/stat" || exit 1; case "${st##*) }" in Z*|X*) exit 1 ;; esac',
        'sh',
        String(pid),
      ]);
      return r.exitCode === 0;
    };

    it('cancel leaves no process of the job tree behind on the host', async () => {
      const h = await runner.submit({
        key: testJobKey('ssh-tree'),
        spec: {
          name: 'tree',
          argv: ['sh', '-c', 'trap "" TERM; sleep 300 & echo $! > bg.pid; wait'],
        },
      });
      let bg = '';
      for (let i = 0; i < 100 && bg === ''; i++) {
        const r = await transport.exec(['cat', `${root}/${h.jobKey}/bg.pid`]);
        bg = r.exitCode === 0 ? r.stdout.trim() : '';
        if (bg === '') await new Promise((r2) => setTimeout(r2, 50));
      }
      expect(await alive(Number(bg))).toBe(true);
      await runner.cancel(h);
      const st = await waitForTerminal(runner, h, 10_000, 50);
      expect(st.state).toBe('cancelled');
      expect(await alive(Number(bg))).toBe(false);
      expect(await alive(h.data.pid as number)).toBe(false);
    });

    it('reports lost when a live PID on the host belongs to another process', async () => {
      const h = await runner.submit({
        key: testJobKey('ssh-reuse'),
        spec: { name: 'reuse', argv: ['sleep', '300'] },
      });
      const other = await transport.exec({ script: 'sleep 30 >/dev/null 2>&1 & echo $!' });
      const pid = Number(other.stdout.trim());
      // The shell's kill: procps' /bin/kill would read -PGID as an option.
      await transport.exec([
        'sh',
        '-c',
        'kill -KILL "$1" "-$2"',
        'sh',
        String(h.data.wrapperPid),
        String(h.data.pgid),
      ]);
      // SIGKILL is asynchronous: wait until the job is really gone.
      for (let i = 0; i < 100 && (await alive(h.data.pid as number)); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(await alive(h.data.pid as number)).toBe(false);
      const forged: RunnerHandle = { ...h, data: { ...h.data, wrapperPid: pid, pid, pgid: pid } };
      expect(await alive(pid)).toBe(true);
      const [st] = await runner.poll([forged]);
      expect(st?.state).toBe('lost');
      await transport.exec(['kill', '-KILL', String(pid)]);
    });
  });
});
