// The schema of `crystalmath.config.{json,yaml}`: where the queue lives and which targets
// (this machine, SSH hosts, SLURM and Grid Engine clusters) jobs may run on. zod gives the one-line errors
// that name the offending field; unknown keys are rejected so a typo is never ignored.

import { RESOURCE_FIELDS, type ResourceFieldKind, type Resources } from '@crystalmath/core';
import { SGE_RESOURCE_FIELDS, type SgeResources } from '@crystalmath/runner-sge';
import { SLURM_RESOURCE_FIELDS, type SlurmResources } from '@crystalmath/runner-slurm';
import { z } from 'zod';

const positiveInt = z.number().int().positive();
const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits and ._- (at most 64)');

const KIND_SCHEMAS = {
  count: positiveInt,
  'count-or-text': z.union([positiveInt, z.string()]),
  text: z.string(),
  flag: z.boolean(),
  'text-list': z.array(z.string()),
} satisfies Record<Exclude<ResourceFieldKind, 'structured'>, z.ZodType>;

/**
 * The resource fields a configuration or job file may set: exactly those that core's
 * `RESOURCE_FIELDS`, runner-slurm's `SLURM_RESOURCE_FIELDS` and runner-sge's
 * `SGE_RESOURCE_FIELDS` list, typed by their kind (not a copy kept by hand). `structured` fields
 * (SLURM's `dependency`, which names SLURM job ids, and `dependencyMode`) are left out: a job file
 * orders jobs with `dependsOn`. Checked again by core and by the target's runner.
 */
function resourceShape(): Record<string, z.ZodOptional<z.ZodType>> {
  const shape: Record<string, z.ZodOptional<z.ZodType>> = {};
  const fields = { ...RESOURCE_FIELDS, ...SLURM_RESOURCE_FIELDS, ...SGE_RESOURCE_FIELDS };
  for (const [field, kind] of Object.entries(fields) as [string, ResourceFieldKind][]) {
    if (kind !== 'structured') shape[field] = KIND_SCHEMAS[kind].optional();
  }
  return shape;
}

/** What `resources` (and a target's `defaults`) hold in the configuration and in job files. */
export type ResourcesConfig = Resources &
  Omit<SlurmResources, 'dependency' | 'dependencyMode'> &
  SgeResources;

/**
 * Typed resources, as in core's `Resources` plus SLURM's `gres` and Grid Engine's
 * `parallelEnvironment` and `project` (see `resourceShape`). Unknown fields are refused.
 */
export const resourcesSchema = z.strictObject(resourceShape()) as unknown as z.ZodType<
  ResourcesConfig,
  ResourcesConfig
>;

/**
 * How to reach an SSH host: an alias from `~/.ssh/config` (`host` alone), or explicit options
 * that override what the alias says. Passwords are deliberately not accepted: use keys or an agent.
 */
export const sshSchema = z.strictObject({
  /** A `~/.ssh/config` alias or a host name. */
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).optional(),
  user: z.string().min(1).optional(),
  /** Private key file (`~` expanded). */
  privateKeyPath: z.string().min(1).optional(),
  /** known_hosts file used to verify the host key (`~` expanded). Default `~/.ssh/known_hosts`. */
  knownHostsPath: z.string().min(1).optional(),
  /** `strict` (default): unknown host keys are refused. `tofu`: recorded on first connection. */
  hostKeyPolicy: z.enum(['strict', 'tofu']).optional(),
  /** Use the SSH agent at `$SSH_AUTH_SOCK`. Default: when no key file is given. */
  agent: z.boolean().optional(),
  /** Connections kept open to this host. Default: the pool's default. */
  maxConnections: positiveInt.optional(),
  /** Time to establish a connection, in ms. */
  connectTimeoutMs: positiveInt.optional(),
});

const common = {
  /** Jobs of this target in submitting/queued/running at once. Default unlimited. */
  maxConcurrent: positiveInt.optional(),
  /** Start paused. */
  paused: z.boolean().optional(),
  /** Resources used when a job does not set them. */
  defaults: resourcesSchema.optional(),
};

export const localTargetSchema = z.strictObject({
  type: z.literal('local'),
  /** Directory for job folders on this machine (relative to the config file). Default `.crystalmath/runs`. */
  root: z.string().min(1).optional(),
  ...common,
});

export const sshTargetSchema = z.strictObject({
  type: z.literal('ssh'),
  ssh: sshSchema,
  /** Directory for job folders on the host (relative to the login directory). Default `.crystalmath/runs`. */
  root: z.string().min(1).optional(),
  ...common,
});

export const slurmTargetSchema = z.strictObject({
  type: z.literal('slurm'),
  /** Reach the login node over SSH; omit to run sbatch/squeue on this machine. */
  ssh: sshSchema.optional(),
  /** Directory for job folders on a file system the compute nodes see. */
  root: z.string().min(1),
  /** Smallest interval between two squeue calls, in ms (cluster etiquette). Default 5 000. */
  pollIntervalMs: positiveInt.optional(),
  /** Directives this site rejects, left out of every script (e.g. `--mem`). */
  skipDirectives: z.array(z.string()).optional(),
  /** `sacct`, `jobcomp`, `none` or `auto` (default). */
  accounting: z.enum(['auto', 'sacct', 'jobcomp', 'none']).optional(),
  ...common,
});

export const sgeTargetSchema = z.strictObject({
  type: z.literal('sge'),
  /** Reach the submit host over SSH; omit to run qsub/qstat on this machine. */
  ssh: sshSchema.optional(),
  /** Directory for job folders on a file system the execution hosts see. */
  root: z.string().min(1),
  /** Smallest interval between two qstat calls, in ms (cluster etiquette). Default 5 000. */
  pollIntervalMs: positiveInt.optional(),
  /** qdel jobs found in error state (`Eqw`) once their reason is read. Default true. */
  deleteErrorJobs: z.boolean().optional(),
  ...common,
});

export const targetSchema = z.discriminatedUnion('type', [
  localTargetSchema,
  sshTargetSchema,
  slurmTargetSchema,
  sgeTargetSchema,
]);

export const storeSchema = z.union([
  z.string().min(1),
  z.strictObject({ sqlite: z.string().min(1) }),
  z.strictObject({ postgres: z.string().min(1) }),
]);

export const configSchema = z.strictObject({
  /** The queue's store: a SQLite path (relative to the config file), `{ sqlite }` or `{ postgres }`. */
  store: storeSchema.optional(),
  /** Target used when a command or job file names none. */
  defaultTarget: name.optional(),
  targets: z
    .record(name, targetSchema)
    .refine((t) => Object.keys(t).length > 0, 'declare at least one target'),
  scheduler: z
    .strictObject({
      tickMs: positiveInt.optional(),
      pollIntervalMs: positiveInt.optional(),
      leaseMs: positiveInt.optional(),
      submitConcurrency: positiveInt.optional(),
    })
    .optional(),
});

export type CrystalMathConfigInput = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
export type TargetConfig = z.output<typeof targetSchema>;
export type SshConfig = z.output<typeof sshSchema>;

const KINDS: Readonly<Record<string, string>> = {
  object: 'a mapping (key: value lines)',
  record: 'a mapping (key: value lines)',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  null: 'nothing',
};

/** `expected a mapping (key: value lines), got a list` instead of zod's type names. */
function describeType(expected: string, zodMessage: string): string {
  const got = /received (\w+)/.exec(zodMessage)?.[1];
  if (got === 'undefined') return 'is required';
  const want = KINDS[expected] ?? expected;
  return `expected ${want}${got ? `, got ${KINDS[got] ?? got}` : ''}`;
}

/** The first problem zod found, as `path.to.field: message`. */
export function describeZodIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.');
  let message = issue.message;
  if (issue.code === 'unrecognized_keys')
    message = `unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  if (issue.code === 'invalid_type') message = describeType(issue.expected, issue.message);
  if (issue.code === 'invalid_union' && 'discriminator' in issue && issue.discriminator)
    message = 'type must be one of "local", "ssh", "slurm", "sge"';
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more)` : '';
  return `${path.replace(/\.\[/g, '[') || '(top level)'}: ${message}${more}`;
}
