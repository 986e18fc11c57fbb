// An existing Node HTTP service (node:http only) that embeds the queue: POST /jobs enqueues,
// GET /jobs/:id reads a job, GET /events streams the persisted event log as Server-Sent
// Events (resuming from Last-Event-ID, so a reconnecting browser misses nothing).

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isCrystalMathError, type JobSpec } from '@crystalmath/core';
import type { Queue } from '@crystalmath/queue';

export interface JobsServerOptions {
  readonly queue: Queue;
  /** Target used when a request names none. */
  readonly defaultTarget: string;
  /** Largest request body accepted, in bytes. Default 64 KiB. */
  readonly maxBodyBytes?: number;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw Object.assign(new Error('request body is not JSON'), { status: 400 });
  }
}

/** Maps queue errors to HTTP: bad input 400, unknown ids 404, wrong state 409. */
function statusOf(err: unknown): number {
  if ((err as { status?: number }).status) return (err as { status: number }).status;
  if (!isCrystalMathError(err)) return 500;
  if (
    [
      'E_VALIDATION',
      'E_PATH_UNSAFE',
      'E_QUEUE_UNKNOWN_TARGET',
      'E_QUEUE_UNKNOWN_DEPENDENCY',
    ].includes(err.code)
  )
    return 400;
  if (err.code === 'E_QUEUE_JOB_NOT_FOUND' || err.code === 'E_NOT_FOUND') return 404;
  if (err.code === 'E_QUEUE_INVALID_STATE' || err.code === 'E_QUEUE_DUPLICATE') return 409;
  return 500;
}

async function streamEvents(
  queue: Queue,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const last = Number(
    req.headers['last-event-id'] ??
      new URL(req.url ?? '/', 'http://x').searchParams.get('after') ??
      0,
  );
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
  res.write(': connected\n\n');
  const stop = new AbortController();
  req.on('close', () => stop.abort());
  const keepAlive = setInterval(() => res.write(': ping\n\n'), 15_000);
  try {
    for await (const e of queue.events({
      after: Number.isFinite(last) ? last : 0,
      follow: true,
      signal: stop.signal,
    })) {
      res.write(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err;
  } finally {
    clearInterval(keepAlive);
    res.end();
  }
}

/**
 * Creates the HTTP server (not yet listening).
 *
 * @example
 * const server = createJobsServer({ queue, defaultTarget: 'local' });
 * server.listen(8080, '127.0.0.1');
 */
export function createJobsServer(options: JobsServerOptions): Server {
  const { queue } = options;
  const limit = options.maxBodyBytes ?? 64 * 1024;
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const handle = async (): Promise<void> => {
      if (req.method === 'POST' && url.pathname === '/jobs') {
        const body = (await readJson(req, limit)) as {
          spec?: JobSpec;
          target?: string;
          priority?: number;
        };
        if (typeof body !== 'object' || body === null || typeof body.spec !== 'object') {
          return send(res, 400, {
            error: { code: 'E_VALIDATION', message: 'body.spec: required' },
          });
        }
        // The queue validates the spec and the target: a bad one is rejected and nothing is stored.
        const job = await queue.enqueue(body.spec, {
          target: body.target ?? options.defaultTarget,
          ...(typeof body.priority === 'number' ? { priority: body.priority } : {}),
        });
        return send(res, 201, job);
      }
      const m = /^\/jobs\/([^/]+)$/.exec(url.pathname);
      if (req.method === 'GET' && m) {
        const job = await queue.get(decodeURIComponent(m[1] as string));
        return job
          ? send(res, 200, job)
          : send(res, 404, { error: { code: 'E_QUEUE_JOB_NOT_FOUND', message: 'no such job' } });
      }
      if (req.method === 'GET' && url.pathname === '/events') return streamEvents(queue, req, res);
      if (req.method === 'GET' && url.pathname === '/counts')
        return send(res, 200, await queue.counts());
      send(res, 404, {
        error: { code: 'E_NOT_FOUND', message: `no route ${req.method} ${url.pathname}` },
      });
    };
    handle().catch((err: unknown) => {
      if (res.headersSent) return res.end();
      const code = isCrystalMathError(err) ? err.code : 'E_INTERNAL';
      send(res, statusOf(err), { error: { code, message: (err as Error).message } });
    });
  });
}
