// The daily tools in real terminals (tmux), against a real scheduler (`crystalmath run`): a long
// `submit --wait` stays free of listener warnings, a restarted `run` does not replay history
// and prints a workflow's end after its last job, and `watch` on a 50x14 terminal keeps its
// title and counts on screen. Screens are read with capture-pane.

import { execFileSync, spawnSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { project, until } from './cli-helpers.js';
import { BIN } from './process-helpers.js';

const hasTmux = spawnSync('tmux', ['-V']).status === 0;
if (!hasTmux && process.env.CI) throw new Error('[cli] tmux is required in CI for this test');
const socket = `cm-daily-${process.pid}`;
/** `CM_TMUX_DUMP=<dir>` keeps each checked screen there, to look at. */
const dump = async (name: string, text: string): Promise<void> => {
  const to = process.env.CM_TMUX_DUMP;
  if (to) await writeFile(join(to, `${name}.txt`), text);
};
const tmux = (...args: string[]): string =>
  execFileSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
const screen = (pane: string): string => tmux('capture-pane', '-p', '-t', pane);
const type = (pane: string, text: string): void => {
  tmux('send-keys', '-t', pane, '-l', text);
  tmux('send-keys', '-t', pane, 'Enter');
};
const shows = (pane: string, pattern: RegExp) => async (): Promise<string | undefined> => {
  const s = screen(pane);
  return pattern.test(s) ? s : undefined;
};

const CONFIG = `store: state/queue.db
defaultTarget: local
scheduler: { tickMs: 50, pollIntervalMs: 100 }
targets:
  local: { type: local, root: runs, maxConcurrent: 3 }
  second: { type: local, root: runs2 }
  third: { type: local, root: runs3 }
`;

let dir: string | undefined;
afterAll(async () => {
  if (hasTmux) spawnSync('tmux', ['-L', socket, 'kill-server']);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!hasTmux)('daily use in terminals (tmux, real scheduler)', () => {
  it('long --wait, run restarted, and watch on a 50x14 terminal', async () => {
    dir = await project(CONFIG);
    await writeFile(
      join(dir, 'pair.yaml'),
      'name: pair\njobs:\n  first: { script: "sleep 1" }\n  last: { script: "sleep 1", dependsOn: [first] }\n',
    );
    const cm = `${process.execPath} ${BIN}`;
    tmux('new-session', '-d', '-s', 'cm', '-x', '160', '-y', '50', '-c', dir);
    tmux('split-window', '-t', 'cm', '-v', '-c', dir);
    tmux('select-layout', '-t', 'cm', 'even-vertical');
    const [run, shell] = ['cm.0', 'cm.1'];

    type(run, `${cm} run; echo RUN-EXIT=$?`);
    await until(shows(run, /scheduler started/), 15_000, 'scheduler');

    // 2. A wait of many polls (500 ms apart) with a progress bar: no listener warning.
    type(shell, `${cm} submit --wait --name long -- sleep 7; echo SUBMIT-EXIT=$?`);
    const waited = await until(shows(shell, /SUBMIT-EXIT=\d+/), 60_000, 'the long wait');
    await dump('wait', waited);
    expect(waited).toMatch(/SUBMIT-EXIT=0/);
    expect(waited).not.toMatch(/MaxListenersExceededWarning|possible EventTarget memory leak/);
    const longId = /submitted (\d+) \(long\)/.exec(waited)?.[1];
    expect(longId).toBeDefined();

    // 3. A restarted scheduler prints what happens from now on, not the history again.
    tmux('send-keys', '-t', run, 'C-c');
    await until(shows(run, /RUN-EXIT=0/), 15_000, 'run stopped');
    tmux('send-keys', '-t', run, 'clear', 'Enter');
    await until(async () => (screen(run).includes('RUN-EXIT') ? undefined : true), 10_000, 'clear');
    type(run, `${cm} run; echo RUN-EXIT=$?`);
    await until(shows(run, /scheduler started/), 15_000, 'scheduler again');
    type(shell, `clear; ${cm} workflow submit pair.yaml --wait; echo WF-EXIT=$?`);
    await until(shows(shell, /WF-EXIT=0/), 60_000, 'the workflow');
    const log = await until(shows(run, /workflow w\d+ done/), 15_000, 'workflow done in run');
    await dump('run-restarted', log);
    expect(log).not.toMatch(new RegExp(`long \\(${longId}\\)`));
    const lines = log.split('\n');
    const doneAt = lines.findIndex((l) => /workflow w\d+ done/.test(l));
    const lastAt = lines.findIndex((l) => /last \(\d+\) {2}running → succeeded/.test(l));
    expect(lastAt).toBeGreaterThan(-1);
    expect(doneAt).toBeGreaterThan(lastAt);

    // 6. watch on a 50x14 terminal: the title and counts stay on the first two rows.
    tmux('new-session', '-d', '-s', 'small', '-x', '50', '-y', '14', '-c', dir);
    type('small.0', `${cm} watch --interval 200`);
    const small = await until(shows('small.0', /TARGETS/), 15_000, 'watch frame');
    await dump('watch-50x14', small);
    const rows = small.split('\n');
    expect(rows[0]).toMatch(/^crystalmath watch/);
    expect(rows[1]).toMatch(/^jobs: \d+ total/);
    expect(small).toMatch(/pair #\d+/);
    for (const row of rows) expect(row.length).toBeLessThanOrEqual(50);
    tmux('send-keys', '-t', 'small.0', 'C-c');
    tmux('send-keys', '-t', run, 'C-c');
    await until(shows(run, /RUN-EXIT=0/), 15_000, 'run stopped at the end');
  });
});
