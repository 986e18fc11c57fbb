// SshRunner: the process runner on an SSH host, over an SshTransport the caller builds with
// @crystalmath/ssh-pool (this package does not depend on ssh2). A preset with SSH defaults.

import { ProcessRunner, type ProcessRunnerOptions } from './process-runner.js';

/** Options of `new SshRunner(...)`: ProcessRunner's; `transport` is an `SshTransport`. */
export type SshRunnerOptions = ProcessRunnerOptions;

/**
 * Runs jobs as detached processes on an SSH host. `root` is relative to the login directory
 * unless absolute. Advertises a 1 s minimum poll interval unless told otherwise.
 *
 * @example
 * const pool = new SshPool({});
 * const transport = new SshTransport({ pool, host: { host: 'cluster', port: 22, username: 'me', privateKeyPath, knownHostsPath } });
 * const runner = new SshRunner({ transport, root: 'cm-jobs' });
 * const h = await runner.submit({ key: 'job-1-a1', spec: { name: 'scf', argv: ['pw.x', '-in', 'scf.in'] } });
 */
export class SshRunner extends ProcessRunner {
  constructor(options: SshRunnerOptions) {
    super({ minPollIntervalMs: 1_000, ...options });
  }
}
