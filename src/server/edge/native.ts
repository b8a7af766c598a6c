/**
 * The native API's render request (`POST /v1/images`, and the extension fields of the OpenAI route): its
 * TypeBox schema (the type is derived from it). The field names, defaults, limits and the translation into the
 * engine's RenderRequest live in src/engine/native-request.ts, which `loraserve batch` shares; the schema reads
 * its limits from there so that a body the schema accepts always converts.
 */
import { type Static, Type } from '@fastify/type-provider-typebox';
import { NATIVE_LIMITS as L, nativeBodyToRequest } from '../../engine/native-request.js';
import type { RenderRequest } from '../../engine/request.js';
import type { ServerConfig } from '../config.js';

export const LoraSpecSchema = Type.Object(
  {
    name: Type.String({ ...L.loraName, description: 'File stem in the LoRA folder (catears.safetensors → catears).' }),
    weight: Type.Optional(Type.Number({ ...L.loraWeight, default: 1, description: 'Strength s in W + s·(α/r)·B·A.' })),
    te: Type.Optional(Type.Number({ ...L.loraWeight, description: 'Strength on the text encoder (default: weight).' })),
    unet: Type.Optional(Type.Number({ ...L.loraWeight, description: 'Strength on the UNet (default: weight).' })),
    blocks: Type.Optional(
      Type.Record(Type.String({ pattern: L.blockKeyPattern }), Type.Number({ ...L.loraWeight }), {
        description: 'UNet block weights: in/mid/out or BASE, IN00…IN11, M00, OUT00…OUT11 (A1111 LoRA Block Weight ids).',
      }),
    ),
  },
  { additionalProperties: false },
);

/** Fields every render-taking native body shares (the OpenAI route accepts them as extensions). */
export const renderFields = {
  negative_prompt: Type.Optional(Type.String({ default: '' })),
  loras: Type.Optional(Type.Array(LoraSpecSchema, { ...L.loras })),
  sampler: Type.Optional(Type.String({ ...L.sampler, description: 'euler_a, dpmpp_2m, … or A1111 names ("DPM++ 2M Karras"). GET /v1/samplers lists them.' })),
  scheduler: Type.Optional(Type.String({ ...L.scheduler, description: 'automatic, karras, exponential, … GET /v1/samplers lists them.' })),
  steps: Type.Optional(Type.Integer({ ...L.steps })),
  cfg_scale: Type.Optional(Type.Number({ ...L.cfgScale })),
  seed: Type.Optional(Type.Integer({ ...L.seed, description: '-1 picks a random seed; image k of a batch uses seed + k.' })),
  rng: Type.Optional(Type.Union([Type.Literal('cpu'), Type.Literal('nv')], { description: "Noise source: torch CPU (default) or A1111's NV (GPU-equivalent philox)." })),
  clip_skip: Type.Optional(Type.Integer({ ...L.clipSkip, description: "A1111's Clip skip (1 = last layer)." })),
  emphasis: Type.Optional(Type.Union([Type.Literal('Original'), Type.Literal('No norm'), Type.Literal('Ignore')])),
  flavor: Type.Optional(
    Type.Union([Type.Literal('native'), Type.Literal('a1111')], {
      description: "'a1111' makes 'automatic' schedules and the noise table match A1111 (what /sdapi routes use).",
    }),
  ),
  preview_every: Type.Optional(Type.Integer({ ...L.previewEvery, description: 'Preview every N steps in the job events (0 = none).' })),
};

export const ImagesBody = Type.Object(
  {
    prompt: Type.String(),
    ...renderFields,
    width: Type.Optional(Type.Integer({ ...L.size })),
    height: Type.Optional(Type.Integer({ ...L.size })),
    batch_size: Type.Optional(Type.Integer({ ...L.batchSize })),
  },
  { additionalProperties: false },
);
export type ImagesBody = Static<typeof ImagesBody>;

type RenderFieldValues = { [K in keyof typeof renderFields]?: Static<(typeof renderFields)[K]> };

/**
 * Native fields (with the server's defaults) → RenderRequest. The size and batch come separately because the
 * OpenAI route spells them `size` and `n`; they are checked against the server's limits by checkRenderRequest.
 * `seed` is the resolved seed (resolveSeed).
 */
export function nativeRenderRequest(
  body: RenderFieldValues & { prompt: string },
  size: { width?: number; height?: number; batchSize?: number },
  config: ServerConfig,
  seed: number,
): RenderRequest {
  // The schema already validated the body; 'ignore' skips the route's own extra fields (OpenAI's n, size, model, …).
  const fields = { ...body, width: undefined, height: undefined, batch_size: undefined, seed };
  const req = nativeBodyToRequest(fields, { defaults: config.defaults, previewEvery: config.previewEvery, unknownFields: 'ignore' });
  const d = config.defaults;
  return { ...req, width: size.width ?? d.width, height: size.height ?? d.height, batchSize: size.batchSize ?? 1 };
}
