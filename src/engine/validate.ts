/**
 * Checks a render request against the loaded model before any work starts, so a size the exported UNet
 * cannot take is a clear error and not an onnxruntime stack trace from a Concat node.
 */
import { LoraserveError } from '../core/errors.js';
import type { LoadedModel } from './model.js';
import type { RenderRequest } from './request.js';

export function sizeMultiple(model: LoadedModel): number {
  return model.vaeScaleFactor * model.unetSig.latentMultipleOf;
}

export function validateRenderRequest(model: LoadedModel, req: RenderRequest): void {
  const problems: string[] = [];
  const m = sizeMultiple(model);
  for (const [k, v] of [['width', req.width], ['height', req.height]] as const) {
    if (!Number.isInteger(v) || v <= 0) problems.push(`${k} must be a positive integer (got ${v})`);
    else if (v % model.vaeScaleFactor !== 0) problems.push(`${k} ${v} is not a multiple of ${model.vaeScaleFactor}`);
    else if (v % m !== 0) {
      problems.push(
        `${k} ${v} is not a multiple of ${m}: this UNet export was traced with fixed 2x upsamplers, so latent sizes must be multiples of ${model.unetSig.latentMultipleOf} (nearest: ${Math.max(m, Math.round(v / m) * m)})`,
      );
    }
  }
  if (!Number.isInteger(req.steps) || req.steps < 1) problems.push(`steps must be an integer >= 1 (got ${req.steps})`);
  if (!Number.isFinite(req.cfgScale)) problems.push(`cfg_scale must be a finite number (got ${req.cfgScale})`);
  if (!Number.isInteger(req.batchSize) || req.batchSize < 1) problems.push(`batch_size must be an integer >= 1 (got ${req.batchSize})`);
  if (!Number.isSafeInteger(req.seed) || req.seed < 0) problems.push(`seed must be a non-negative integer (got ${req.seed})`);
  if (problems.length) {
    const code = problems.every((p) => /^(width|height)/.test(p)) ? 'INVALID_SIZE' : 'INVALID_ARGUMENT';
    throw new LoraserveError(code, problems.join('; '), { problems });
  }
}
