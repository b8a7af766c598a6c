/**
 * Checks every API's parsed request goes through before it is queued, so that a bad request is a 400 at once
 * (naming the field) instead of a job that fails later: configured limits, sampler and schedule names, the
 * loaded model's size step, and the LoRAs named.
 */
import { LoraserveError } from '../../core/errors.js';
import { resolveSampling, type ResolvedSampling } from '../../diffusion/registry.js';
import { parseSeed, randomSeed } from '../../diffusion/rng/index.js';
import type { LoraSpec, RenderRequest } from '../../engine/request.js';
import type { ModelInfo } from '../../jobs/queue.js';
import type { ServerContext } from '../context.js';

/** A user seed (-1 = random, A1111 style) → the seed the job runs with. */
export function resolveSeed(x: unknown): number {
  const s = parseSeed(x);
  return s === -1 ? randomSeed() : s;
}

/** The loaded model, or MODEL_NOT_LOADED while the worker is still starting. */
export async function loadedModel(ctx: ServerContext): Promise<ModelInfo> {
  const [model] = await ctx.queue.models();
  if (!model) throw new LoraserveError('MODEL_NOT_LOADED', 'the model is still loading; retry shortly', { retryAfterSeconds: 5 });
  return model;
}

/** A LoRA name names a file in the LoRA folder by its stem: never a path. */
export function checkLoraName(name: string, field = 'name'): string {
  if (name.trim() === '' || /[/\\\0]/.test(name) || name.includes('..')) {
    throw new LoraserveError('INVALID_ARGUMENT', `LoRA name '${name}' may not be empty or contain '/', '\\' or '..'`, { field, name });
  }
  return name;
}

async function checkLoras(ctx: ServerContext, loras: LoraSpec[]): Promise<void> {
  if (loras.length > ctx.config.limits.maxLoras) {
    throw new LoraserveError('INVALID_ARGUMENT', `${loras.length} LoRAs in one request; the limit is ${ctx.config.limits.maxLoras}`, { field: 'loras' });
  }
  for (const [i, l] of loras.entries()) {
    checkLoraName(l.name, `loras[${i}].name`);
    const found = ctx.loras ? await ctx.loras.find(l.name) : undefined;
    if (!found) {
      const suggestions = (await ctx.loras?.suggest?.(l.name)) ?? [];
      const hint = !ctx.loras ? ' (this server has no LoRA folder)' : suggestions.length ? `; did you mean ${suggestions.join(', ')}?` : '';
      throw new LoraserveError('UNKNOWN_LORA', `unknown LoRA '${l.name}'${hint}`, { name: l.name, field: `loras[${i}].name`, suggestions });
    }
  }
}

/**
 * Checks a parsed request against the limits, the sampler registry and the loaded model. Returns the resolved
 * sampling (A1111's labels for the response's info).
 */
export async function checkRenderRequest(ctx: ServerContext, req: RenderRequest, fields: { steps?: string; batch?: string } = {}): Promise<ResolvedSampling> {
  const L = ctx.config.limits;
  const problems: string[] = [];
  if (req.prompt.length > L.maxPromptChars) problems.push(`prompt has ${req.prompt.length} characters; the limit is ${L.maxPromptChars}`);
  if (req.negativePrompt.length > L.maxPromptChars) problems.push(`negative_prompt has ${req.negativePrompt.length} characters; the limit is ${L.maxPromptChars}`);
  if (req.steps > L.maxSteps) problems.push(`${fields.steps ?? 'steps'} ${req.steps} is over the limit of ${L.maxSteps}`);
  if (req.batchSize > L.maxBatch) problems.push(`${fields.batch ?? 'batch_size'} ${req.batchSize} is over the limit of ${L.maxBatch}`);
  if (problems.length) throw new LoraserveError('INVALID_ARGUMENT', problems.join('; '), { problems });

  const sizeProblems: string[] = [];
  if (req.width > L.maxWidth) sizeProblems.push(`width ${req.width} is over the limit of ${L.maxWidth}`);
  if (req.height > L.maxHeight) sizeProblems.push(`height ${req.height} is over the limit of ${L.maxHeight}`);
  if (req.width * req.height > L.maxPixels) sizeProblems.push(`${req.width}x${req.height} is over the limit of ${L.maxPixels} pixels`);
  const sampling = resolveSampling({ sampler: req.sampler, scheduler: req.scheduler, flavor: req.flavor });
  const model = await loadedModel(ctx);
  const m = model.sizeMultiple;
  for (const [k, v] of [['width', req.width], ['height', req.height]] as const) {
    if (v % m !== 0) sizeProblems.push(`${k} ${v} is not a multiple of ${m} for this model (nearest: ${Math.max(m, Math.round(v / m) * m)})`);
  }
  if (sizeProblems.length) throw new LoraserveError('INVALID_SIZE', sizeProblems.join('; '), { problems: sizeProblems, sizeMultiple: m });
  if (req.loras?.length) await checkLoras(ctx, req.loras);
  return sampling;
}
