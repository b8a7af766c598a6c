/**
 * DDIM with η = 0 (Song et al. 2020), in σ-space.
 *
 * A deterministic DDIM step x_{t'} = √ᾱ'·x0 + √(1−ᾱ')·ε reads, after dividing by √ᾱ', as
 * x_{σ'} = x0 + σ'·ε with ε = (x_σ − x0)/σ: an Euler step. So on a k-diffusion plan this sampler is Euler.
 * On diffusers' discrete plan (mode 'ddim') and A1111's DDIM timesteps the plan carries what DDIM adds:
 * the start scale (unit VP noise), `stepTargets` where diffusers steps to ᾱ[t − N/n] instead of the next
 * planned timestep (the VP latent is then re-read at the next σ), `clipDenoised` (clip_sample) and the final
 * σ(ᾱ_final) with `finalScale` back to VP latents.
 *
 * Upstream: huggingface/diffusers v0.21.4 src/diffusers/schedulers/scheduling_ddim.py (DDIMScheduler.step,
 * eta 0, use_clipped_model_output false); AUTOMATIC1111/stable-diffusion-webui v1.9.4
 * modules/sd_samplers_timesteps_impl.py `ddim` (eta_ddim 0).
 */
import type { Sampler } from '../types.js';
import { stepCount, throwIfCancelled } from './common.js';

export const sampleDdim: Sampler = async ({ x: x0, plan, denoise, onStep, signal }) => {
  const n = stepCount(plan);
  const { sigmas, stepTargets, clipDenoised } = plan;
  let x = x0;
  for (let i = 0; i < n; i++) {
    throwIfCancelled(signal);
    const sigma = sigmas[i];
    const denoised = await denoise(x, sigma, i);
    const target = stepTargets ? stepTargets[i] : sigmas[i + 1];
    // Re-read the VP latent reached at `target` as the σ-space latent at sigmas[i+1].
    const rescale = target === sigmas[i + 1] ? 1 : Math.sqrt(sigmas[i + 1] ** 2 + 1) / Math.sqrt(target ** 2 + 1);
    const next = new Float32Array(x.length);
    for (let j = 0; j < x.length; j++) {
      const eps = (x[j] - denoised[j]) / sigma;
      const x0j = clipDenoised === undefined ? denoised[j] : Math.min(clipDenoised, Math.max(-clipDenoised, denoised[j]));
      next[j] = (x0j + target * eps) * rescale;
    }
    x = next;
    await onStep?.(i, n, x, denoised);
  }
  return x;
};
