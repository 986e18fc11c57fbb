// known_hosts parsing and host-key checking, as OpenSSH does it: plain patterns (with `*`, `?`
// and `!negation`), hashed `|1|salt|hash` names (HMAC-SHA1), the `[host]:port` form for ports
// other than 22, and `@revoked` markers. `@cert-authority` lines are recognised and reported
// as unsupported (ssh2 has no host certificates). Writing happens only for trust-on-first-use.

import { createHash, createHmac, randomBytes } from 'node:crypto';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Mutex } from 'async-mutex';
import { SshHostKeyError } from './errors.js';

/** One usable line of a known_hosts file. */
export interface KnownHostEntry {
  /** 1-based line number, for messages. */
  readonly line: number;
  readonly marker: 'revoked' | 'cert-authority' | undefined;
  /** The comma-separated patterns, or one hashed name. */
  readonly hosts:
    | { readonly kind: 'patterns'; readonly patterns: readonly string[] }
    | { readonly kind: 'hashed'; readonly salt: Buffer; readonly hash: Buffer };
  /** Key type as written on the line, e.g. `ssh-ed25519`. */
  readonly keyType: string;
  /** The decoded key blob (what the server sends). */
  readonly key: Buffer;
}

/** The result of checking a presented key against known_hosts entries. */
export type HostKeyStatus =
  | { readonly status: 'trusted'; readonly entry: KnownHostEntry }
  | { readonly status: 'revoked'; readonly entry: KnownHostEntry }
  | { readonly status: 'mismatch'; readonly expected: readonly KnownHostEntry[] }
  | {
      readonly status: 'unknown';
      /** Types of keys on record for this host, other than the presented one. */
      readonly otherTypes: readonly string[];
      /** A `@cert-authority` line matches this host (unsupported). */
      readonly certAuthority: boolean;
    };

/** The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

/** `SHA256:<base64 without padding>` of a key blob, as `ssh-keygen -lf` prints it. */
export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** The key type encoded at the start of an SSH public key blob (`ssh-ed25519`, ...). */
export function keyTypeOf(key: Buffer): string {
  if (key.length < 4) return 'unknown';
  const len = key.readUInt32BE(0);
  if (len > 64 || 4 + len > key.length) return 'unknown';
  return key.subarray(4, 4 + len).toString('latin1');
}

/** Parses known_hosts text. Blank, comment and malformed lines are skipped. */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const fields = (lines[i] ?? '').trim().split(/[ \t]+/);
    if (fields[0] === undefined || fields[0] === '' || fields[0].startsWith('#')) continue;
    let marker: KnownHostEntry['marker'];
    if (fields[0].startsWith('@')) {
      const m = fields.shift();
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else continue; // unknown marker: OpenSSH ignores the line too
    }
    const [hostField, keyType, keyData] = fields;
    if (hostField === undefined || keyType === undefined || keyData === undefined) continue;
    const key = Buffer.from(keyData, 'base64');
    if (key.length === 0) continue;
    let hosts: KnownHostEntry['hosts'];
    if (hostField.startsWith('|1|')) {
      const [, , salt, hash] = hostField.split('|');
      if (salt === undefined || hash === undefined) continue;
      hosts = {
        kind: 'hashed',
        salt: Buffer.from(salt, 'base64'),
        hash: Buffer.from(hash, 'base64'),
      };
    } else if (hostField.startsWith('|')) {
      continue; // unknown hash scheme
    } else {
      hosts = { kind: 'patterns', patterns: hostField.split(',').filter((p) => p !== '') };
    }
    entries.push({ line: i + 1, marker, hosts, keyType, key });
  }
  return entries;
}

/** OpenSSH's `match_pattern`: `*` and `?` wildcards over the whole string, case-insensitive. */
function matchPattern(name: string, pattern: string): boolean {
  const re = new RegExp(
    `^${pattern
      .toLowerCase()
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    's',
  );
  return re.test(name);
}

/** True when the entry's host field matches `name` (as built by `knownHostsName`). */
export function entryMatches(entry: KnownHostEntry, name: string): boolean {
  if (entry.hosts.kind === 'hashed') {
    const mac = createHmac('sha1', entry.hosts.salt).update(name).digest();
    return mac.length === entry.hosts.hash.length && mac.equals(entry.hosts.hash);
  }
  // A negated match rejects the whole line, whatever else matches (OpenSSH semantics).
  let matched = false;
  for (const p of entry.hosts.patterns) {
    if (p.startsWith('!')) {
      if (matchPattern(name, p.slice(1))) return false;
    } else if (matchPattern(name, p)) {
      matched = true;
    }
  }
  return matched;
}

/** Checks a presented key blob against parsed entries for host:port. */
export function checkHostKey(
  entries: readonly KnownHostEntry[],
  host: string,
  port: number,
  key: Buffer,
): HostKeyStatus {
  const name = knownHostsName(host, port);
  const matching = entries.filter((e) => entryMatches(e, name));
  const revoked = matching.find((e) => e.marker === 'revoked' && e.key.equals(key));
  if (revoked) return { status: 'revoked', entry: revoked };
  const plain = matching.filter((e) => e.marker === undefined);
  const trusted = plain.find((e) => e.key.equals(key));
  if (trusted) return { status: 'trusted', entry: trusted };
  const type = keyTypeOf(key);
  const sameType = plain.filter((e) => keyTypeOf(e.key) === type);
  if (sameType.length > 0) return { status: 'mismatch', expected: sameType };
  return {
    status: 'unknown',
    otherTypes: [...new Set(plain.map((e) => keyTypeOf(e.key)))],
    certAuthority: matching.some((e) => e.marker === 'cert-authority'),
  };
}

/** Key types on record (not revoked) for host:port, in file order. */
export function knownKeyTypes(
  entries: readonly KnownHostEntry[],
  host: string,
  port: number,
): string[] {
  const name = knownHostsName(host, port);
  const types = entries
    .filter((e) => e.marker === undefined && entryMatches(e, name))
    .map((e) => keyTypeOf(e.key));
  return [...new Set(types)];
}

/** A known_hosts line for a key, plain (`[host]:port type key`) or hashed (`|1|salt|hash`). */
export function knownHostsLine(host: string, port: number, key: Buffer, hash = false): string {
  const name = knownHostsName(host, port);
  let field = name;
  if (hash) {
    const salt = randomBytes(20);
    const mac = createHmac('sha1', salt).update(name).digest();
    field = `|1|${salt.toString('base64')}|${mac.toString('base64')}`;
  }
  return `${field} ${keyTypeOf(key)} ${key.toString('base64')}`;
}

/** Reads and parses a known_hosts file; a missing file is `undefined`. */
export async function readKnownHosts(path: string): Promise<KnownHostEntry[] | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return parseKnownHosts(text);
}

/** How a host key is checked: `strict` refuses unknown keys; `tofu` records them first. */
export type HostKeyPolicy = 'strict' | 'tofu';

export interface VerifyHostKeyOptions {
  readonly host: string;
  readonly port: number;
  readonly key: Buffer;
  readonly knownHostsPath: string;
  readonly policy: HostKeyPolicy;
  /** Entries already read for this connection (re-read under the lock for TOFU). */
  readonly entries?: readonly KnownHostEntry[] | undefined;
  /** TOFU writes hashed names. Default false. */
  readonly hashKnownHosts?: boolean;
}

// One writer per known_hosts file in this process: two connections to a new host must not
// both append its key. A short lock around local file I/O only, never network I/O.
const writeLocks = new Map<string, Mutex>();

function lockFor(path: string): Mutex {
  let lock = writeLocks.get(path);
  if (!lock) {
    lock = new Mutex();
    writeLocks.set(path, lock);
  }
  return lock;
}

function hostKeyError(
  status: Exclude<HostKeyStatus, { status: 'trusted' }>,
  o: VerifyHostKeyOptions,
  missingFile: boolean,
  tofuRefused: boolean,
): SshHostKeyError {
  const name = knownHostsName(o.host, o.port);
  const fp = fingerprint(o.key);
  const keyType = keyTypeOf(o.key);
  const base = {
    hostname: name,
    port: o.port,
    keyType,
    fingerprint: fp,
    knownHostsPath: o.knownHostsPath,
  };
  if (status.status === 'revoked') {
    return new SshHostKeyError(
      'E_SSH_HOSTKEY_REVOKED',
      `host key for ${name} (${keyType} ${fp}) is marked @revoked in ${o.knownHostsPath} (line ${status.entry.line}): refusing to connect`,
      base,
    );
  }
  if (status.status === 'mismatch') {
    const expected = status.expected.map((e) => fingerprint(e.key));
    return new SshHostKeyError(
      'E_SSH_HOSTKEY_MISMATCH',
      `HOST KEY MISMATCH for ${name}: the server presented ${keyType} ${fp}, but ${o.knownHostsPath} ` +
        `(line ${status.expected.map((e) => e.line).join(', ')}) records ${expected.join(', ')}. ` +
        'The server was reinstalled or someone is in the middle: find out which before replacing the line.',
      { ...base, expected },
    );
  }
  const notes: string[] = [];
  if (missingFile) notes.push(`${o.knownHostsPath} does not exist`);
  if (status.otherTypes.length > 0)
    notes.push(`keys of other types are on record for it (${status.otherTypes.join(', ')})`);
  if (status.certAuthority) notes.push('@cert-authority entries match it but are not supported');
  if (tofuRefused) notes.push('trust-on-first-use does not add a key for a host already on record');
  const keyscan = `ssh-keyscan${o.port === 22 ? '' : ` -p ${o.port}`} ${o.host} >> ${o.knownHostsPath}`;
  return new SshHostKeyError(
    'E_SSH_HOSTKEY_UNKNOWN',
    `unknown host key for ${name}: ${keyType} ${fp}${notes.length ? ` (${notes.join('; ')})` : ''}. ` +
      `Verify the fingerprint out of band, then add it: \`${keyscan}\` ` +
      "(check the scanned key's fingerprint with `ssh-keygen -lf`), or use hostKeyPolicy 'tofu'.",
    base,
  );
}

/**
 * Verifies a presented host key against known_hosts. Resolves when it is trusted (after
 * recording it under `tofu` when the host has no key on record), throws `SshHostKeyError`
 * otherwise.
 */
export async function verifyHostKey(o: VerifyHostKeyOptions): Promise<void> {
  const entries = o.entries ?? (await readKnownHosts(o.knownHostsPath));
  const status = checkHostKey(entries ?? [], o.host, o.port, o.key);
  if (status.status === 'trusted') return;
  if (status.status !== 'unknown' || o.policy !== 'tofu') {
    throw hostKeyError(status, o, entries === undefined, false);
  }
  if (status.otherTypes.length > 0) throw hostKeyError(status, o, false, true);
  await lockFor(o.knownHostsPath).runExclusive(async () => {
    // Re-read under the lock: another connection may have recorded the host meanwhile.
    const current = await readKnownHosts(o.knownHostsPath);
    const again = checkHostKey(current ?? [], o.host, o.port, o.key);
    if (again.status === 'trusted') return;
    if (again.status !== 'unknown' || again.otherTypes.length > 0) {
      throw hostKeyError(again, o, false, again.status === 'unknown');
    }
    await mkdir(dirname(o.knownHostsPath), { recursive: true, mode: 0o700 });
    const line = knownHostsLine(o.host, o.port, o.key, o.hashKnownHosts ?? false);
    let prefix = '';
    if (current !== undefined) {
      const text = await readFile(o.knownHostsPath, 'utf8');
      if (text.length > 0 && !text.endsWith('\n')) prefix = '\n';
    }
    await appendFile(o.knownHostsPath, `${prefix}${line}\n`, { mode: 0o600 });
  });
}
