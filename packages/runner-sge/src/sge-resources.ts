// Grid Engine's additions to core's typed Resources (parallel environment, project), the
// runner's site defaults, and how core's fields translate: slots = tasks x cpusPerTask through
// a parallel environment, memory as h_vmem per slot, walltime as h_rt, partition as the queue.
// Fields Grid Engine has no equivalent for are refused, naming the field, rather than ignored.

import {
  mergeResources,
  type ResourceFieldKind,
  type Resources,
  ValidationError,
  validateResources,
} from '@crystalmath/core';

/**
 * Resources with the Grid Engine-only fields. Pass it as `spec.resources`; other runners ignore
 * the extra fields.
 *
 * @example
 * const resources: SgeResources = { tasks: 4, parallelEnvironment: 'smp', project: 'chem', walltimeSeconds: 3600 };
 */
export interface SgeResources extends Resources {
  /** The parallel environment that grants more than one slot (`-pe <name> <slots>`). */
  readonly parallelEnvironment?: string;
  /** The Grid Engine project (`-P`), used by share-based scheduling. */
  readonly project?: string;
}

/**
 * The fields Grid Engine adds to core's `Resources` and the kind of each (see core's
 * `RESOURCE_FIELDS`), for code that derives a schema from the resource fields.
 */
export const SGE_RESOURCE_FIELDS: {
  readonly [K in Exclude<keyof Required<SgeResources>, keyof Resources>]: ResourceFieldKind;
} = {
  parallelEnvironment: 'text',
  project: 'text',
};

/** Site defaults: resources used when a job does not set them. */
export type SgeDefaults = SgeResources;

/** Scheduler-safe name: what a queue, project, account or parallel environment may be. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$/;
/** Grid Engine's `-t n[-m[:s]]`, plus core's `%k` concurrency limit (`-tc k`). Tasks start at 1. */
const ARRAY =
  /^([1-9][0-9]{0,8})(?:-([1-9][0-9]{0,8})(?::([1-9][0-9]{0,8}))?)?(?:%([1-9][0-9]{0,8}))?$/;

/** Core fields Grid Engine cannot express, with what to do instead. */
const UNSUPPORTED: readonly [keyof Resources, string][] = [
  ['tasksPerNode', 'choose a parallel environment whose allocation_rule places the slots'],
  ['gpus', 'request your site\'s GPU resource with extraDirectives, e.g. "--l=gpu=2"'],
  ['qos', 'Grid Engine has no QOS; use project or a queue'],
  ['constraint', 'request a host resource with extraDirectives, e.g. "--l=arch=lx-amd64"'],
  [
    'exclusive',
    'request your site\'s exclusive resource with extraDirectives, e.g. "--l=exclusive=true"',
  ],
];

/** The array spec split into Grid Engine's parts, or null when it is not one. */
export function parseSgeArray(
  spec: string,
): { first: number; last: number; step: number; limit?: number } | null {
  const m = ARRAY.exec(spec);
  if (!m) return null;
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : Number(m[2]);
  const step = m[3] === undefined ? 1 : Number(m[3]);
  if (last < first) return null;
  return m[4] === undefined ? { first, last, step } : { first, last, step, limit: Number(m[4]) };
}

/** Number of tasks of an array spec (validated first). */
export function countSgeArrayTasks(spec: string): number {
  const a = parseSgeArray(spec);
  return a === null ? 1 : Math.floor((a.last - a.first) / a.step) + 1;
}

/** Validates core and Grid Engine resources; throws a ValidationError naming the field. */
export function validateSgeResources(r: SgeResources | undefined, field = 'spec.resources'): void {
  if (r === undefined) return;
  validateResources(r, field);
  for (const [name, instead] of UNSUPPORTED) {
    if (r[name] !== undefined && r[name] !== false) {
      throw new ValidationError(`${field}.${name}`, `is not supported by Grid Engine: ${instead}`);
    }
  }
  if (r.nodes !== undefined && r.nodes !== 1) {
    throw new ValidationError(
      `${field}.nodes`,
      'Grid Engine allocates slots, not nodes: set tasks and a parallel environment whose allocation_rule spreads them',
    );
  }
  for (const key of ['parallelEnvironment', 'project', 'partition', 'account'] as const) {
    const v = r[key];
    if (v !== undefined && (typeof v !== 'string' || !NAME.test(v))) {
      throw new ValidationError(
        `${field}.${key}`,
        'must be a Grid Engine name (letters, digits, _.@-)',
      );
    }
  }
  if (r.array !== undefined && parseSgeArray(r.array) === null) {
    throw new ValidationError(
      `${field}.array`,
      'must be a Grid Engine task range n[-m[:step]][%limit] starting at 1 (lists are not supported)',
    );
  }
}

/** Validates site defaults; errors name `defaults.<field>`. */
export function validateSgeDefaults(d: SgeDefaults | undefined): void {
  if (d === undefined) return;
  if (typeof d !== 'object' || d === null)
    throw new ValidationError('defaults', 'must be an object');
  validateSgeResources(d, 'defaults');
}

/** The job's resources on top of the site defaults (core's `mergeResources`). */
export function mergeSgeResources(
  defaults: SgeDefaults | undefined,
  job: SgeResources | undefined,
): SgeResources {
  return mergeResources<SgeResources>(defaults, job);
}

/** Slots the job asks for: tasks x cpusPerTask. */
export function slotsOf(r: SgeResources): number {
  return (r.tasks ?? 1) * (r.cpusPerTask ?? 1);
}
