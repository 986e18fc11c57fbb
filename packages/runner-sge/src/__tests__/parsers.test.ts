// The parsers and state maps on output recorded from the testbed's real Grid Engine
// (fixtures/README.md says how each file was produced).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { mapQacct, mapSgeState } from '../map-sge-state.js';
import { parseQacct, parseSgeMemory, parseSgeTime } from '../parse-qacct.js';
import { parseQstatJErrors } from '../parse-qstat-j.js';
import { isQstatXml, parseQstatXml } from '../parse-qstat-xml.js';
import { parseQsubTerse } from '../parse-qsub.js';
import { parseJobFiles, parsePollOutput } from '../poll-script.js';

const fixture = (name: string): string =>
  readFileSync(join(import.meta.dirname, 'fixtures', name), 'utf8');

describe('parseQsubTerse', () => {
  it('reads a job id and an array job id, and nothing else', () => {
    expect(parseQsubTerse('17\n')).toBe('17');
    expect(parseQsubTerse('4.1-3:1\n')).toBe('4');
    expect(parseQsubTerse('')).toBeNull();
    expect(parseQsubTerse('Your job 17 ("x") has been submitted\n')).toBeNull();
    expect(parseQsubTerse('17\n18\n')).toBeNull();
    expect(parseQsubTerse('0\n')).toBeNull();
    expect(parseQsubTerse('17; rm -rf /\n')).toBeNull();
  });
});

describe('parseQstatXml on recorded output', () => {
  it('reads running, transferring, pending and held jobs', () => {
    const xml = fixture('qstat-running-array-pending-held.xml');
    expect(isQstatXml(xml)).toBe(true);
    const entries = parseQstatXml(xml);
    expect(entries.map((e) => [e.jobId, e.name, e.state, e.tasks])).toEqual([
      ['3', 'exp-sleep', 'r', undefined],
      ['4', 'exp-arr', 't', '3'],
      ['5', 'exp-badwd', 'qw', undefined],
      ['2', 'exp-held', 'hqw', undefined],
    ]);
    expect(entries[0]?.queue).toBe('all.q@vm');
    expect(entries[0]?.slots).toBe(1);
    expect(entries[0]?.startedAt).toBe(new Date(2026, 11, 7, 15, 12, 53).getTime());
  });

  it('reads Eqw, suspended and an array split into a running task and a pending range', () => {
    expect(parseQstatXml(fixture('qstat-eqw-held.xml')).map((e) => e.state)).toEqual([
      'r',
      'Eqw',
      'hqw',
    ]);
    const entries = parseQstatXml(fixture('qstat-suspended-array-eqw.xml'));
    expect(entries.map((e) => [e.jobId, e.state, e.tasks])).toEqual([
      ['14', 's', undefined],
      ['15', 'r', '1'],
      ['15', 'qw', '2-4:1'],
      ['16', 'qw', undefined],
    ]);
  });

  it('reads an empty list, and recognises what is not qstat -xml', () => {
    const empty =
      '<?xml version=\'1.0\'?>\n<job_info  xmlns:xsd="x">\n  <queue_info>\n  </queue_info>\n  <job_info>\n  </job_info>\n</job_info>\n';
    expect(isQstatXml(empty)).toBe(true);
    expect(parseQstatXml(empty)).toEqual([]);
    expect(isQstatXml('error: commlib error: access denied')).toBe(false);
    expect(isQstatXml('<job_info>\n  <queue_info>')).toBe(false);
  });

  it('decodes XML entities in job names', () => {
    const xml =
      '<job_info><job_list state="pending"><JB_job_number>7</JB_job_number><JB_name>a&amp;b&lt;c</JB_name><state>qw</state></job_list></job_info>';
    expect(parseQstatXml(xml)[0]?.name).toBe('a&b<c');
  });
});

describe('parseQacct on recorded output', () => {
  it('reads an exit code', () => {
    const [r] = parseQacct(fixture('qacct-exit3.txt'));
    expect(r).toMatchObject({ jobId: '1', name: 'exp-ok', failed: 0, exitStatus: 3 });
    expect(r?.taskId).toBeUndefined();
    expect(mapQacct(r!)).toEqual({ state: 'failed', exitCode: 3 });
  });

  it('reads a qdel of a running job and a self-inflicted SIGKILL alike', () => {
    const [qdel] = parseQacct(fixture('qacct-qdel-running.txt'));
    const [self] = parseQacct(fixture('qacct-self-sigkill.txt'));
    expect(qdel).toMatchObject({
      failed: 100,
      failedReason: 'assumedly after job',
      exitStatus: 137,
    });
    expect(self).toMatchObject({ failed: 100, exitStatus: 137 });
    expect(mapQacct(qdel!)).toMatchObject({ state: 'failed', signal: 9, exitCode: 137 });
  });

  it('tells h_rt from h_vmem under the same failed 37', () => {
    const [hrt] = parseQacct(fixture('qacct-h-rt.txt'));
    expect(hrt).toMatchObject({ failed: 37, exitStatus: 137, hRtSeconds: 2 });
    expect(mapQacct(hrt!).state).toBe('timeout');
    const [mem] = parseQacct(fixture('qacct-h-vmem-kill.txt'));
    expect(mem).toMatchObject({ failed: 37, hVmemBytes: 150 * 1024 ** 2 });
    expect(mem?.maxvmemBytes).toBeCloseTo(173.164 * 1024 ** 2, -3);
    expect(mapQacct(mem!)).toMatchObject({ state: 'out_of_memory', signal: 9 });
  });

  it('reads every task of an array job', () => {
    const recs = parseQacct(fixture('qacct-array-3-tasks.txt'));
    expect(recs.map((r) => [r.jobId, r.taskId, r.exitStatus])).toEqual([
      ['4', '1', 3],
      ['4', '2', 3],
      ['4', '3', 3],
    ]);
  });

  it('reads a job deleted in error state, which never started', () => {
    const [r] = parseQacct(fixture('qacct-eqw-deleted.txt'));
    expect(r).toMatchObject({ failed: 28, failedReason: 'changing into working directory' });
    expect(r?.startedAt).toBeUndefined();
    expect(mapQacct(r!)).toMatchObject({ state: 'failed' });
    expect(mapQacct(r!).reason).toContain('changing into working directory');
  });

  it('reads the slots and project of a parallel job', () => {
    const [r] = parseQacct(fixture('qacct-pe-project.txt'));
    expect(r).toMatchObject({ failed: 0, exitStatus: 0 });
    expect(mapQacct(r!)).toEqual({ state: 'succeeded', exitCode: 0 });
  });

  it('finds no record in "job id not found"', () => {
    expect(parseQacct(fixture('qacct-qdel-pending.txt'))).toEqual([]);
  });

  it('reads memory and time units the way Grid Engine does', () => {
    expect(parseSgeMemory('100M')).toBe(100 * 1024 ** 2);
    expect(parseSgeMemory('100m')).toBe(100 * 1000 ** 2);
    expect(parseSgeMemory('4.777KB')).toBeCloseTo(4.777 * 1024);
    expect(parseSgeMemory('0.000B')).toBe(0);
    expect(parseSgeMemory('lots')).toBeUndefined();
    expect(parseSgeTime('3600')).toBe(3600);
    expect(parseSgeTime('1:00:05')).toBe(3605);
    expect(parseSgeTime('1:x')).toBeUndefined();
  });
});

describe('parseQstatJErrors on recorded output', () => {
  it('reads the error reason of an Eqw job without its timestamp', () => {
    expect(parseQstatJErrors(fixture('qstat-j-eqw.txt'))).toEqual(
      new Map([['16', "error: can't chdir to /nonexistent: No such file or directory"]]),
    );
  });
});

describe('mapSgeState', () => {
  it.each([
    ['qw', 'queued', undefined],
    ['hqw', 'queued', 'held'],
    ['hRwq', 'queued', 'held'],
    ['r', 'running', undefined],
    ['t', 'running', undefined],
    ['Rr', 'running', undefined],
    ['hr', 'running', undefined],
    ['dr', 'running', 'being deleted'],
    ['s', 'running', 'suspended (by user or administrator)'],
    ['S', 'running', 'suspended (by queue)'],
    ['T', 'running', 'suspended (by threshold)'],
    ['Eqw', 'failed', 'in Grid Engine error state'],
    ['zz', 'queued', 'unrecognised Grid Engine state "zz"'],
  ])('%s is %s', (letters, state, reason) => {
    const m = mapSgeState(letters);
    expect(m.state).toBe(state);
    expect(m.reason).toBe(reason);
  });
});

describe('parsePollOutput and parseJobFiles', () => {
  it('splits the sections and reads exit files and cancel markers', () => {
    const out = parsePollOutput(
      [
        '@@cm:qstat 0',
        '<job_info></job_info>',
        '@@cm:errors',
        'job_number:                 16',
        '@@cm:deleted 16,17',
        '@@cm:qacct 3',
        'jobnumber 3',
        '@@cm:qacct 4',
        'jobnumber 4',
        '@@cm:files',
        'exit 3 0 ',
        'exit 4.2 143 TERM',
        'cancel 5',
        'exit junk',
        '@@cm:end',
        '',
      ].join('\n'),
    );
    expect(out.qstatExit).toBe(0);
    expect(out.deleted).toEqual(['16', '17']);
    expect(out.qacct).toBe('jobnumber 3\njobnumber 4');
    expect(out.complete).toBe(true);
    const files = parseJobFiles(out.files);
    expect(files.exits).toEqual(
      new Map([
        ['3', { exitCode: 0 }],
        ['4.2', { exitCode: 143, signal: 'SIGTERM' }],
      ]),
    );
    expect(files.cancelled).toEqual(new Set(['5']));
  });

  it('refuses output without the qstat section', () => {
    expect(() => parsePollOutput('garbage\n')).toThrow(/qstat section/);
  });
});
