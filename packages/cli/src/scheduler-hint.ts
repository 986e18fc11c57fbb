// Whether any live scheduler serves a target, read from the store's heartbeat rows (from any
// process): `submit`, `list`, `watch` and `targets` say so when none does, since a job there
// waits until someone starts `crystalmath run`.

import type { Queue } from '@crystalmath/queue';

/** The one sentence every command uses, so the user learns one fix. */
export function noSchedulerHint(target: string): string {
  return `no scheduler is running for target ${target}: start one with \`crystalmath run\``;
}

/** The given targets (deduplicated, in order) that no live scheduler serves. */
export async function unservedTargets(queue: Queue, names: readonly string[]): Promise<string[]> {
  const wanted = [...new Set(names)];
  if (wanted.length === 0) return [];
  const servedBy = new Map((await queue.targets()).map((t) => [t.name, t.servedBy ?? []]));
  return wanted.filter((t) => (servedBy.get(t)?.length ?? 0) === 0);
}
