/**
 * DPM-Solver++ (stochastic, "DPM++ SDE"): two stochastic half steps in λ = −log σ per step (r = 1/2), each
 * with ancestral noise; two model calls per step, Euler on the last step to σ = 0.
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py sample_dpmpp_sde (η = 1, r = 1/2).
 * k-diffusion / A1111 take the noise from a torchsde Brownian tree; here each half step takes the image
 * generator's next draw (two per step): the same process, not A1111's bits.
 */
import type { Sampler } from '../types.js';
import { ancestralStep, checkNoise, stepCount, throwIfCancelled } from './common.js';

export const sampleDpmppSde: Sampler = async ({ x: x0, plan, denoise, nextNoise, onStep, signal, eta = 1 }) => {
  const n = stepCount(plan);
  const { sigmas } = plan;
  let x = x0;
  for (let i = 0; i < n; i++) {
    throwIfCancelled(signal);
    const sigma = sigmas[i];
    const sigmaNext = sigmas[i + 1];
    const denoised = await denoise(x, sigma, i);
    const next = new Float32Array(x.length);
    if (sigmaNext === 0) {
      for (let j = 0; j < x.length; j++) next[j] = x[j] + ((x[j] - denoised[j]) / sigma) * (sigmaNext - sigma);
    } else {
      const t = -Math.log(sigma);
      const h = -Math.log(sigmaNext) - t;
      const sigmaS = Math.exp(-(t + h / 2));
      // half step to σ_s
      const a1 = ancestralStep(sigma, sigmaS, eta);
      const x2 = new Float32Array(x.length);
      const noise1 = checkNoise(nextNoise(), x.length);
      const k1 = -Math.expm1(Math.log(a1.down) - Math.log(sigma)); // −expm1(t − s_)
      for (let j = 0; j < x.length; j++) x2[j] = (a1.down / sigma) * x[j] + k1 * denoised[j] + noise1[j] * a1.up;
      throwIfCancelled(signal);
      const denoised2 = await denoise(x2, sigmaS, i);
      // full step to σ_{i+1} with the second evaluation (fac = 1/(2r) = 1)
      const a2 = ancestralStep(sigma, sigmaNext, eta);
      const noise2 = checkNoise(nextNoise(), x.length);
      const k2 = -Math.expm1(Math.log(a2.down) - Math.log(sigma));
      for (let j = 0; j < x.length; j++) next[j] = (a2.down / sigma) * x[j] + k2 * denoised2[j] + noise2[j] * a2.up;
    }
    x = next;
    await onStep?.(i, n, x, denoised);
  }
  return x;
};
