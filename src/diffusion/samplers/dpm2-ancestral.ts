/**
 * DPM2 ancestral ("DPM2 a"): the DPM2 midpoint step down to σ_down, then fresh noise of σ_up (as Euler a).
 * A1111 runs it with one extra step and the next-to-last σ discarded (registry.ts).
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py sample_dpm_2_ancestral (η = 1). The noise
 * is the image generator's next draw, taken where k-diffusion draws it: after every step with σ_down > 0.
 */
import type { Sampler } from '../types.js';
import { ancestralStep, checkNoise, derivative, stepCount, throwIfCancelled } from './common.js';

export const sampleDpm2Ancestral: Sampler = async ({ x: x0, plan, denoise, nextNoise, onStep, signal, eta = 1 }) => {
  const n = stepCount(plan);
  const { sigmas } = plan;
  let x = x0;
  for (let i = 0; i < n; i++) {
    throwIfCancelled(signal);
    const sigma = sigmas[i];
    const denoised = await denoise(x, sigma, i);
    const { down, up } = ancestralStep(sigma, sigmas[i + 1], eta);
    const d = derivative(x, denoised, sigma);
    const next = new Float32Array(x.length);
    if (down === 0) {
      for (let j = 0; j < x.length; j++) next[j] = x[j] + d[j] * (down - sigma);
    } else {
      const sigmaMid = Math.exp((Math.log(sigma) + Math.log(down)) / 2);
      const x2 = new Float32Array(x.length);
      for (let j = 0; j < x.length; j++) x2[j] = x[j] + d[j] * (sigmaMid - sigma);
      throwIfCancelled(signal);
      const denoised2 = await denoise(x2, sigmaMid, i);
      const noise = checkNoise(nextNoise(), x.length);
      for (let j = 0; j < x.length; j++) {
        next[j] = x[j] + ((x2[j] - denoised2[j]) / sigmaMid) * (down - sigma) + noise[j] * up;
      }
    }
    x = next;
    await onStep?.(i, n, x, denoised);
  }
  return x;
};
