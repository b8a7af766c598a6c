/**
 * Native API: `POST /v1/images` (synchronous, or asynchronous with `Prefer: respond-async`) and the job
 * resource: `GET /v1/jobs`, `GET /v1/jobs/:id`, `GET /v1/jobs/:id/events` (SSE), `DELETE /v1/jobs/:id`.
 */
import { Type } from '@fastify/type-provider-typebox';
import { LoraserveError } from '../../core/errors.js';
import type { JobState } from '../../jobs/queue.js';
import type { Plugin } from '../context.js';
import { checkRenderRequest, resolveSeed } from '../edge/check.js';
import { ImagesBody, nativeRenderRequest } from '../edge/native.js';
import { prefersAsync, prefersPng, toBase64 } from '../http.js';
import { jobJson, renderAndWait } from '../render.js';
import { sendJobEvents } from '../sse.js';

const JobParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

const STATES = ['queued', 'running', 'done', 'failed', 'cancelled'] as const;

export const nativeRoutes: Plugin = async (app, { ctx }) => {
  app.post(
    '/v1/images',
    {
      schema: {
        tags: ['native'],
        summary: 'Render images',
        description:
          'Synchronous by default: PNG when Accept prefers image/png (single image), else JSON with base64 images. ' +
          'JSON: {job_id, images: base64 PNG[] (A1111 infotext in the "parameters" chunk), seeds, infotexts, timings}. ' +
          'With `Prefer: respond-async` the answer is 202 with a Location of the job.',
        body: ImagesBody,
      },
    },
    async (request, reply) => {
      const body = request.body;
      const job = nativeRenderRequest(body, { width: body.width, height: body.height, batchSize: body.batch_size }, ctx.config, resolveSeed(body.seed ?? -1));
      await checkRenderRequest(ctx, job);
      reply.header('vary', 'Accept, Prefer');
      if (prefersAsync(request.headers.prefer)) {
        const queued = await ctx.queue.submit(job, { timeoutMs: ctx.config.jobTimeoutMs, labels: { api: 'native', requestId: String(request.id) } });
        request.log.info({ jobId: queued.id, position: queued.position }, 'job queued (async)');
        return reply.status(202).header('location', `/v1/jobs/${queued.id}`).header('preference-applied', 'respond-async').send(jobJson(queued));
      }
      const rec = await renderAndWait(ctx, request, reply, job, { labels: { api: 'native' } });
      const images = rec.images ?? [];
      if (images.length === 1 && prefersPng(request.headers.accept)) {
        return reply
          .type('image/png')
          .header('x-job-id', rec.id)
          .header('x-seed', String(images[0].seed))
          .send(Buffer.from(images[0].png.buffer, images[0].png.byteOffset, images[0].png.byteLength));
      }
      const view = jobJson(rec);
      return { job_id: rec.id, images: images.map((i) => toBase64(i.png)), seeds: rec.seeds ?? [], infotexts: rec.infotexts ?? [], timings: view.timings };
    },
  );

  app.get(
    '/v1/jobs',
    {
      schema: {
        tags: ['native'],
        summary: 'Recent jobs, newest first (no images)',
        querystring: Type.Object({
          state: Type.Optional(Type.Union(STATES.map((s) => Type.Literal(s)))),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
        }),
      },
    },
    async (request) => {
      const { state, limit } = request.query;
      const list = await ctx.queue.list({ states: state ? [state as JobState] : undefined, limit });
      return { jobs: list.map(jobJson) };
    },
  );

  app.get('/v1/jobs/:id', { schema: { tags: ['native'], summary: 'A job: state, progress, and its images once done', params: JobParams } }, async (request) => {
    const rec = await ctx.queue.get(request.params.id);
    if (!rec) throw notFound(request.params.id);
    return jobJson(rec);
  });

  app.get(
    '/v1/jobs/:id/events',
    { schema: { tags: ['native'], summary: 'Server-Sent Events: queued, position, started, progress (with previews), done | failed | cancelled', params: JobParams } },
    async (request, reply) => {
      if (!(await ctx.queue.get(request.params.id))) throw notFound(request.params.id);
      return sendJobEvents(ctx.queue, request.params.id, reply);
    },
  );

  app.delete(
    '/v1/jobs/:id',
    { schema: { tags: ['native'], summary: 'Cancel a job (queued: at once; running: at its next step → 202)', params: JobParams } },
    async (request, reply) => {
      const rec = await ctx.queue.cancel(request.params.id);
      if (!rec) throw notFound(request.params.id);
      request.log.info({ jobId: rec.id, state: rec.state }, 'job cancel requested');
      return reply.status(rec.state === 'running' ? 202 : 200).send(jobJson(rec));
    },
  );
};

function notFound(id: string): LoraserveError {
  return new LoraserveError('NOT_FOUND', `no job ${id} (finished jobs are kept for a limited time)`, { jobId: id });
}
