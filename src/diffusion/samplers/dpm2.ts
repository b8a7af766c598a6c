/**
 * DPM2 (k-diffusion's "DPM-Solver-2 inspired" sampler): a midpoint step, the model evaluated again at the
 * geometric mean of σ_i and σ_{i+1}; plain Euler on the last step to σ = 0. Two model calls per step.
 * A1111 runs it with one extra step and the next-to-last σ discarded (registry.ts).
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py sample_dpm_2 (s_churn = 0; no churn draws).
 */
import type { Sampler } from '../types.js';
import { derivative, stepCount, throwIfCancelled } from './common.js';

export const sampleDpm2: Sampler = async ({ x: x0, plan, denoise, onStep, signal }) => {
  const n = stepCount(plan);
  const { sigmas } = plan;
  let x = x0;
  for (let i = 0; i < n; i++) {
    throwIfCancelled(signal);
    const sigma = sigmas[i];
    const sigmaNext = sigmas[i + 1];
    const denoised = await denoise(x, sigma, i);
    const d = derivative(x, denoised, sigma);
    const next = new Float32Array(x.length);
    if (sigmaNext === 0) {
      for (let j = 0; j < x.length; j++) next[j] = x[j] + d[j] * (sigmaNext - sigma);
    } else {
      const sigmaMid = Math.exp((Math.log(sigma) + Math.log(sigmaNext)) / 2);
      const x2 = new Float32Array(x.length);
      for (let j = 0; j < x.length; j++) x2[j] = x[j] + d[j] * (sigmaMid - sigma);
      throwIfCancelled(signal);
      const denoised2 = await denoise(x2, sigmaMid, i);
      for (let j = 0; j < x.length; j++) next[j] = x[j] + ((x2[j] - denoised2[j]) / sigmaMid) * (sigmaNext - sigma);
    }
    x = next;
    await onStep?.(i, n, x, denoised);
  }
  return x;
};
