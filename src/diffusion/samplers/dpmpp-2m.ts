/**
 * DPM-Solver++(2M) (Lu et al. 2022): exponential-integrator steps in λ = −log σ, second order from the
 * previous step's denoised; first order on the first step and on the last step to σ = 0 (which lands on the
 * denoised x0).
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py sample_dpmpp_2m. On a Karras plan this is
 * A1111's "DPM++ 2M" (Automatic) / "DPM++ 2M Karras". It is not diffusers 0.21's DPMSolverMultistepScheduler,
 * which steps on ᾱ at rounded integer timesteps and ends at ᾱ[0].
 */
import type { Sampler } from '../types.js';
import { stepCount, throwIfCancelled } from './common.js';

export const sampleDpmpp2m: Sampler = async ({ x: x0, plan, denoise, onStep, signal }) => {
  const n = stepCount(plan);
  const { sigmas } = plan;
  let x = x0;
  let old: Float32Array | null = null;
  for (let i = 0; i < n; i++) {
    throwIfCancelled(signal);
    const sigma = sigmas[i];
    const sigmaNext = sigmas[i + 1];
    const denoised = await denoise(x, sigma, i);
    const next = new Float32Array(x.length);
    if (sigmaNext === 0) {
      next.set(denoised);
    } else {
      const h = Math.log(sigma) - Math.log(sigmaNext); // t_next − t with t = −log σ
      const ratio = sigmaNext / sigma;
      const c = -Math.expm1(-h);
      if (old === null) {
        for (let j = 0; j < x.length; j++) next[j] = ratio * x[j] + c * denoised[j];
      } else {
        const hLast = Math.log(sigmas[i - 1]) - Math.log(sigma);
        const r = hLast / h;
        const a = 1 + 1 / (2 * r);
        const b = 1 / (2 * r);
        for (let j = 0; j < x.length; j++) next[j] = ratio * x[j] + c * (a * denoised[j] - b * old[j]);
      }
    }
    old = denoised;
    x = next;
    await onStep?.(i, n, x, denoised);
  }
  return x;
};
