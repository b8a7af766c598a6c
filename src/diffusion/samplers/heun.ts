/**
 * Heun (Karras et al. 2022, Algorithm 2 without churn): an Euler predictor to σ_{i+1}, a second model call
 * there, and the averaged slope; the last step to σ = 0 is plain Euler. Two model calls per step.
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py sample_heun (s_churn = 0; its unused churn
 * draws are not made, as in euler.ts).
 */
import type { Sampler } from '../types.js';
import { derivative, stepCount, throwIfCancelled } from './common.js';

export const sampleHeun: Sampler = async ({ x: x0, plan, denoise, onStep, signal }) => {
  const n = stepCount(plan);
  const { sigmas } = plan;
  let x = x0;
  for (let i = 0; i < n; i++) {
    throwIfCancelled(signal);
    const sigma = sigmas[i];
    const sigmaNext = sigmas[i + 1];
    const denoised = await denoise(x, sigma, i);
    const d = derivative(x, denoised, sigma);
    const dt = sigmaNext - sigma;
    const next = new Float32Array(x.length);
    if (sigmaNext === 0) {
      for (let j = 0; j < x.length; j++) next[j] = x[j] + d[j] * dt;
    } else {
      const x2 = new Float32Array(x.length);
      for (let j = 0; j < x.length; j++) x2[j] = x[j] + d[j] * dt;
      throwIfCancelled(signal);
      const denoised2 = await denoise(x2, sigmaNext, i);
      for (let j = 0; j < x.length; j++) {
        const d2 = (x2[j] - denoised2[j]) / sigmaNext;
        next[j] = x[j] + ((d[j] + d2) / 2) * dt;
      }
    }
    x = next;
    await onStep?.(i, n, x, denoised);
  }
  return x;
};
