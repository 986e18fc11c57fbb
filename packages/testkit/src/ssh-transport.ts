// The testbed's sshd as a Transport, as the unprivileged user, through @crystalmath/ssh-pool.
// The caller loads ssh-pool (`load`): testkit cannot depend on it, since ssh-pool's own tests
// use testkit, and loading it at run time keeps a package's other tests free of its build.
// Outside CI a missing build skips the caller's SSH tests with a warning; under CI it fails.

import { isCI, requireService } from './testbed.js';

/** The part of @crystalmath/ssh-pool used here. */
interface SshPoolModule<T> {
  readonly SshPool: new (options?: object) => { close(): Promise<void> };
  readonly SshTransport: new (options: {
    readonly pool: unknown;
    readonly host: {
      readonly host: string;
      readonly port: number;
      readonly username: string;
      readonly privateKeyPath: string;
      readonly knownHostsPath: string;
    };
  }) => T;
}

export interface TestbedSshConnection<T> {
  readonly transport: T;
  /** Closes the connection's pool. */
  close(): Promise<void>;
}

/**
 * A function that opens a fresh pool and Transport to the testbed's sshd, or undefined when
 * the ssh service is down or ssh-pool is not built (a warning naming `label`; under CI, an
 * error instead).
 *
 * @example
 * const connect = await testbedSshTransport<Transport>('runner-x', (s) => import(s));
 */
export async function testbedSshTransport<T>(
  label: string,
  load: (specifier: string) => Promise<unknown>,
): Promise<(() => TestbedSshConnection<T>) | undefined> {
  const ssh = requireService('ssh');
  if (!ssh) return undefined;
  const specifier = '@crystalmath/ssh-pool';
  let loaded: Partial<SshPoolModule<T>> | undefined;
  try {
    loaded = (await load(specifier)) as Partial<SshPoolModule<T>>;
  } catch (err) {
    if (isCI()) throw err;
    console.warn(`[${label}] SSH tests skipped: ${specifier} is not built (${String(err)})`);
    return undefined;
  }
  if (typeof loaded?.SshPool !== 'function' || typeof loaded.SshTransport !== 'function') {
    const msg = `[${label}] SSH tests skipped: ${specifier} exports no SshPool/SshTransport`;
    if (isCI()) throw new Error(msg);
    console.warn(msg);
    return undefined;
  }
  const mod = loaded as SshPoolModule<T>;
  return () => {
    const pool = new mod.SshPool({});
    const transport = new mod.SshTransport({
      pool,
      host: {
        host: ssh.host,
        port: ssh.port,
        username: ssh.user,
        privateKeyPath: ssh.privateKeyPath,
        knownHostsPath: ssh.knownHostsPath,
      },
    });
    return { transport, close: () => pool.close() };
  };
}
