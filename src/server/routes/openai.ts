/**
 * OpenAI Images API: `POST /v1/images/generations` → `{ created, data: [{ b64_json }] }`, so OpenAI client
 * libraries can point their base URL here. Only `response_format: "b64_json"` exists (this server keeps no
 * public image URLs); `url` is a clear 400. `model` may name the loaded model or anything else (clients send
 * "dall-e-3" unchanged); the loaded model renders either way. Our native render fields (negative_prompt,
 * seed, steps, sampler, loras, …) are accepted as extensions.
 */
import { Type } from '@fastify/type-provider-typebox';
import { LoraserveError } from '../../core/errors.js';
import type { Plugin } from '../context.js';
import { checkRenderRequest, resolveSeed } from '../edge/check.js';
import { nativeRenderRequest, renderFields } from '../edge/native.js';
import { toBase64 } from '../http.js';
import { renderAndWait } from '../render.js';

export const GenerationsBody = Type.Object(
  {
    prompt: Type.String({ minLength: 1 }),
    n: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024, default: 1 })),
    size: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}x[0-9]{1,5}$', description: 'WIDTHxHEIGHT, e.g. 512x512 (default: the server default size)' })),
    response_format: Type.Optional(Type.Union([Type.Literal('b64_json'), Type.Literal('url')], { default: 'b64_json' })),
    model: Type.Optional(Type.String()),
    quality: Type.Optional(Type.String()),
    style: Type.Optional(Type.String()),
    user: Type.Optional(Type.String()),
    ...renderFields,
  },
  { additionalProperties: false },
);

export const openaiRoutes: Plugin = async (app, { ctx }) => {
  app.post(
    '/v1/images/generations',
    {
      schema: {
        tags: ['openai'],
        summary: 'OpenAI-compatible image generation',
        body: GenerationsBody,
        response: {
          200: Type.Object({ created: Type.Integer(), data: Type.Array(Type.Object({ b64_json: Type.String(), revised_prompt: Type.Optional(Type.String()) })) }),
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      if (body.response_format === 'url') {
        throw new LoraserveError('INVALID_ARGUMENT', 'response_format "url" is not supported: this server returns images inline; use "b64_json"', {
          field: 'response_format',
          supported: ['b64_json'],
        });
      }
      let width: number | undefined;
      let height: number | undefined;
      if (body.size) [width, height] = body.size.split('x').map(Number);
      const job = nativeRenderRequest(body, { width, height, batchSize: body.n ?? 1 }, ctx.config, resolveSeed(body.seed ?? -1));
      await checkRenderRequest(ctx, job, { batch: 'n' });
      const rec = await renderAndWait(ctx, request, reply, job, { labels: { api: 'openai', ...(body.model ? { model: body.model } : {}) } });
      return { created: Math.floor((rec.finishedAt ?? Date.now()) / 1000), data: (rec.images ?? []).map((i) => ({ b64_json: toBase64(i.png) })) };
    },
  );
};
