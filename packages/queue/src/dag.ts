// Workflow validation: unknown keys, self-dependencies and cycles are rejected with the
// offending keys named; a valid workflow comes back in topological order.

import { ValidationError } from '@crystalmath/core';
import { QueueError } from './queue-error.js';
import type { Dependency, EdgeCondition, WorkflowDefinition } from './types.js';

const KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const CONDITIONS: readonly EdgeCondition[] = ['afterok', 'afterany', 'afternotok'];

export function normalizeDeps(
  deps: readonly (string | Dependency)[] | undefined,
  field: string,
): Required<Dependency>[] {
  if (deps === undefined) return [];
  if (!Array.isArray(deps)) throw new ValidationError(field, 'must be an array');
  const byJob = new Map<string, Required<Dependency>>();
  deps.forEach((d, i) => {
    const dep =
      typeof d === 'string'
        ? { job: d, condition: 'afterok' as const }
        : { job: d?.job, condition: d?.condition ?? 'afterok' };
    if (typeof dep.job !== 'string' || dep.job === '')
      throw new ValidationError(`${field}[${i}].job`, 'must be a job id or key');
    if (!CONDITIONS.includes(dep.condition)) {
      throw new ValidationError(
        `${field}[${i}].condition`,
        `must be one of ${CONDITIONS.join(', ')}`,
      );
    }
    // The same parent twice is one edge; twice with different conditions is a mistake.
    const before = byJob.get(dep.job);
    if (before && before.condition !== dep.condition) {
      throw new ValidationError(
        `${field}[${i}]`,
        `depends on "${dep.job}" twice with different conditions`,
      );
    }
    byJob.set(dep.job, dep as Required<Dependency>);
  });
  return [...byJob.values()];
}

/** Validates a workflow's graph and returns its keys in topological order (parents first). */
export function topologicalOrder(def: WorkflowDefinition): string[] {
  const keys = Object.keys(def.jobs ?? {});
  if (keys.length === 0)
    throw new ValidationError('workflow.jobs', 'must contain at least one job');
  const edges = new Map<string, string[]>();
  for (const key of keys) {
    if (!KEY.test(key))
      throw new ValidationError(
        `workflow.jobs.${key}`,
        'key must be letters, digits and ._- (at most 128)',
      );
    const deps = normalizeDeps(def.jobs[key]!.dependsOn, `workflow.jobs.${key}.dependsOn`);
    for (const d of deps) {
      if (d.job === key) {
        throw new QueueError('E_QUEUE_CYCLE', `job "${key}" depends on itself`, {
          details: { field: `workflow.jobs.${key}.dependsOn`, cycle: [key, key] },
        });
      }
      if (!(d.job in def.jobs)) {
        throw new QueueError(
          'E_QUEUE_UNKNOWN_DEPENDENCY',
          `job "${key}" depends on unknown job "${d.job}"`,
          {
            details: { field: `workflow.jobs.${key}.dependsOn`, job: d.job },
          },
        );
      }
    }
    edges.set(
      key,
      deps.map((d) => d.job),
    );
  }
  const order: string[] = [];
  const mark = new Map<string, 'visiting' | 'done'>();
  const visit = (key: string, path: string[]): void => {
    const m = mark.get(key);
    if (m === 'done') return;
    if (m === 'visiting') {
      const cycle = [...path.slice(path.indexOf(key)), key];
      throw new QueueError('E_QUEUE_CYCLE', `dependency cycle: ${cycle.join(' -> ')}`, {
        details: { field: 'workflow.jobs', cycle },
      });
    }
    mark.set(key, 'visiting');
    for (const parent of edges.get(key)!) visit(parent, [...path, key]);
    mark.set(key, 'done');
    order.push(key);
  };
  for (const key of keys) visit(key, []);
  return order;
}
