/**
 * DPM-Solver++(2M) SDE (midpoint or Heun correction): the 2M step with η-weighted noise injection; the last
 * step to σ = 0 returns the denoised x0.
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py sample_dpmpp_2m_sde (η = 1, s_noise = 1).
 * k-diffusion (and A1111) draw this noise from a torchsde Brownian tree seeded by the image seed; here it is
 * the image generator's next draw, one per step with σ_{i+1} > 0. Brownian increments over disjoint intervals
 * are independent standard normals once normalised, so the sampler is the same process — but not
 * bit-identical to A1111's images.
 */
import type { Sampler, SamplerInput } from '../types.js';
import { checkNoise, stepCount, throwIfCancelled } from './common.js';

export type SdeSolver = 'midpoint' | 'heun';

function dpmpp2mSde(solver: SdeSolver): Sampler {
  return async ({ x: x0, plan, denoise, nextNoise, onStep, signal, eta = 1 }: SamplerInput) => {
    const n = stepCount(plan);
    const { sigmas } = plan;
    let x = x0;
    let old: Float32Array | null = null;
    let hLast = 0;
    for (let i = 0; i < n; i++) {
      throwIfCancelled(signal);
      const sigma = sigmas[i];
      const sigmaNext = sigmas[i + 1];
      const denoised = await denoise(x, sigma, i);
      const next = new Float32Array(x.length);
      if (sigmaNext === 0) {
        next.set(denoised);
      } else {
        const h = Math.log(sigma) - Math.log(sigmaNext);
        const etaH = eta * h;
        const a = (sigmaNext / sigma) * Math.exp(-etaH);
        const b = -Math.expm1(-h - etaH);
        let corr = 0;
        if (old !== null) {
          const r = hLast / h;
          corr = solver === 'heun' ? (b / (-h - etaH) + 1) * (1 / r) : 0.5 * b * (1 / r);
        }
        const noise = eta ? checkNoise(nextNoise(), x.length) : null;
        const noiseScale = eta ? sigmaNext * Math.sqrt(-Math.expm1(-2 * etaH)) : 0;
        for (let j = 0; j < x.length; j++) {
          let v = a * x[j] + b * denoised[j];
          if (old !== null) v += corr * (denoised[j] - old[j]);
          if (noise) v += noise[j] * noiseScale;
          next[j] = v;
        }
        hLast = h;
      }
      old = denoised;
      x = next;
      await onStep?.(i, n, x, denoised);
    }
    return x;
  };
}

export const sampleDpmpp2mSde: Sampler = dpmpp2mSde('midpoint');
export const sampleDpmpp2mSdeHeun: Sampler = dpmpp2mSde('heun');
