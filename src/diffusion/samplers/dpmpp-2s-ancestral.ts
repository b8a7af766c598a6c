/**
 * DPM-Solver++(2S) ancestral ("DPM++ 2S a"): a single-step second-order DPM-Solver++ step (midpoint in
 * λ = −log σ) down to σ_down, then fresh noise of σ_up. Two model calls per step; the last step is Euler.
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py sample_dpmpp_2s_ancestral (η = 1). The
 * noise is the image generator's next draw, after every step with σ_{i+1} > 0.
 */
import type { Sampler } from '../types.js';
import { ancestralStep, checkNoise, stepCount, throwIfCancelled } from './common.js';

export const sampleDpmpp2sAncestral: Sampler = async ({ x: x0, plan, denoise, nextNoise, onStep, signal, eta = 1 }) => {
  const n = stepCount(plan);
  const { sigmas } = plan;
  let x = x0;
  for (let i = 0; i < n; i++) {
    throwIfCancelled(signal);
    const sigma = sigmas[i];
    const denoised = await denoise(x, sigma, i);
    const { down, up } = ancestralStep(sigma, sigmas[i + 1], eta);
    const next = new Float32Array(x.length);
    if (down === 0) {
      for (let j = 0; j < x.length; j++) next[j] = x[j] + ((x[j] - denoised[j]) / sigma) * (down - sigma);
    } else {
      const h = Math.log(sigma) - Math.log(down);
      const sigmaS = Math.exp(-(-Math.log(sigma) + h / 2));
      const x2 = new Float32Array(x.length);
      const c1 = -Math.expm1(-h / 2);
      for (let j = 0; j < x.length; j++) x2[j] = (sigmaS / sigma) * x[j] + c1 * denoised[j];
      throwIfCancelled(signal);
      const denoised2 = await denoise(x2, sigmaS, i);
      const c2 = -Math.expm1(-h);
      for (let j = 0; j < x.length; j++) next[j] = (down / sigma) * x[j] + c2 * denoised2[j];
    }
    if (sigmas[i + 1] > 0) {
      const noise = checkNoise(nextNoise(), x.length);
      for (let j = 0; j < x.length; j++) next[j] += noise[j] * up;
    }
    x = next;
    await onStep?.(i, n, x, denoised);
  }
  return x;
};
