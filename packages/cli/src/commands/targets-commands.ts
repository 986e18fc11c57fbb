// `crystalmath targets` (what is configured, with live usage from the store) and
// `crystalmath targets check` (connect, run `true`, and `sinfo` for SLURM targets, each
// bounded by a timeout), which reports every target and exits 6 when any fails.

import type { Transport } from '@crystalmath/core';
import type { Command } from 'commander';
import { formatError } from '../cli-error.js';
import type { CommandContext } from '../command-context.js';
import { assertKnownTarget } from '../config/load-config.js';
import { ExitCode } from '../exit-codes.js';
import { formatDuration, table } from '../format.js';
import { noSchedulerHint } from '../scheduler-hint.js';
import { wireTargets } from '../wire-targets.js';
import { intOption } from './options.js';

/** An error message on one line (a remote's stderr may hold several). */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** The result of checking one target. */
export interface TargetCheck {
  readonly name: string;
  readonly type: 'local' | 'ssh' | 'slurm' | 'sge';
  readonly ok: boolean;
  /** Steps that passed, in order: `connect`, `true`, `sinfo` (SLURM) or `qconf` (Grid Engine). */
  readonly steps: readonly string[];
  readonly ms: number;
  /** A one-line description: what answered, or what failed. */
  readonly detail: string;
  readonly code?: string;
}

async function run(
  transport: Transport,
  argv: readonly string[],
  timeoutMs: number,
): Promise<{ stdout: string; stderr: string; exitCode: number | null }> {
  return transport.exec(argv, { timeoutMs });
}

/** Checks one target: `true` must exit 0; SLURM targets must also answer `sinfo`. */
export async function checkTarget(
  name: string,
  type: TargetCheck['type'],
  transport: Transport,
  timeoutMs: number,
  remote = type === 'ssh',
): Promise<TargetCheck> {
  const started = Date.now();
  const steps: string[] = [];
  try {
    const t = await run(transport, ['true'], timeoutMs);
    steps.push(remote ? 'connect' : 'exec');
    if (t.exitCode !== 0) throw new Error(`\`true\` exited ${t.exitCode}: ${t.stderr.trim()}`);
    steps.push('true');
    let detail = remote ? transport.description : 'this machine';
    if (type === 'slurm') {
      const s = await run(transport, ['sinfo', '--noheader', '--format=%P %a %D %t'], timeoutMs);
      if (s.exitCode !== 0) {
        throw new Error(
          `sinfo exited ${s.exitCode}: ${(s.stderr || s.stdout).trim().split('\n')[0]}`,
        );
      }
      steps.push('sinfo');
      const partitions = s.stdout.trim().split('\n').filter(Boolean);
      detail = `${detail}; partitions: ${partitions.map((l) => l.split(' ').slice(0, 2).join(' ')).join(', ') || 'none'}`;
    }
    if (type === 'sge') {
      const q = await run(transport, ['qconf', '-sql'], timeoutMs);
      if (q.exitCode !== 0) {
        throw new Error(
          `qconf -sql exited ${q.exitCode}: ${(q.stderr || q.stdout).trim().split('\n')[0]}`,
        );
      }
      steps.push('qconf');
      const queues = q.stdout.trim().split('\n').filter(Boolean);
      detail = `${detail}; queues: ${queues.join(', ') || 'none'}`;
    }
    return { name, type, ok: true, steps, ms: Date.now() - started, detail };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return {
      name,
      type,
      ok: false,
      steps,
      ms: Date.now() - started,
      detail: formatError(err),
      ...(typeof code === 'string' ? { code } : {}),
    };
  }
}

/** Registers `targets` and `targets check`. */
export function registerTargetsCommands(program: Command, ctx: CommandContext): void {
  const targets = program
    .command('targets')
    .description('list the configured targets with their usage (see `targets check`)')
    .action(async () => {
      await ctx.withQueue(async ({ queue }, config) => {
        const infos = await queue.targets();
        const byName = new Map(infos.map((i) => [i.name, i]));
        const list = Object.entries(config.targets).map(([name, t]) => {
          const info = byName.get(name);
          return {
            name,
            type: t.type,
            where: t.type === 'local' ? 'this machine' : t.ssh ? t.ssh.host : 'this machine',
            root: t.root ?? null,
            maxConcurrent: info?.maxConcurrent ?? t.maxConcurrent ?? null,
            active: info?.active ?? 0,
            paused: info?.paused ?? false,
            servedBy: info?.servedBy ?? [],
            unreachable: info?.unreachable ?? null,
          };
        });
        ctx.emit(list, () =>
          ctx.out(
            table([
              ['NAME', 'TYPE', 'HOST', 'ACTIVE', 'LIMIT', 'PAUSED', 'SERVED BY', 'ROOT'].map(
                ctx.c.bold,
              ),
              ...list.map((t) => [
                t.name,
                t.type,
                t.where,
                String(t.active),
                t.maxConcurrent === null ? '-' : String(t.maxConcurrent),
                t.paused ? ctx.c.yellow('yes') : 'no',
                t.servedBy.length === 0 ? ctx.c.yellow('none') : t.servedBy.join(', '),
                t.root ?? '-',
              ]),
            ]),
          ),
        );
        if (ctx.json) return;
        for (const t of list) {
          if (t.unreachable)
            ctx.out(
              ctx.c.red(
                `${t.name}: unreachable since ${new Date(t.unreachable.since).toISOString()}, last error ${oneLine(t.unreachable.lastError)}`,
              ),
            );
          if (t.servedBy.length === 0) ctx.err(ctx.c.yellow(`note: ${noSchedulerHint(t.name)}`));
        }
      });
    });

  targets
    .command('check')
    .description('connect to each target and run `true` (and `sinfo` on SLURM targets)')
    .argument('[names...]', 'targets to check (default: all)')
    .option(
      '--timeout <ms>',
      'time limit of each step (default 15000)',
      intOption('--timeout', 100),
    )
    .action(async (names: string[], flags: { timeout?: number }) => {
      const config = await ctx.config();
      for (const n of names) assertKnownTarget(config, n);
      const chosen = names.length > 0 ? names : Object.keys(config.targets);
      const wired = await wireTargets(config);
      let results: TargetCheck[];
      try {
        results = await Promise.all(
          chosen.map((n) => {
            const w = wired.targets[n];
            if (!w) throw new Error(`unknown target ${n}`);
            return checkTarget(
              n,
              w.config.type,
              w.transport,
              flags.timeout ?? 15_000,
              w.config.type !== 'local' && w.config.ssh !== undefined,
            );
          }),
        );
      } finally {
        await wired.close();
      }
      const failed = results.filter((r) => !r.ok);
      ctx.emit({ ok: failed.length === 0, targets: results }, () => {
        ctx.out(
          table([
            ['TARGET', 'TYPE', 'RESULT', 'TIME', 'DETAIL'].map(ctx.c.bold),
            ...results.map((r) => [
              r.name,
              r.type,
              r.ok ? ctx.c.green('ok') : ctx.c.red('FAILED'),
              formatDuration(r.ms),
              r.detail,
            ]),
          ]),
        );
      });
      if (failed.length > 0) {
        ctx.err(
          `crystalmath: ${failed.length} of ${results.length} target(s) failed: ${failed.map((f) => `${f.name}: ${f.detail}`).join('; ')}`,
        );
        ctx.exitCode = ExitCode.UNREACHABLE;
      }
    });
}
