// No scheduler running, seen in real terminals (tmux): `submit`, `list`, `targets` and `watch`
// say that nothing serves the target and how to start something; once `crystalmath run` starts
// in another pane the hints go away (read from the store's heartbeat rows, across processes)
// and the waiting job runs. Screens are read with capture-pane.

import { execFileSync, spawnSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { project, until } from './cli-helpers.js';
import { BIN } from './process-helpers.js';

const hasTmux = spawnSync('tmux', ['-V']).status === 0;
if (!hasTmux && process.env.CI) throw new Error('[cli] tmux is required in CI for this test');
const socket = `cm-hint-${process.pid}`;
const tmux = (...args: string[]): string =>
  execFileSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
const screen = (pane: string): string => tmux('capture-pane', '-p', '-J', '-t', pane);
const type = (pane: string, text: string): void => {
  tmux('send-keys', '-t', pane, '-l', text);
  tmux('send-keys', '-t', pane, 'Enter');
};
const shows = (pane: string, pattern: RegExp) => async (): Promise<string | undefined> => {
  const s = screen(pane);
  return pattern.test(s) ? s : undefined;
};
/** Generous waits for a loaded machine (each names what it waits for). */
const WAIT_MS = 30_000;

const CONFIG = `store: state/queue.db
defaultTarget: local
scheduler: { tickMs: 50, pollIntervalMs: 100 }
targets:
  local: { type: local, root: runs }
`;
const HINT = /no scheduler is running for target local: start one with `crystalmath run`/;

let dir: string | undefined;
afterAll(async () => {
  if (hasTmux) spawnSync('tmux', ['-L', socket, 'kill-server']);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!hasTmux)('no scheduler running (tmux, real scheduler)', () => {
  it('submit, list, targets and watch say so until `crystalmath run` starts; then the job runs', async () => {
    dir = await project(CONFIG);
    const cm = `${process.execPath} ${BIN}`;
    tmux('new-session', '-d', '-s', 'cm', '-x', '200', '-y', '50', '-c', dir);
    tmux('split-window', '-t', 'cm', '-v', '-c', dir);
    tmux('split-window', '-t', 'cm', '-v', '-c', dir);
    tmux('select-layout', '-t', 'cm', 'even-vertical');
    const [shell, run, watch] = ['cm.0', 'cm.1', 'cm.2'];

    type(shell, `${cm} submit --name hello -- true; echo SUBMIT-EXIT=$?`);
    const submitted = await until(shows(shell, /SUBMIT-EXIT=\d+/), WAIT_MS, 'submit');
    expect(submitted).toMatch(/submitted 1 \(hello\) to local: ready/);
    expect(submitted).toMatch(HINT);
    expect(submitted).toMatch(/SUBMIT-EXIT=0/);

    type(shell, `clear; ${cm} list; ${cm} targets; echo READ-EXIT=$?`);
    const read = await until(shows(shell, /READ-EXIT=\d+/), WAIT_MS, 'list and targets');
    expect(read).toMatch(/hello/);
    expect(read.match(new RegExp(HINT.source, 'g'))?.length).toBe(2); // list, then targets
    expect(read).toMatch(/SERVED BY/);
    expect(read).toMatch(/local +local .* none/);

    type(watch, `${cm} watch --interval 200`);
    await until(shows(watch, /NO SCHEDULER: start one with `crystalmath run`/), WAIT_MS, 'watch');

    type(run, `${cm} run; echo RUN-EXIT=$?`);
    await until(shows(run, /scheduler started/), WAIT_MS, 'the scheduler');
    // The waiting job runs, and watch drops its line at its next frame.
    type(shell, `clear; until ${cm} show 1 | grep -q succeeded; do sleep 0.2; done; echo RAN`);
    await until(shows(shell, /^RAN$/m), WAIT_MS, 'job 1 to succeed');
    await until(
      async () => (/NO SCHEDULER/.test(screen(watch)) ? undefined : true),
      WAIT_MS,
      'watch without the line',
    );

    type(shell, `clear; ${cm} submit --name again -- true; ${cm} targets; echo AFTER-EXIT=$?`);
    const after = await until(shows(shell, /AFTER-EXIT=\d+/), WAIT_MS, 'submit with a scheduler');
    expect(after).toMatch(/submitted 2 \(again\) to local/);
    expect(after).not.toMatch(/no scheduler is running/);
    expect(after).toMatch(new RegExp(`local +local .* [^ ]+:${'\\d+'}:[0-9a-f]+`));

    tmux('send-keys', '-t', watch, 'C-c');
    tmux('send-keys', '-t', run, 'C-c');
    await until(shows(run, /RUN-EXIT=0/), WAIT_MS, 'run stopped');
    // A clean stop removes its row: the hint is back at once, not after the heartbeat ages.
    type(shell, `clear; ${cm} targets; echo LAST-EXIT=$?`);
    expect(await until(shows(shell, /LAST-EXIT=\d+/), WAIT_MS, 'targets after run')).toMatch(HINT);
  });
});
