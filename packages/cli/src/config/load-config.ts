// Finds and reads the configuration file (`--config`, `$CRYSTALMATH_CONFIG`, or
// `crystalmath.config.{json,yaml,yml}` in the working directory), validates it, and resolves
// its relative paths against the file's folder. Every failure is one CliError naming the file
// and the field, raised before anything is opened.

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { isCrystalMathError } from '@crystalmath/core';
import { type SgeResources, validateSgeResources } from '@crystalmath/runner-sge';
import {
  type SlurmDefaults,
  type SlurmResources,
  validateSlurmResources,
  validateSlurmTargetOptions,
} from '@crystalmath/runner-slurm';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { CliError } from '../cli-error.js';
import {
  configSchema,
  describeZodIssue,
  type ParsedConfig,
  type SshConfig,
  type TargetConfig,
} from './config-schema.js';

/** File names looked for in the working directory, in this order. */
export const CONFIG_FILE_NAMES = [
  'crystalmath.config.json',
  'crystalmath.config.yaml',
  'crystalmath.config.yml',
] as const;

export type StoreConfig =
  | { readonly kind: 'sqlite'; readonly path: string }
  | { readonly kind: 'postgres'; readonly url: string };

/** A validated configuration with absolute paths. */
export interface ResolvedConfig {
  /** Absolute path of the file it came from. */
  readonly file: string;
  readonly store: StoreConfig;
  readonly defaultTarget: string | undefined;
  readonly targets: Readonly<Record<string, TargetConfig>>;
  readonly scheduler: ParsedConfig['scheduler'];
}

export interface LoadConfigOptions {
  /** Explicit path (`--config`). */
  readonly path?: string;
  /** Directory searched when no path is given. Default `process.cwd()`. */
  readonly cwd?: string;
  /** Environment consulted for `CRYSTALMATH_CONFIG`. Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** Expands a leading `~/` to the home directory. */
export function expandHome(p: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return join(homedir(), p.slice(2));
  return p;
}

/** Where the config file is, or a CliError saying where it was looked for. */
export function findConfigFile(options: LoadConfigOptions = {}): string {
  const cwd = options.cwd ?? process.cwd();
  const explicit = options.path ?? (options.env ?? process.env).CRYSTALMATH_CONFIG;
  if (explicit) {
    const file = resolve(cwd, expandHome(explicit));
    if (!existsSync(file)) throw new CliError('E_CONFIG', `config file not found: ${file}`);
    return file;
  }
  for (const candidate of CONFIG_FILE_NAMES) {
    const file = join(cwd, candidate);
    if (existsSync(file)) return file;
  }
  throw new CliError(
    'E_CONFIG',
    `no crystalmath.config.json or crystalmath.config.yaml in ${cwd}: run \`crystalmath init\` or pass --config <file>`,
  );
}

/** Parses JSON or YAML text (by extension) into a plain value; syntax errors name the line. */
export function parseConfigText(text: string, file: string): unknown {
  const label = basename(file);
  if (file.endsWith('.ts') || file.endsWith('.mts') || file.endsWith('.js')) {
    throw new CliError(
      'E_CONFIG',
      `${label}: TypeScript/JavaScript config files are not supported; use crystalmath.config.json or .yaml`,
    );
  }
  if (file.endsWith('.json')) {
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new CliError('E_CONFIG', `${label}: invalid JSON: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  try {
    return parseYaml(text, { prettyErrors: false, uniqueKeys: true }) as unknown;
  } catch (err) {
    const where = err instanceof YAMLParseError ? ` at line ${yamlLine(text, err.pos[0])}` : '';
    const msg = (err as Error).message.split('\n', 1)[0];
    throw new CliError('E_CONFIG', `${label}: invalid YAML${where}: ${msg}`, { cause: err });
  }
}

/** Validates a parsed config value and resolves its paths against `file`'s folder. */
export function resolveConfig(value: unknown, file: string): ResolvedConfig {
  const label = basename(file);
  const dir = dirname(file);
  const parsed = configSchema.safeParse(value ?? {});
  if (!parsed.success) {
    throw new CliError('E_CONFIG', `${label}: ${describeZodIssue(parsed.error)}`);
  }
  const cfg = parsed.data;
  const abs = (p: string): string => {
    const e = expandHome(p);
    return isAbsolute(e) ? e : resolve(dir, e);
  };
  let store: StoreConfig;
  if (cfg.store === undefined) store = { kind: 'sqlite', path: join(dir, 'crystalmath.db') };
  else if (typeof cfg.store === 'string') {
    store = /^postgres(ql)?:\/\//.test(cfg.store)
      ? { kind: 'postgres', url: cfg.store }
      : { kind: 'sqlite', path: abs(cfg.store) };
  } else if ('sqlite' in cfg.store) store = { kind: 'sqlite', path: abs(cfg.store.sqlite) };
  else store = { kind: 'postgres', url: cfg.store.postgres };

  const targets: Record<string, TargetConfig> = {};
  for (const [name, t] of Object.entries(cfg.targets)) {
    try {
      // The same rules a job's fields get, and the runner's own, at load: a bad default or
      // skip list is a configuration error (exit 3) before anything is written.
      if (t.type === 'sge') {
        validateSgeResources(t.defaults as SgeResources | undefined, `targets.${name}.defaults`);
      } else if (t.type === 'slurm') {
        validateSlurmTargetOptions(
          { defaults: t.defaults as SlurmDefaults | undefined, skipDirectives: t.skipDirectives },
          `targets.${name}`,
        );
      } else {
        validateSlurmResources(
          t.defaults as SlurmResources | undefined,
          `targets.${name}.defaults`,
        );
      }
    } catch (err) {
      if (isCrystalMathError(err)) throw new CliError('E_CONFIG', `${label}: ${err.message}`);
      throw err;
    }
    const withSsh = (s: SshConfig): SshConfig => ({
      ...s,
      ...(s.privateKeyPath !== undefined ? { privateKeyPath: abs(s.privateKeyPath) } : {}),
      ...(s.knownHostsPath !== undefined ? { knownHostsPath: abs(s.knownHostsPath) } : {}),
    });
    if (t.type === 'local') {
      targets[name] = { ...t, root: abs(t.root ?? '.crystalmath/runs') };
    } else if (t.type === 'ssh') {
      targets[name] = { ...t, ssh: withSsh(t.ssh), root: t.root ?? '.crystalmath/runs' };
    } else {
      targets[name] = {
        ...t,
        ...(t.ssh ? { ssh: withSsh(t.ssh) } : {}),
        root: t.ssh ? t.root : abs(t.root),
      };
    }
  }
  if (cfg.defaultTarget !== undefined && !(cfg.defaultTarget in targets)) {
    throw new CliError(
      'E_CONFIG',
      `${label}: defaultTarget: "${cfg.defaultTarget}" is not one of the declared targets (${Object.keys(targets).join(', ')})`,
    );
  }
  return {
    file,
    store,
    defaultTarget: cfg.defaultTarget,
    targets,
    scheduler: cfg.scheduler,
  };
}

/**
 * Finds, reads and validates the configuration.
 *
 * @example
 * const config = await loadConfig({ path: 'crystalmath.config.yaml' });
 * Object.keys(config.targets); // ['laptop', 'cluster']
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<ResolvedConfig> {
  const file = findConfigFile(options);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CliError('E_CONFIG', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code}`, {
      cause: err,
    });
  }
  return resolveConfig(parseConfigText(text, file), file);
}

/** The target to use: the one asked for, the config's default, or the only one. */
export function pickTarget(config: ResolvedConfig, asked: string | undefined): string {
  const names = Object.keys(config.targets);
  const chosen = asked ?? config.defaultTarget ?? (names.length === 1 ? names[0] : undefined);
  if (chosen === undefined) {
    throw new CliError(
      'E_CONFIG',
      `no target given and no defaultTarget in ${basename(config.file)}: pass --target (one of ${names.join(', ')})`,
    );
  }
  assertKnownTarget(config, chosen);
  return chosen;
}

/** Throws E_QUEUE_UNKNOWN_TARGET naming the target and the known ones. */
export function assertKnownTarget(config: ResolvedConfig, target: string, field = 'target'): void {
  if (!(target in config.targets)) {
    throw new CliError(
      'E_QUEUE_UNKNOWN_TARGET',
      `${field}: unknown target "${target}" (declared in ${basename(config.file)}: ${Object.keys(config.targets).join(', ')})`,
    );
  }
}

/** 1-based line number of a character offset. */
function yamlLine(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text[i] === '\n') line++;
  return line;
}
