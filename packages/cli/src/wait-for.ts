// `--wait`: follow jobs in the store until they end, with a progress bar on a terminal
// (cli-progress, on stderr so stdout stays parseable) and one line per change otherwise.
// It reads the store only, so it works whether the scheduler runs here or elsewhere.

import type { Job, Queue } from '@crystalmath/queue';
import { TERMINAL_JOB_STATES } from '@crystalmath/queue';
import type { CommandContext } from './command-context.js';
import { sleep } from './commands/options.js';

export interface WaitOptions {
  /** Store polling interval in ms. Default 500. */
  readonly intervalMs?: number;
}

/** Waits until every job in `ids` is terminal; returns them, or undefined when interrupted. */
export async function waitForJobs(
  ctx: CommandContext,
  queue: Queue,
  ids: readonly string[],
  label: string,
  options: WaitOptions = {},
): Promise<Job[] | undefined> {
  const interval = options.intervalMs ?? 500;
  const signal = ctx.io.signal;
  const tty = ctx.io.stderr.isTTY === true && !ctx.json;
  // Loaded only when a bar is drawn.
  const cliProgress = tty ? (await import('cli-progress')).default : undefined;
  const progress = cliProgress
    ? new cliProgress.SingleBar(
        {
          format: `${label} [{bar}] {value}/{total} done | {detail}`,
          hideCursor: true,
          clearOnComplete: false,
          stream: ctx.io.stderr as NodeJS.WritableStream,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  progress?.start(ids.length, 0, { detail: '' });
  const seen = new Map<string, string>();
  try {
    for (;;) {
      const jobs = (await Promise.all(ids.map((id) => queue.get(id)))).filter(
        (j): j is Job => j !== null,
      );
      const done = jobs.filter((j) => TERMINAL_JOB_STATES.has(j.state)).length;
      const active = jobs.filter((j) => j.state === 'running').map((j) => j.workflowKey ?? j.name);
      if (progress) {
        progress.update(done, { detail: active.length ? `running: ${active.join(', ')}` : '' });
      } else if (!ctx.json) {
        for (const j of jobs) {
          if (seen.get(j.id) !== j.state) {
            seen.set(j.id, j.state);
            ctx.err(`${j.workflowKey ?? j.name} (${j.id}): ${j.state}`);
          }
        }
      }
      if (done === ids.length) return jobs;
      if (signal?.aborted) return undefined;
      // One listener per wait, removed when the wait ends: a job of hours polls thousands of times.
      await sleep(interval, signal);
      if (signal?.aborted) return undefined;
    }
  } finally {
    progress?.stop();
  }
}
