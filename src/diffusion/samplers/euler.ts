/**
 * Euler (Karras et al. 2022, Algorithm 2 without churn): x ← x + (σ_{i+1} − σ_i)·(x − D(x, σ_i))/σ_i.
 * On a discrete plan this is diffusers' EulerDiscreteScheduler; on Uniform it is A1111's "Euler".
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py sample_euler (s_churn = 0, A1111's
 * default). That commit draws `randn_like(x)` every step and multiplies it by 0 when s_churn = 0; with A1111's
 * one-generator-per-image RNG those draws change nothing the image depends on (nothing draws after the
 * sampler), so they are not made here and `nextNoise` is never called.
 */
import type { Sampler } from '../types.js';
import { stepCount, throwIfCancelled } from './common.js';

export const sampleEuler: Sampler = async ({ x: x0, plan, denoise, onStep, signal }) => {
  const n = stepCount(plan);
  const { sigmas } = plan;
  let x = x0;
  for (let i = 0; i < n; i++) {
    throwIfCancelled(signal);
    const sigma = sigmas[i];
    const denoised = await denoise(x, sigma, i);
    const dt = sigmas[i + 1] - sigma;
    const next = new Float32Array(x.length);
    for (let j = 0; j < x.length; j++) next[j] = x[j] + ((x[j] - denoised[j]) / sigma) * dt;
    x = next;
    await onStep?.(i, n, x, denoised);
  }
  return x;
};
