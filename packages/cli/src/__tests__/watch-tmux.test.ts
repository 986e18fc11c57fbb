// `watch` driven as a user would: three real terminals in tmux. The scheduler runs in one
// pane (`crystalmath run`), a workflow is submitted from a second, and `crystalmath watch` in a
// third must show it progressing to the end. Screens are read with capture-pane.

import { execFileSync, spawnSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LOCAL_CONFIG, project, until } from './cli-helpers.js';
import { BIN } from './process-helpers.js';

const hasTmux = spawnSync('tmux', ['-V']).status === 0;
if (!hasTmux && process.env.CI) throw new Error('[cli] tmux is required in CI for the watch test');
const socket = `cm-watch-${process.pid}`;
const tmux = (...args: string[]): string =>
  execFileSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
const screen = (pane: string): string => tmux('capture-pane', '-p', '-t', pane);
const type = (pane: string, text: string): void => {
  tmux('send-keys', '-t', pane, '-l', text);
  tmux('send-keys', '-t', pane, 'Enter');
};

let dir: string | undefined;
afterAll(async () => {
  if (hasTmux) spawnSync('tmux', ['-L', socket, 'kill-server']);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!hasTmux)('crystalmath watch in a terminal (tmux)', () => {
  it('shows a workflow submitted from another terminal progressing to the end', async () => {
    dir = await project(LOCAL_CONFIG);
    await writeFile(
      join(dir, 'relax.yaml'),
      `name: relax
jobs:
  prepare:   { script: "sleep 1; echo ready" }
  calc-a:    { script: "sleep 2", dependsOn: [prepare] }
  calc-b:    { script: "sleep 2", dependsOn: [prepare] }
  calc-c:    { script: "sleep 3", dependsOn: [prepare] }
  aggregate: { script: "sleep 1", dependsOn: [calc-a, calc-b, calc-c] }
`,
    );
    const cm = `${process.execPath} ${BIN}`;
    tmux('new-session', '-d', '-s', 'cm', '-x', '120', '-y', '40', '-c', dir);
    tmux('split-window', '-t', 'cm', '-v', '-c', dir);
    tmux('split-window', '-t', 'cm', '-v', '-c', dir);
    tmux('select-layout', '-t', 'cm', 'even-vertical');
    tmux('resize-pane', '-t', 'cm.2', '-y', '24');
    const [run, submit, watch] = ['cm.0', 'cm.1', 'cm.2'];

    type(run, `${cm} run; echo RUN-EXIT=$?`);
    await until(
      async () => (screen(run).includes('scheduler started') ? true : undefined),
      15_000,
      'scheduler',
    );
    type(watch, `${cm} watch --interval 200; echo WATCH-EXIT=$?`);
    await until(
      async () => (screen(watch).includes('WORKFLOWS') ? true : undefined),
      15_000,
      'watch screen',
    );
    expect(screen(watch)).toContain('none yet');

    type(submit, `${cm} workflow submit relax.yaml`);
    await until(
      async () => (/submitted workflow/.test(screen(submit)) ? true : undefined),
      15_000,
      'submit',
    );

    const frames: string[] = [];
    await until(
      async () => {
        const s = screen(watch);
        frames.push(s);
        return /relax #\d+\s+\[█+\]\s+5\/5.*done/.test(s) ? s : undefined;
      },
      60_000,
      'the workflow to reach 5/5 in watch',
    );
    // It was seen in progress, not only at the end: some frame showed jobs running.
    expect(frames.some((f) => /relax #\d+\s+\[[█░]+\]\s+[0-4]\/5.*running: /.test(f))).toBe(true);
    const last = frames.at(-1) ?? '';
    expect(last).toMatch(/aggregate {2}\w+ → succeeded/);
    expect(last).toMatch(/local\s+\[[█░]+\]\s+0\/3 active/);

    // Ctrl-C: watch leaves its last frame on the normal screen; run stops cleanly.
    tmux('send-keys', '-t', watch, 'C-c');
    await until(
      async () => (/\$ $/m.test(screen(watch)) || /#\s*$/m.test(screen(watch)) ? true : undefined),
      10_000,
      'watch exit',
    );
    expect(screen(watch)).toMatch(/5\/5/);
    tmux('send-keys', '-t', run, 'C-c');
    await until(
      async () => (screen(run).includes('scheduler stopped') ? true : undefined),
      15_000,
      'run stop',
    );
  });
});
