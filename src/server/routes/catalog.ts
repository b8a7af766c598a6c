/** What the server offers: `GET /v1/models`, `/v1/samplers`, `/v1/embeddings`, and `POST /v1/png-info`. */
import { Type } from '@fastify/type-provider-typebox';
import { listSamplers, listSchedulers } from '../../diffusion/registry.js';
import type { Plugin } from '../context.js';
import { readPngInfo, requirePng } from '../edge/png-info.js';
import { decodeBase64Image } from '../http.js';
import { ImageBody } from './shared.js';

export const catalogRoutes: Plugin = async (app, { ctx }) => {
  app.get('/v1/models', { schema: { tags: ['native'], summary: 'Loaded models' } }, async () => {
    const models = await ctx.queue.models();
    return {
      models: models.map((m) => ({
        name: m.name,
        hash: m.hash,
        sha256: m.sha256,
        provider: m.provider,
        precision: m.precision,
        prediction_type: m.predictionType,
        size_multiple: m.sizeMultiple,
      })),
    };
  });

  app.get('/v1/samplers', { schema: { tags: ['native'], summary: 'Samplers and schedules (ids, A1111 labels, aliases)' } }, async () => ({
    samplers: listSamplers().map((s) => ({ id: s.id, label: s.label, aliases: s.aliases, a1111_automatic: s.a1111Automatic })),
    schedulers: listSchedulers(),
  }));

  app.get('/v1/embeddings', { schema: { tags: ['native'], summary: 'Textual-inversion embeddings' } }, async () => ({
    embeddings: (await ctx.embeddings.list()).map((e) => ({ name: e.name, vectors: e.vectors, shape: e.shape, compatible: e.compatible, step: e.step ?? null })),
  }));

  app.post(
    '/v1/png-info',
    {
      schema: {
        tags: ['native'],
        summary: 'Generation parameters stored in a PNG',
        body: ImageBody,
        response: {
          200: Type.Object({
            parameters: Type.String({ description: 'The A1111 infotext ("" when the PNG has none)' }),
            prompt: Type.String(),
            negative_prompt: Type.String(),
            params: Type.Record(Type.String(), Type.String()),
            text: Type.Record(Type.String(), Type.String(), { description: 'Other PNG text chunks' }),
          }),
        },
      },
    },
    async (request) => {
      const info = readPngInfo(requirePng(decodeBase64Image(request.body.image, 'image'), 'image'));
      return {
        parameters: info.parameters,
        prompt: info.parsed?.prompt ?? '',
        negative_prompt: info.parsed?.negativePrompt ?? '',
        params: info.parsed?.params ?? {},
        text: info.other,
      };
    },
  );
};
