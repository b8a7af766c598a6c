/**
 * DPM-Solver++(3M) SDE: third-order multistep with η-weighted noise; the last step to σ = 0 returns the
 * denoised x0. A1111 runs it on Exponential with the next-to-last σ discarded (registry.ts).
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py sample_dpmpp_3m_sde (η = 1). Noise: the
 * image generator's next draw per step with σ_{i+1} > 0 instead of k-diffusion's Brownian tree (same process,
 * not A1111's bits).
 */
import type { Sampler } from '../types.js';
import { checkNoise, stepCount, throwIfCancelled } from './common.js';

export const sampleDpmpp3mSde: Sampler = async ({ x: x0, plan, denoise, nextNoise, onStep, signal, eta = 1 }) => {
  const n = stepCount(plan);
  const { sigmas } = plan;
  let x = x0;
  let d1: Float32Array | null = null; // denoised of the previous step
  let d2: Float32Array | null = null; // and the one before
  let h1 = 0;
  let h2 = 0;
  for (let i = 0; i < n; i++) {
    throwIfCancelled(signal);
    const sigma = sigmas[i];
    const sigmaNext = sigmas[i + 1];
    const denoised = await denoise(x, sigma, i);
    const next = new Float32Array(x.length);
    let h = 0;
    if (sigmaNext === 0) {
      next.set(denoised);
    } else {
      h = Math.log(sigma) - Math.log(sigmaNext);
      const hEta = h * (eta + 1);
      const a = Math.exp(-hEta);
      const b = -Math.expm1(-hEta);
      const phi2 = Math.expm1(-hEta) / hEta + 1;
      const phi3 = phi2 / hEta - 0.5;
      const noise = eta ? checkNoise(nextNoise(), x.length) : null;
      const noiseScale = eta ? sigmaNext * Math.sqrt(-Math.expm1(-2 * h * eta)) : 0;
      for (let j = 0; j < x.length; j++) {
        let v = a * x[j] + b * denoised[j];
        if (d1 && d2) {
          const r0 = h1 / h;
          const r1 = h2 / h;
          const d10 = (denoised[j] - d1[j]) / r0;
          const d11 = (d1[j] - d2[j]) / r1;
          const dd1 = d10 + ((d10 - d11) * r0) / (r0 + r1);
          const dd2 = (d10 - d11) / (r0 + r1);
          v += phi2 * dd1 - phi3 * dd2;
        } else if (d1) {
          v += phi2 * ((denoised[j] - d1[j]) / (h1 / h));
        }
        if (noise) v += noise[j] * noiseScale;
        next[j] = v;
      }
    }
    d2 = d1;
    d1 = denoised;
    h2 = h1;
    h1 = h;
    x = next;
    await onStep?.(i, n, x, denoised);
  }
  return x;
};
