/**
 * Operations: `/healthz` (the process answers; never touches the queue's workers), `/readyz` (a model is
 * loaded and jobs are accepted), `/metrics` (Prometheus text).
 */
import { Type } from '@fastify/type-provider-typebox';
import { LoraserveError } from '../../core/errors.js';
import { VERSION } from '../../core/version.js';
import type { Plugin } from '../context.js';

export const opsRoutes: Plugin = async (app, { ctx }) => {
  app.get(
    '/healthz',
    { schema: { tags: ['ops'], summary: 'Liveness', response: { 200: Type.Object({ status: Type.Literal('ok'), version: Type.String() }) } }, logLevel: 'warn' },
    async () => ({ status: 'ok' as const, version: VERSION }),
  );

  app.get('/readyz', { schema: { tags: ['ops'], summary: 'Readiness: a model is loaded and jobs are accepted' }, logLevel: 'warn' }, async () => {
    const stats = await ctx.queue.stats();
    const workers = stats.workers.map((w) => ({ id: w.id, state: w.state, model: w.model?.name }));
    if (!stats.accepting) throw new LoraserveError('SHUTTING_DOWN', 'the server is shutting down', { workers });
    if (!stats.workers.some((w) => w.state === 'idle' || w.state === 'busy')) {
      throw new LoraserveError('MODEL_NOT_LOADED', 'no render worker has its model loaded yet', { workers, retryAfterSeconds: 5 });
    }
    return { status: 'ready', queued: stats.queued, running: stats.running, workers };
  });

  app.get('/metrics', { schema: { tags: ['ops'], summary: 'Prometheus metrics (text exposition format 0.0.4)' }, logLevel: 'warn' }, async (_request, reply) => {
    const text = ctx.metrics.render(await ctx.queue.stats(), ctx.loras);
    return reply.type('text/plain; version=0.0.4; charset=utf-8').send(text);
  });
};
