// `crystalmath watch`: a live view of the queue from any terminal. It reads the store only:
// the most recent workflows and the tail of the persisted event log to start, then the log
// (followed from the last sequence number seen) for recent events and newly created
// workflows, plus counts, targets and tracked workflows once per refresh. It never
// starts a scheduler, so it can run beside `crystalmath run` in another terminal or machine.

import { isCrystalMathError } from '@crystalmath/core';
import type { Queue, QueueEvent, Workflow } from '@crystalmath/queue';
import type { Command } from 'commander';
import { CliError } from '../cli-error.js';
import type { CommandContext } from '../command-context.js';
import { findWorkflow } from '../find-by-id.js';
import { storeFactory } from '../open-configured-queue.js';
import { renderWatch, type WatchSnapshot } from '../render/render-watch.js';
import { intOption, sleep } from './options.js';

const KEEP_EVENTS = 200;
const ENTER = '\x1b[?1049h\x1b[?25l';
const LEAVE = '\x1b[?25h\x1b[?1049l';

interface WatchFlags {
  workflow?: string[];
  interval?: number;
  once?: boolean;
  exitWhenDone?: boolean;
  max?: number;
  ascii?: boolean;
}

/** The state `watch` accumulates from the event log between frames. */
class WatchState {
  readonly events: QueueEvent[] = [];
  readonly workflowIds: string[] = [];
  readonly names = new Map<string, string>();
  lastSeq = 0;
  queuePaused = false;

  constructor(
    private readonly pinned: readonly string[],
    private readonly maxWorkflows: number,
  ) {
    this.workflowIds.push(...pinned);
  }

  /** Shows this workflow, dropping the oldest shown past the maximum. */
  track(id: string): void {
    if (this.workflowIds.includes(id)) return;
    this.workflowIds.push(id);
    if (this.workflowIds.length > this.maxWorkflows) this.workflowIds.shift();
  }

  note(e: QueueEvent): void {
    this.lastSeq = Math.max(this.lastSeq, e.seq);
    this.events.push(e);
    if (this.events.length > KEEP_EVENTS) this.events.splice(0, this.events.length - KEEP_EVENTS);
    if (e.type === 'workflow:created' && this.pinned.length === 0) this.track(e.workflowId);
    if ((e.type === 'queue:paused' || e.type === 'queue:resumed') && e.target === null) {
      this.queuePaused = e.type === 'queue:paused';
    }
  }
}

async function snapshot(queue: Queue, state: WatchState, store: string): Promise<WatchSnapshot> {
  const [counts, targets, ...workflows] = await Promise.all([
    queue.counts(),
    queue.targets(),
    ...state.workflowIds.map((id) => queue.workflow(id)),
  ]);
  const present = workflows.filter((w): w is Workflow => w !== null);
  for (const w of present) {
    state.names.set(`w:${w.id}`, w.name); // job and workflow ids overlap
    for (const j of Object.values(w.jobs)) state.names.set(j.id, j.workflowKey ?? j.name);
  }
  // Name the jobs of recent events that belong to no tracked workflow (bounded by KEEP_EVENTS).
  const unknown = new Set<string>();
  for (const e of state.events.slice(-30)) {
    if (e.type === 'job:state' && !state.names.has(e.jobId)) unknown.add(e.jobId);
  }
  for (const job of await Promise.all([...unknown].map((id) => queue.get(id)))) {
    if (job) state.names.set(job.id, job.workflowKey ?? job.name);
  }
  return {
    at: Date.now(),
    store,
    counts,
    targets,
    workflows: present,
    events: state.events,
    jobNames: state.names,
    queuePaused: state.queuePaused,
  };
}

/** Registers `watch`. */
export function registerWatchCommand(program: Command, ctx: CommandContext): void {
  program
    .command('watch')
    .description(
      'live view of workflows, targets and recent events (reads the store; Ctrl-C to quit)',
    )
    .option(
      '-w, --workflow <id>',
      'follow this workflow (repeatable; default: the most recent ones)',
      (v: string, p: string[] = []) => [...p, v],
    )
    .option('-i, --interval <ms>', 'refresh interval (default 500)', intOption('--interval', 50))
    .option('--max <n>', 'most recent workflows shown (default 5)', intOption('--max', 1))
    .option('--once', 'print one frame and exit')
    .option('--exit-when-done', 'exit once every shown workflow is done')
    .option('--ascii', 'draw bars with # and - only')
    .action(async (flags: WatchFlags) => {
      const interval = flags.interval ?? 500;
      await ctx.withQueue(async ({ queue }, config) => {
        const store = storeFactory(config.store).description;
        const state = new WatchState(flags.workflow ?? [], flags.max ?? 5);
        for (const id of flags.workflow ?? []) {
          if (!(await findWorkflow(queue, id)))
            throw new CliError('E_NOT_FOUND', `watch: no workflow with id "${id}"`);
        }
        // The most recent workflows from the store, and the tail of the log: a constant amount
        // of reading however long the store's history. Then follow the log from there.
        if ((flags.workflow ?? []).length === 0) {
          const { workflows } = await queue.workflows({ limit: flags.max ?? 5 });
          for (const w of [...workflows].reverse()) state.track(w.id);
        }
        for await (const e of queue.events({ follow: false, tail: KEEP_EVENTS })) state.note(e);

        if (ctx.json && !flags.once) {
          // Scripts get the event stream itself: one JSON object per line.
          for (const e of state.events.slice(-20)) ctx.out(JSON.stringify(e));
          try {
            for await (const e of queue.events({
              after: state.lastSeq,
              follow: true,
              pollIntervalMs: interval,
              ...(ctx.io.signal ? { signal: ctx.io.signal } : {}),
            })) {
              ctx.out(JSON.stringify(e));
            }
          } catch (err) {
            if (!ctx.io.signal?.aborted) throw err;
          }
          return;
        }
        if (flags.once) {
          const snap = await snapshot(queue, state, store);
          ctx.emit(
            {
              ...snap,
              jobNames: Object.fromEntries(snap.jobNames),
              events: snap.events.slice(-20),
            },
            () =>
              ctx.out(
                renderWatch(snap, {
                  width: ctx.io.stdout.columns ?? 100,
                  c: ctx.c,
                  ascii: flags.ascii === true,
                }).join('\n'),
              ),
          );
          return;
        }

        const stop = new AbortController();
        const onAbort = (): void => stop.abort();
        ctx.io.signal?.addEventListener('abort', onAbort, { once: true });
        // Each frame reads the log up to now *after* reading job states. An event commits with
        // its state change, so every state a frame shows has its event in the same frame.
        const drain = async (): Promise<void> => {
          for await (const e of queue.events({ after: state.lastSeq, follow: false }))
            state.note(e);
        };
        const tty = ctx.io.stdout.isTTY === true;
        if (tty) ctx.io.stdout.write(ENTER);
        let last: string[] = [];
        try {
          let downSince: number | null = null;
          for (;;) {
            let frame: string[];
            let allDone = false;
            try {
              await drain(); // newly created workflows join this frame
              const snap = await snapshot(queue, state, store);
              await drain();
              downSince = null;
              allDone = snap.workflows.length > 0 && snap.workflows.every((w) => w.done);
              frame = renderWatch(snap, {
                width: ctx.io.stdout.columns ?? 100,
                ...(ctx.io.stdout.rows !== undefined ? { height: ctx.io.stdout.rows } : {}),
                c: ctx.c,
                ascii: flags.ascii === true,
              });
            } catch (err) {
              // The store is down or locked: say so in place of the frame and keep trying.
              if (!isCrystalMathError(err, 'E_STORE')) throw err;
              downSince ??= Date.now();
              frame = [
                ...last.slice(0, 1),
                ctx.c.red(
                  `store down since ${new Date(downSince).toLocaleTimeString()}: ${err.message} (retrying every ${interval} ms)`,
                ),
              ];
            }
            last = frame;
            if (tty)
              ctx.io.stdout.write(`\x1b[H${frame.map((l) => `${l}\x1b[K`).join('\n')}\x1b[J`);
            if (flags.exitWhenDone && allDone) break;
            if (stop.signal.aborted) break;
            await sleep(interval, stop.signal);
            if (stop.signal.aborted) break;
          }
        } finally {
          stop.abort();
          ctx.io.signal?.removeEventListener('abort', onAbort);
          if (tty) ctx.io.stdout.write(LEAVE);
        }
        // Leave the last frame on the normal screen (and in logs when not a terminal).
        ctx.out(last.join('\n'));
      });
    });
}
