// Translates an `ssh:` block of the configuration into @crystalmath/ssh-pool host options:
// an `~/.ssh/config` alias is resolved first (through ssh-pool's resolver), then the explicit
// fields of the block override what the alias says.

import { userInfo } from 'node:os';
import type { SshHostConfig } from '@crystalmath/ssh-pool';
import type { SshConfig } from './config/config-schema.js';

type Resolver = (
  alias: string,
) =>
  | SshHostConfig
  | Partial<SshHostConfig>
  | undefined
  | Promise<SshHostConfig | Partial<SshHostConfig> | undefined>;

/**
 * Host options for `ssh`, resolving `ssh.host` as an `~/.ssh/config` alias when the pool
 * offers a resolver. Without a key or an explicit `agent: false`, `$SSH_AUTH_SOCK` is used.
 */
export async function sshHostOptions(
  ssh: SshConfig,
  sshPool: object,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<SshHostConfig> {
  const resolve = (sshPool as { resolveSshConfig?: Resolver }).resolveSshConfig;
  const fromAlias: Partial<SshHostConfig> = (resolve ? await resolve(ssh.host) : undefined) ?? {};
  const agentSocket = env.SSH_AUTH_SOCK;
  const wantsAgent =
    ssh.agent ?? (ssh.privateKeyPath === undefined && fromAlias.privateKeyPath === undefined);
  const username = ssh.user ?? fromAlias.username ?? env.USER ?? userInfo().username;
  return {
    ...fromAlias,
    host: fromAlias.host ?? ssh.host,
    username,
    ...(ssh.port !== undefined ? { port: ssh.port } : {}),
    ...(ssh.privateKeyPath !== undefined ? { privateKeyPath: ssh.privateKeyPath } : {}),
    ...(ssh.knownHostsPath !== undefined ? { knownHostsPath: ssh.knownHostsPath } : {}),
    ...(ssh.hostKeyPolicy !== undefined ? { hostKeyPolicy: ssh.hostKeyPolicy } : {}),
    ...(ssh.maxConnections !== undefined ? { maxConnections: ssh.maxConnections } : {}),
    ...(ssh.connectTimeoutMs !== undefined ? { connectTimeoutMs: ssh.connectTimeoutMs } : {}),
    ...(wantsAgent && agentSocket ? { agent: agentSocket } : {}),
  } as SshHostConfig;
}
