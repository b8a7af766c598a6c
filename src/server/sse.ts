/**
 * A job's events as Server-Sent Events (text/event-stream): `queued`, `position`, `started`, `progress`
 * (step i/n, ETA, optional low-res PNG preview), then one of `done` (the full job, images included),
 * `failed` or `cancelled`, after which the stream ends. A comment line every 15 s keeps proxies from closing
 * an idle stream. The stream stops listening when the client goes away.
 */
import { PassThrough } from 'node:stream';
import type { FastifyReply } from 'fastify';
import { encodePng } from '../image/png.js';
import { isFinalEvent, type JobEvent, type JobQueue, type JobPreview } from '../jobs/queue.js';
import { toBase64 } from './http.js';
import { jobJson } from './render.js';

const HEARTBEAT_MS = 15_000;

export async function previewJson(p: JobPreview): Promise<{ step: number; width: number; height: number; png: string }> {
  const png = await encodePng(p.rgb, p.width, p.height, undefined, { compressionLevel: 1 });
  return { step: p.step, width: p.width, height: p.height, png: toBase64(png) };
}

async function eventData(queue: JobQueue, e: JobEvent): Promise<Record<string, unknown>> {
  switch (e.type) {
    case 'queued':
    case 'position':
      return { id: e.id, position: e.position };
    case 'started':
      return { id: e.id, worker: e.worker };
    case 'progress':
      return {
        id: e.id,
        step: e.step,
        total: e.total,
        elapsed_ms: Math.round(e.elapsedMs),
        eta_ms: Math.round(e.etaMs),
        ...(e.preview ? { preview: await previewJson(e.preview) } : {}),
      };
    case 'done': {
      const rec = await queue.get(e.id);
      return rec ? { ...jobJson(rec) } : { id: e.id, state: 'done', seeds: e.seeds, infotexts: e.infotexts };
    }
    case 'failed':
    case 'cancelled':
      return { id: e.id, state: e.type, error: e.error };
  }
}

/** Streams one job's events into the reply until the job ends or the client leaves. */
export function sendJobEvents(queue: JobQueue, id: string, reply: FastifyReply): FastifyReply {
  const stream = new PassThrough();
  let seq = 0;
  let chain = Promise.resolve();
  const heartbeat = setInterval(() => stream.write(': keep-alive\n\n'), HEARTBEAT_MS);
  const stop = () => {
    clearInterval(heartbeat);
    off();
  };
  // Events are formatted one after another (a preview is PNG-encoded asynchronously) so their order holds.
  const off = queue.subscribe(id, (e) => {
    chain = chain.then(async () => {
      if (stream.writableEnded) return;
      const data = await eventData(queue, e).catch((err: unknown) => ({ id: e.id, note: `event could not be formatted: ${String(err)}` }));
      stream.write(`id: ${++seq}\nevent: ${e.type}\ndata: ${JSON.stringify(data)}\n\n`);
      if (isFinalEvent(e)) {
        stop();
        stream.end();
      }
    });
  });
  reply.raw.on('close', stop);
  stream.on('close', stop);
  // Tell the client how long to wait before reconnecting, and open the stream at once.
  stream.write('retry: 2000\n\n');
  return reply
    .header('content-type', 'text/event-stream; charset=utf-8')
    .header('cache-control', 'no-cache, no-transform')
    .header('x-accel-buffering', 'no')
    .send(stream);
}
