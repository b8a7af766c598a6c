/**
 * The native API's render request (`POST /v1/images`, and the extension fields of the OpenAI route): its
 * TypeBox schema (the type is derived from it) and its translation into the engine's RenderRequest.
 */
import { type Static, Type } from '@fastify/type-provider-typebox';
import { MAX_SEED } from '../../diffusion/rng/index.js';
import type { RenderRequest } from '../../engine/request.js';
import type { ServerConfig } from '../config.js';

export const LoraSpecSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 255, description: 'File stem in the LoRA folder (catears.safetensors → catears).' }),
    weight: Type.Optional(Type.Number({ minimum: -20, maximum: 20, default: 1, description: 'Strength s in W + s·(α/r)·B·A.' })),
    te: Type.Optional(Type.Number({ minimum: -20, maximum: 20, description: 'Strength on the text encoder (default: weight).' })),
    unet: Type.Optional(Type.Number({ minimum: -20, maximum: 20, description: 'Strength on the UNet (default: weight).' })),
    blocks: Type.Optional(
      Type.Record(Type.String({ pattern: '^[A-Za-z0-9_]{1,16}$' }), Type.Number({ minimum: -20, maximum: 20 }), {
        description: 'UNet block weights: in/mid/out or BASE, IN00…IN11, M00, OUT00…OUT11 (A1111 LoRA Block Weight ids).',
      }),
    ),
  },
  { additionalProperties: false },
);

/** Fields every render-taking native body shares (the OpenAI route accepts them as extensions). */
export const renderFields = {
  negative_prompt: Type.Optional(Type.String({ default: '' })),
  loras: Type.Optional(Type.Array(LoraSpecSchema, { maxItems: 64 })),
  sampler: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'euler_a, dpmpp_2m, … or A1111 names ("DPM++ 2M Karras"). GET /v1/samplers lists them.' })),
  scheduler: Type.Optional(Type.String({ maxLength: 64, description: 'automatic, karras, exponential, … GET /v1/samplers lists them.' })),
  steps: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
  cfg_scale: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
  seed: Type.Optional(Type.Integer({ minimum: -1, maximum: MAX_SEED, description: '-1 picks a random seed; image k of a batch uses seed + k.' })),
  rng: Type.Optional(Type.Union([Type.Literal('cpu'), Type.Literal('nv')], { description: "Noise source: torch CPU (default) or A1111's NV (GPU-equivalent philox)." })),
  clip_skip: Type.Optional(Type.Integer({ minimum: 1, maximum: 12, description: "A1111's Clip skip (1 = last layer)." })),
  emphasis: Type.Optional(Type.Union([Type.Literal('Original'), Type.Literal('No norm'), Type.Literal('Ignore')])),
  flavor: Type.Optional(
    Type.Union([Type.Literal('native'), Type.Literal('a1111')], {
      description: "'a1111' makes 'automatic' schedules and the noise table match A1111 (what /sdapi routes use).",
    }),
  ),
  preview_every: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000, description: 'Preview every N steps in the job events (0 = none).' })),
};

export const ImagesBody = Type.Object(
  {
    prompt: Type.String(),
    ...renderFields,
    width: Type.Optional(Type.Integer({ minimum: 8, maximum: 16384 })),
    height: Type.Optional(Type.Integer({ minimum: 8, maximum: 16384 })),
    batch_size: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  },
  { additionalProperties: false },
);
export type ImagesBody = Static<typeof ImagesBody>;

type RenderFieldValues = { [K in keyof typeof renderFields]?: Static<(typeof renderFields)[K]> };

/** Native fields (with the server's defaults) → RenderRequest. Seed -1 is left for checkRenderRequest's caller. */
export function nativeRenderRequest(
  body: RenderFieldValues & { prompt: string },
  size: { width?: number; height?: number; batchSize?: number },
  config: ServerConfig,
  seed: number,
): RenderRequest {
  const d = config.defaults;
  return withoutUndefined({
    prompt: body.prompt,
    negativePrompt: body.negative_prompt ?? '',
    steps: body.steps ?? d.steps,
    cfgScale: body.cfg_scale ?? d.cfgScale,
    sampler: body.sampler ?? d.sampler,
    scheduler: body.scheduler ?? d.scheduler,
    flavor: body.flavor ?? 'native',
    seed,
    rng: body.rng ?? d.rng,
    width: size.width ?? d.width,
    height: size.height ?? d.height,
    batchSize: size.batchSize ?? 1,
    loras: body.loras?.map((l) => withoutUndefined({ name: l.name, weight: l.weight ?? 1, te: l.te, unet: l.unet, blocks: l.blocks })),
    clipSkip: body.clip_skip,
    emphasis: body.emphasis,
    previewEvery: body.preview_every ?? (config.previewEvery > 0 ? config.previewEvery : undefined),
  });
}

/** Drops keys whose value is undefined (records and logs then show only what was set). */
export function withoutUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] === undefined) delete o[k];
  return o;
}
