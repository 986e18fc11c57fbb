// SLURM-specific additions to core's typed Resources (dependencies, generic resources), the
// runner's site defaults, and their validation. Everything that reaches an `#SBATCH` line is
// checked here or in core's `validateResources` first.

import {
  mergeResources as mergeCoreResources,
  type ResourceFieldKind,
  type Resources,
  ValidationError,
  validateResources,
} from '@crystalmath/core';

/** Dependency types SLURM accepts in `--dependency`. */
export type SlurmDependencyType =
  | 'after'
  | 'afterany'
  | 'afterok'
  | 'afternotok'
  | 'aftercorr'
  | 'afterburstbuffer';

/** One dependency condition: start after these SLURM job ids reach the given condition. */
export type SlurmDependency =
  | {
      readonly type: SlurmDependencyType;
      /** SLURM job ids (`1234`) or array tasks (`1234_7`). */
      readonly jobIds: readonly string[];
    }
  | { readonly type: 'singleton' };

/**
 * Resources with the SLURM-only fields. Pass it as `spec.resources`; other runners ignore the
 * extra fields.
 *
 * @example
 * const resources: SlurmResources = { tasks: 4, walltimeSeconds: 3600, dependency: [{ type: 'afterok', jobIds: ['1234'] }] };
 */
export interface SlurmResources extends Resources {
  /** `--dependency` conditions. */
  readonly dependency?: readonly SlurmDependency[];
  /** How conditions combine: `all` (`,`, the default) or `any` (`?`). */
  readonly dependencyMode?: 'all' | 'any';
  /** Generic resources, e.g. `gpu:a100:2,shard:1` (`--gres`). */
  readonly gres?: string;
}

/**
 * The fields SLURM adds to core's `Resources` and the kind of each (see core's
 * `RESOURCE_FIELDS`), for code that derives a schema from the resource fields.
 */
export const SLURM_RESOURCE_FIELDS: {
  readonly [K in Exclude<keyof Required<SlurmResources>, keyof Resources>]: ResourceFieldKind;
} = {
  dependency: 'structured',
  dependencyMode: 'structured',
  gres: 'text',
};

/** Site defaults: resources used when a job does not set them, and how GPUs are requested. */
export interface SlurmDefaults extends SlurmResources {
  /** Request `resources.gpus` with `--gpus=N` (default) or `--gres=gpu:N` (older sites). */
  readonly gpuDirective?: 'gpus' | 'gres';
}

const DEPENDENCY_TYPES: ReadonlySet<string> = new Set([
  'after',
  'afterany',
  'afterok',
  'afternotok',
  'aftercorr',
  'afterburstbuffer',
  'singleton',
]);
const SLURM_JOB_ID = /^[0-9]{1,12}(_[0-9]{1,9})?$/;
const GRES = /^[A-Za-z0-9_.:,-]{1,256}$/;

/** Validates core and SLURM-specific resources; throws a ValidationError naming the field. */
export function validateSlurmResources(
  r: SlurmResources | undefined,
  field = 'spec.resources',
): void {
  if (r === undefined) return;
  validateResources(r, field);
  if (r.dependency !== undefined) {
    if (!Array.isArray(r.dependency)) {
      throw new ValidationError(`${field}.dependency`, 'must be an array');
    }
    r.dependency.forEach((d: SlurmDependency, i: number) => {
      const f = `${field}.dependency[${i}]`;
      if (typeof d !== 'object' || d === null || !DEPENDENCY_TYPES.has(d.type)) {
        throw new ValidationError(
          `${f}.type`,
          `must be one of ${[...DEPENDENCY_TYPES].join(', ')}`,
        );
      }
      if (d.type === 'singleton') return;
      if (!Array.isArray(d.jobIds) || d.jobIds.length === 0) {
        throw new ValidationError(`${f}.jobIds`, 'must be a non-empty array of SLURM job ids');
      }
      d.jobIds.forEach((id: unknown, j: number) => {
        if (typeof id !== 'string' || !SLURM_JOB_ID.test(id)) {
          throw new ValidationError(`${f}.jobIds[${j}]`, 'must be a SLURM job id such as 1234');
        }
      });
    });
  }
  if (r.dependencyMode !== undefined && r.dependencyMode !== 'all' && r.dependencyMode !== 'any') {
    throw new ValidationError(`${field}.dependencyMode`, 'must be "all" or "any"');
  }
  if (r.gres !== undefined && (typeof r.gres !== 'string' || !GRES.test(r.gres))) {
    throw new ValidationError(`${field}.gres`, 'must be a gres list such as gpu:a100:2');
  }
}

/**
 * Validates site defaults with the rules a job's resources get; errors name `<field>.<name>`.
 * (`extraDirectives` naming an option the runner sets are checked by `validateSlurmTargetOptions`.)
 */
export function validateSlurmDefaults(d: SlurmDefaults | undefined, field = 'defaults'): void {
  if (d === undefined) return;
  if (typeof d !== 'object' || d === null) throw new ValidationError(field, 'must be an object');
  validateSlurmResources(d, field);
  if (d.gpuDirective !== undefined && d.gpuDirective !== 'gpus' && d.gpuDirective !== 'gres') {
    throw new ValidationError(`${field}.gpuDirective`, 'must be "gpus" or "gres"');
  }
}

/**
 * The job's resources on top of the site defaults, merged by core's `mergeResources` (memory
 * given either way by the job replaces both memory defaults: SLURM refuses `--mem` together
 * with `--mem-per-cpu`); `gpuDirective` is a site setting, not a resource, and is left out.
 */
export function mergeResources(
  defaults: SlurmDefaults | undefined,
  job: SlurmResources | undefined,
): SlurmResources {
  const { gpuDirective: _ignored, ...base } = defaults ?? {};
  return mergeCoreResources<SlurmResources>(base, job);
}
