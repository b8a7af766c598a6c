/**
 * Between a sampler (σ-space) and the UNet (VP space, timestep-conditioned): the input scaling, the reading
 * of the model output as a denoised x0, and classifier-free guidance.
 *
 * Upstream: crowsonkb/k-diffusion k_diffusion/external.py (DiscreteEpsDDPMDenoiser, CompVisVDenoiser:
 * c_in = 1/√(σ²+1); eps: c_out = −σ, c_skip = 1; v: c_skip = 1/(σ²+1), c_out = −σ/√(σ²+1)), which is what
 * diffusers' EulerDiscreteScheduler.scale_model_input / step compute too.
 */
import type { PredictionType } from './scheduler-config.js';

/** c_in: the UNet sees x·c_in, i.e. the VP latent √ᾱ·x at the σ's ᾱ = 1/(σ²+1). */
export function modelInputScale(sigma: number): number {
  return 1 / Math.sqrt(sigma * sigma + 1);
}

/** x0 from the UNet output at σ: x − σ·ε (epsilon) or x·c_skip + v·c_out (v_prediction). */
export function denoisedFromModelOutput(
  x: Float32Array,
  modelOutput: Float32Array,
  sigma: number,
  predictionType: PredictionType,
  out: Float32Array = new Float32Array(x.length),
): Float32Array {
  if (modelOutput.length !== x.length) throw new RangeError(`model output has ${modelOutput.length} values, x has ${x.length}`);
  if (predictionType === 'epsilon') {
    for (let i = 0; i < x.length; i++) out[i] = x[i] - sigma * modelOutput[i];
  } else {
    const s2 = sigma * sigma + 1;
    const cSkip = 1 / s2;
    const cOut = -sigma / Math.sqrt(s2);
    for (let i = 0; i < x.length; i++) out[i] = x[i] * cSkip + modelOutput[i] * cOut;
  }
  return out;
}

/**
 * Classifier-free guidance: uncond + scale·(cond − uncond), elementwise. Works on ε/v (diffusers guides the
 * model output) or on denoised x0 (A1111 guides the denoised); for the linear readings above the two agree up
 * to rounding.
 */
export function cfgCombine(uncond: Float32Array, cond: Float32Array, scale: number, out: Float32Array = new Float32Array(cond.length)): Float32Array {
  if (uncond.length !== cond.length) throw new RangeError(`uncond has ${uncond.length} values, cond has ${cond.length}`);
  for (let i = 0; i < cond.length; i++) out[i] = uncond[i] + scale * (cond[i] - uncond[i]);
  return out;
}
