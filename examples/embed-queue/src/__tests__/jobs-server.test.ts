import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openQueue, type Queue, type QueueEvent, sqliteStore } from '@crystalmath/queue';
import { LocalRunner } from '@crystalmath/runner-process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJobsServer } from '../jobs-server.js';

let dir: string;
let queue: Queue;
let server: Server;
let base: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cm-embed-'));
  queue = await openQueue({
    store: sqliteStore({ path: join(dir, 'q.db') }),
    targets: { local: { runner: new LocalRunner({ root: join(dir, 'runs') }), maxConcurrent: 2 } },
    scheduler: { tickMs: 50, pollIntervalMs: 100 },
  });
  await queue.start();
  server = createJobsServer({ queue, defaultTarget: 'local' });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await queue?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Reads SSE events from /events until `until` returns true (or the timeout). */
async function readEvents(
  headers: Record<string, string>,
  until: (events: QueueEvent[]) => boolean,
  timeoutMs = 20_000,
): Promise<{ events: QueueEvent[]; ids: number[] }> {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  const res = await fetch(`${base}/events`, { headers, signal: ctrl.signal });
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  const events: QueueEvent[] = [];
  const ids: number[] = [];
  let buffer = '';
  const decoder = new TextDecoder();
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let cut = buffer.indexOf('\n\n');
      while (cut >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = /^data: (.*)$/m.exec(block)?.[1];
        const id = /^id: (\d+)$/m.exec(block)?.[1];
        if (data) events.push(JSON.parse(data) as QueueEvent);
        if (id) ids.push(Number(id));
        cut = buffer.indexOf('\n\n');
      }
      if (until(events)) break;
    }
  } finally {
    clearTimeout(timer);
    ctrl.abort();
  }
  return { events, ids };
}

describe('embed-queue HTTP service', () => {
  it('enqueues over HTTP and streams the job to success as Server-Sent Events', async () => {
    const res = await fetch(`${base}/jobs`, {
      method: 'POST',
      body: JSON.stringify({ spec: { name: 'hello', argv: ['sh', '-c', 'echo hello'] } }),
    });
    expect(res.status).toBe(201);
    const job = (await res.json()) as { id: string; target: string };
    expect(job.target).toBe('local');
    const { events, ids } = await readEvents({}, (es) =>
      es.some((e) => e.type === 'job:state' && e.jobId === job.id && e.to === 'succeeded'),
    );
    const mine = events.filter((e) => e.type === 'job:state' && e.jobId === job.id);
    expect(mine.at(-1)).toMatchObject({ to: 'succeeded' });
    expect(ids).toEqual([...ids].sort((a, b) => a - b));

    // A reconnecting client sends Last-Event-ID and gets only what came after it.
    const middle = ids[Math.floor(ids.length / 2)] as number;
    const resumed = await readEvents({ 'last-event-id': String(middle) }, (es) =>
      es.some((e) => e.seq === ids.at(-1)),
    );
    expect(resumed.ids[0]).toBe(middle + 1);
    expect(
      (await (await fetch(`${base}/jobs/${job.id}`)).json()) as { state: string },
    ).toMatchObject({ state: 'succeeded' });
  });

  it('rejects a bad job with 400 and a code naming the field, storing nothing', async () => {
    const before = (await queue.counts()).total;
    const bad = await fetch(`${base}/jobs`, {
      method: 'POST',
      body: JSON.stringify({ spec: { name: 'bad', argv: ['true'], workdir: '../escape' } }),
    });
    expect(bad.status).toBe(400);
    const body = (await bad.json()) as { error: { code: string; message: string } };
    expect(body.error.message).toMatch(/workdir/);
    const unknown = await fetch(`${base}/jobs`, {
      method: 'POST',
      body: JSON.stringify({ spec: { name: 'x', argv: ['true'] }, target: 'mars' }),
    });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe(
      'E_QUEUE_UNKNOWN_TARGET',
    );
    expect((await fetch(`${base}/jobs`, { method: 'POST', body: '{not json' })).status).toBe(400);
    expect((await queue.counts()).total).toBe(before);
  });

  it('answers 404 for an unknown job and 400 for a malformed id', async () => {
    expect((await fetch(`${base}/jobs/999999`)).status).toBe(404);
    expect((await fetch(`${base}/jobs/nope`)).status).toBe(400);
  });
});
