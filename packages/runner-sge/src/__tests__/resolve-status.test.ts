// Status resolution from qstat, qacct, exit files and cancel markers, on recorded outputs and
// on the combinations a poll can meet between them (a job gone from qstat before qacct has it).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseQacct } from '../parse-qacct.js';
import { parseQstatJErrors } from '../parse-qstat-j.js';
import { parseQstatXml } from '../parse-qstat-xml.js';
import { countTaskRange, type PollFacts, resolveStatus } from '../resolve-status.js';

const fixture = (name: string): string =>
  readFileSync(join(import.meta.dirname, 'fixtures', name), 'utf8');

const facts = (f: Partial<PollFacts>): PollFacts => ({
  qstat: [],
  qacct: [],
  exits: new Map(),
  cancelled: new Set(),
  errors: new Map(),
  ...f,
});

describe('resolveStatus', () => {
  it('reads qstat while it lists the job, with the Eqw reason from qstat -j', () => {
    const f = facts({
      qstat: parseQstatXml(fixture('qstat-eqw-held.xml')),
      errors: parseQstatJErrors(fixture('qstat-j-eqw.txt').replace(/16/g, '5')),
    });
    expect(resolveStatus({ jobId: '3' }, f)).toMatchObject({ state: 'running', nativeState: 'r' });
    expect(resolveStatus({ jobId: '2' }, f)).toEqual({
      state: 'queued',
      nativeState: 'hqw',
      reason: 'held',
    });
    expect(resolveStatus({ jobId: '5' }, f)).toEqual({
      state: 'failed',
      nativeState: 'Eqw',
      reason: "error: can't chdir to /nonexistent: No such file or directory",
    });
  });

  it('reports a suspended job as running, with the reason', () => {
    const f = facts({ qstat: parseQstatXml(fixture('qstat-suspended-array-eqw.xml')) });
    expect(resolveStatus({ jobId: '14' }, f)).toMatchObject({
      state: 'running',
      nativeState: 's',
      reason: 'suspended (by user or administrator)',
    });
  });

  it('prefers the exit file for the code, and reads qacct for kills', () => {
    const exit3 = parseQacct(fixture('qacct-exit3.txt'));
    expect(resolveStatus({ jobId: '1' }, facts({ qacct: exit3 }))).toMatchObject({
      state: 'failed',
      exitCode: 3,
      nativeState: 'exit_status 3',
    });
    const hrt = parseQacct(fixture('qacct-h-rt.txt'));
    expect(resolveStatus({ jobId: '6' }, facts({ qacct: hrt }))).toMatchObject({
      state: 'timeout',
      signal: 'SIGKILL',
      nativeState: 'failed 37',
    });
    const mem = parseQacct(fixture('qacct-h-vmem-kill.txt'));
    expect(resolveStatus({ jobId: '13' }, facts({ qacct: mem }))).toMatchObject({
      state: 'out_of_memory',
    });
  });

  it('uses the exit file when qacct has no record yet', () => {
    const f = facts({ exits: new Map([['7', { exitCode: 0 }]]) });
    expect(resolveStatus({ jobId: '7' }, f)).toMatchObject({ state: 'succeeded', exitCode: 0 });
    const g = facts({ exits: new Map([['7', { exitCode: 143, signal: 'SIGTERM' }]]) });
    expect(resolveStatus({ jobId: '7' }, g)).toMatchObject({
      state: 'failed',
      exitCode: 143,
      signal: 'SIGTERM',
    });
  });

  it('reports a killed job as cancelled only when cancel left its marker', () => {
    const qdel = parseQacct(fixture('qacct-qdel-running.txt'));
    expect(resolveStatus({ jobId: '3' }, facts({ qacct: qdel }))).toMatchObject({
      state: 'failed',
      signal: 'SIGKILL',
    });
    expect(
      resolveStatus({ jobId: '3' }, facts({ qacct: qdel, cancelled: new Set(['3']) })),
    ).toEqual({
      state: 'cancelled',
      nativeState: 'failed 100',
      reason: 'deleted by cancel (qdel)',
      startedAt: expect.any(Number),
      endedAt: expect.any(Number),
    });
    // Deleted while pending: no accounting record ever comes.
    expect(resolveStatus({ jobId: '2' }, facts({ cancelled: new Set(['2']) }))).toMatchObject({
      state: 'cancelled',
    });
  });

  it('keeps a job that ended on its own before the cancel', () => {
    const ok = parseQacct(fixture('qacct-pe-project.txt'));
    const f = facts({
      qacct: ok,
      cancelled: new Set(['9']),
      exits: new Map([['9', { exitCode: 0 }]]),
    });
    expect(resolveStatus({ jobId: '9' }, f)).toMatchObject({ state: 'succeeded', exitCode: 0 });
  });

  it('returns null for a job no source knows (the caller applies its grace period)', () => {
    expect(resolveStatus({ jobId: '42' }, facts({}))).toBeNull();
  });

  it('aggregates array tasks: running while any is pending, then the worst end', () => {
    const f = facts({ qstat: parseQstatXml(fixture('qstat-suspended-array-eqw.xml')) });
    expect(resolveStatus({ jobId: '15', arrayTasks: 4 }, f)).toMatchObject({
      state: 'running',
      reason: '0 of 4 array tasks finished',
    });
    const done = facts({ qacct: parseQacct(fixture('qacct-array-3-tasks.txt')) });
    expect(resolveStatus({ jobId: '4', arrayTasks: 3 }, done)).toMatchObject({
      state: 'failed',
      exitCode: 3,
      reason: '3 of 3 array tasks did not succeed',
    });
    // One task forgotten by every source: absent, not finished.
    expect(resolveStatus({ jobId: '4', arrayTasks: 4 }, done)).toBeNull();
  });

  it('counts pending task ranges', () => {
    expect(countTaskRange('2-4:1')).toBe(3);
    expect(countTaskRange('1-9:2')).toBe(5);
    expect(countTaskRange('7')).toBe(1);
    expect(countTaskRange('junk')).toBe(0);
  });
});
