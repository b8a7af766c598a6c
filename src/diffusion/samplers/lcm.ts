/**
 * LCM (latent consistency models, e.g. LCM-LoRA): jump to the model's x0, then re-noise to σ_{i+1} with a
 * fresh draw; the last step to σ = 0 returns the x0.
 *
 * Upstream: comfyanonymous/ComfyUI comfy/k_diffusion/sampling.py sample_lcm (also A1111 v1.8+
 * modules/sd_samplers_lcm.py sample_lcm). A1111's LCM additionally wraps the model in LCMCompVisDenoiser
 * (LCM boundary-condition scalings, its own 50-step timestep grid); that part is not reproduced, so pair this
 * sampler with an LCM model/LoRA and a short schedule (sgm_uniform is the usual choice).
 */
import type { Sampler } from '../types.js';
import { checkNoise, stepCount, throwIfCancelled } from './common.js';

export const sampleLcm: Sampler = async ({ x: x0, plan, denoise, nextNoise, onStep, signal }) => {
  const n = stepCount(plan);
  const { sigmas } = plan;
  let x = x0;
  for (let i = 0; i < n; i++) {
    throwIfCancelled(signal);
    const denoised = await denoise(x, sigmas[i], i);
    const next = Float32Array.from(denoised);
    const sigmaNext = sigmas[i + 1];
    if (sigmaNext > 0) {
      const noise = checkNoise(nextNoise(), x.length);
      for (let j = 0; j < x.length; j++) next[j] += sigmaNext * noise[j];
    }
    x = next;
    await onStep?.(i, n, x, denoised);
  }
  return x;
};
