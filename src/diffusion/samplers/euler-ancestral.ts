/**
 * Euler ancestral ("Euler a"): an Euler step down to σ_down, then fresh noise of σ_up, where
 * σ_up = min(σ_{i+1}, η·√(σ_{i+1}²(σ_i² − σ_{i+1}²)/σ_i²)) and σ_down = √(σ_{i+1}² − σ_up²).
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py sample_euler_ancestral and
 * get_ancestral_step (η = 1 = A1111's eta_ancestral default, s_noise 1). The noise is the image generator's
 * next draw, taken exactly when k-diffusion calls randn_like: after every step whose σ_{i+1} > 0, so not after
 * the last step to σ = 0 (A1111: draw 1 is the initial noise, draws 2…n the ancestral noise of steps 1…n−1).
 */
import type { Sampler } from '../types.js';
import { ancestralStep, checkNoise, stepCount, throwIfCancelled } from './common.js';

export const sampleEulerAncestral: Sampler = async ({ x: x0, plan, denoise, nextNoise, onStep, signal, eta = 1 }) => {
  const n = stepCount(plan);
  const { sigmas } = plan;
  let x = x0;
  for (let i = 0; i < n; i++) {
    throwIfCancelled(signal);
    const sigma = sigmas[i];
    const denoised = await denoise(x, sigma, i);
    const { down, up } = ancestralStep(sigma, sigmas[i + 1], eta);
    const dt = down - sigma;
    const next = new Float32Array(x.length);
    for (let j = 0; j < x.length; j++) next[j] = x[j] + ((x[j] - denoised[j]) / sigma) * dt;
    if (sigmas[i + 1] > 0) {
      const noise = checkNoise(nextNoise(), x.length);
      for (let j = 0; j < x.length; j++) next[j] += noise[j] * up;
    }
    x = next;
    await onStep?.(i, n, x, denoised);
  }
  return x;
};
