// `~/.ssh/config` support through the `ssh-config` parser: an alias becomes an SshHostConfig
// with the common keys (HostName, User, Port, IdentityFile, IdentityAgent, ProxyJump,
// ServerAliveInterval, ConnectTimeout, UserKnownHostsFile, StrictHostKeyChecking=accept-new).
// `Include` is expanded in place. ProxyCommand is refused: there is no command to run here.

import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { homedir, hostname, userInfo } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import SSHConfig from 'ssh-config';
import { SshConfigError } from './errors.js';
import type { SshHostConfig } from './options.js';

export interface ResolveSshConfigOptions {
  /** The config file. Default `~/.ssh/config`; a missing file is an empty config. */
  readonly configPath?: string;
}

type Computed = Record<string, string | string[]>;

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function all(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

function localUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? process.env.LOGNAME ?? '';
  }
}

interface Tokens {
  readonly alias: string;
  readonly host: string;
  readonly port: number;
  readonly user: string;
}

/** OpenSSH's `%` tokens and `~` in file names. */
function expandPath(value: string, t: Tokens, field: string): string {
  const expanded = value.replace(/%(.)/g, (_m, c: string) => {
    switch (c) {
      case '%':
        return '%';
      case 'd':
        return homedir();
      case 'h':
        return t.host;
      case 'n':
        return t.alias;
      case 'p':
        return String(t.port);
      case 'r':
        return t.user;
      case 'u':
        return localUser();
      case 'i':
        return String(process.getuid?.() ?? '');
      case 'l':
        return hostname();
      case 'L':
        return hostname().split('.')[0] ?? '';
      default:
        throw new SshConfigError(`${field}: unsupported token %${c} in ${value}`);
    }
  });
  if (expanded === '~') return homedir();
  if (expanded.startsWith('~/')) return join(homedir(), expanded.slice(2));
  return expanded;
}

function unquote(value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"')
    ? value.slice(1, -1)
    : value;
}

function globToRegExp(pattern: string): RegExp {
  return new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
}

/** Reads a config file with its `Include`s inlined (relative paths are under ~/.ssh). */
async function readWithIncludes(path: string, depth: number): Promise<string> {
  if (depth > 16) throw new SshConfigError(`${path}: Include nested too deeply`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw new SshConfigError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code}`, {
      cause: error,
    });
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*include\s*(?:=\s*|\s)(.+)$/i.exec(line);
    if (!m) {
      out.push(line);
      continue;
    }
    for (const raw of (m[1] ?? '').trim().match(/"[^"]*"|\S+/g) ?? []) {
      let target = unquote(raw);
      if (target.startsWith('~'))
        target = target === '~' ? homedir() : join(homedir(), target.slice(2));
      else if (!isAbsolute(target)) target = join(homedir(), '.ssh', target);
      const files = /[*?]/.test(basename(target))
        ? (await readdir(dirname(target)).catch(() => [] as string[]))
            .filter((f) => globToRegExp(basename(target)).test(f))
            .sort()
            .map((f) => join(dirname(target), f))
        : [target];
      for (const f of files) out.push(await readWithIncludes(f, depth + 1));
    }
  }
  return out.join('\n');
}

/** One `ProxyJump` element: `[user@]host[:port]` or `ssh://[user@]host[:port]`. */
function parseJump(spec: string): { host: string; user?: string; port?: number } {
  let s = spec.trim();
  if (s.startsWith('ssh://')) s = s.slice(6).replace(/\/$/, '');
  let user: string | undefined;
  const at = s.lastIndexOf('@');
  if (at >= 0) {
    user = s.slice(0, at);
    s = s.slice(at + 1);
  }
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracketed) {
    s = bracketed[1] as string;
    if (bracketed[2]) port = Number(bracketed[2]);
  } else {
    const m = /^([^:]+):(\d+)$/.exec(s);
    if (m) {
      s = m[1] as string;
      port = Number(m[2]);
    }
  }
  if (s === '') throw new SshConfigError(`ProxyJump: cannot parse "${spec}"`);
  return { host: s, ...(user ? { user } : {}), ...(port !== undefined ? { port } : {}) };
}

function number(value: string | undefined, field: string, alias: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new SshConfigError(`${alias}: ${field} must be a non-negative integer, got "${value}"`);
  }
  return n;
}

const DEFAULT_IDENTITIES = ['~/.ssh/id_ed25519', '~/.ssh/id_ecdsa', '~/.ssh/id_rsa'];

function resolveAlias(
  parsed: SSHConfig,
  alias: string,
  overrides: { user?: string; port?: number },
  chain: readonly string[],
): SshHostConfig {
  if (chain.includes(alias) || chain.length > 8) {
    throw new SshConfigError(`ProxyJump loop: ${[...chain, alias].join(' -> ')}`);
  }
  const c = parsed.compute(alias, { ignoreCase: true, matchExec: false }) as Computed;
  const proxyCommand = first(c.proxycommand);
  if (proxyCommand !== undefined && proxyCommand.toLowerCase() !== 'none') {
    throw new SshConfigError(
      `${alias}: ProxyCommand is not supported (no local command is ever run); use ProxyJump`,
      { details: { alias } },
    );
  }
  const host = (first(c.hostname) ?? alias).replace(/%h/g, alias).replace(/%%/g, '%');
  const port = overrides.port ?? number(first(c.port), 'Port', alias) ?? 22;
  const username = overrides.user ?? first(c.user) ?? localUser();
  if (!username) throw new SshConfigError(`${alias}: no User and no local user name to default to`);
  const tokens: Tokens = { alias, host, port, user: username };

  const identities = all(c.identityfile).map((f) => expandPath(unquote(f), tokens, 'IdentityFile'));
  const candidates =
    identities.length > 0
      ? identities
      : DEFAULT_IDENTITIES.map((f) => expandPath(f, tokens, 'IdentityFile'));
  // Like ssh, a missing IdentityFile is not fatal: the agent may hold the key.
  const privateKeyPath = candidates.find((f) => existsSync(f));

  let agent: string | undefined;
  const identityAgent = first(c.identityagent);
  if (identityAgent === undefined || identityAgent === 'SSH_AUTH_SOCK')
    agent = process.env.SSH_AUTH_SOCK || undefined;
  else if (identityAgent.toLowerCase() !== 'none') {
    agent = identityAgent.startsWith('$')
      ? process.env[identityAgent.slice(1)] || undefined
      : expandPath(unquote(identityAgent), tokens, 'IdentityAgent');
  }

  const knownHosts = first(c.userknownhostsfile);
  const knownHostsPath =
    knownHosts === undefined || knownHosts.toLowerCase() === 'none'
      ? undefined
      : expandPath(unquote(knownHosts), tokens, 'UserKnownHostsFile');
  const strict = first(c.stricthostkeychecking)?.toLowerCase();
  const aliveSeconds = number(first(c.serveraliveinterval), 'ServerAliveInterval', alias);
  const connectSeconds = number(first(c.connecttimeout), 'ConnectTimeout', alias);

  const jump: SshHostConfig[] = [];
  const proxyJump = first(c.proxyjump);
  if (proxyJump !== undefined && proxyJump.toLowerCase() !== 'none') {
    for (const spec of proxyJump.split(',')) {
      const j = parseJump(spec);
      const hop = resolveAlias(
        parsed,
        j.host,
        { ...(j.user ? { user: j.user } : {}), ...(j.port !== undefined ? { port: j.port } : {}) },
        [...chain, alias],
      );
      // A hop reached through its own jump hosts: flatten into one chain, first hop first.
      const { jump: hopJump, ...hopDirect } = hop;
      jump.push(...(hopJump ?? []), hopDirect);
    }
  }

  return {
    host,
    port,
    username,
    ...(privateKeyPath !== undefined ? { privateKeyPath } : {}),
    ...(agent !== undefined ? { agent } : {}),
    ...(knownHostsPath !== undefined ? { knownHostsPath } : {}),
    // `StrictHostKeyChecking no` is deliberately not honoured: host keys are always checked.
    ...(strict === 'accept-new' ? { hostKeyPolicy: 'tofu' as const } : {}),
    ...(aliveSeconds ? { keepaliveIntervalMs: aliveSeconds * 1000 } : {}),
    ...(connectSeconds ? { connectTimeoutMs: connectSeconds * 1000 } : {}),
    ...(jump.length > 0 ? { jump } : {}),
  };
}

/**
 * Resolves an `~/.ssh/config` alias (or a plain host name, as ssh does) into host options.
 * Throws `E_SSH_CONFIG` for an unusable entry (ProxyCommand, a ProxyJump loop, a bad value).
 *
 * @example
 * const host = await resolveSshConfig('cluster'); // Host cluster / HostName login.cluster.org / ...
 * await pool.withSession(host, (s) => s.exec(['hostname']));
 */
export async function resolveSshConfig(
  alias: string,
  options: ResolveSshConfigOptions = {},
): Promise<SshHostConfig> {
  if (typeof alias !== 'string' || alias.trim() === '' || /\s/.test(alias)) {
    throw new SshConfigError(`not a host alias: ${JSON.stringify(alias)}`);
  }
  const path = options.configPath ?? join(homedir(), '.ssh', 'config');
  const text = await readWithIncludes(path, 0);
  let parsed: SSHConfig;
  try {
    parsed = SSHConfig.parse(text);
  } catch (cause) {
    throw new SshConfigError(`cannot parse ${path}: ${(cause as Error).message}`, { cause });
  }
  return resolveAlias(parsed, alias, {}, []);
}
