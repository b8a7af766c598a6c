/**
 * What every sampler loop shares: cancellation between steps and the step callback.
 */
import { LoraserveError } from '../../core/errors.js';
import type { AbortLike, SigmaPlan } from '../types.js';

export function throwIfCancelled(signal: AbortLike | undefined): void {
  if (signal?.aborted) throw new LoraserveError('CANCELLED', 'sampling cancelled');
}

/** Number of steps in the plan (sigmas has n+1 entries). */
export function stepCount(plan: SigmaPlan): number {
  return Math.max(0, plan.sigmas.length - 1);
}

/** x − denoised over σ: the probability-flow ODE derivative dx/dσ (k-diffusion's to_d). */
export function derivative(x: Float32Array, denoised: Float32Array, sigma: number): Float32Array {
  const d = new Float32Array(x.length);
  for (let j = 0; j < x.length; j++) d[j] = (x[j] - denoised[j]) / sigma;
  return d;
}

/** k-diffusion's get_ancestral_step: the σ to step down to deterministically and the noise σ to add. */
export function ancestralStep(sigmaFrom: number, sigmaTo: number, eta: number): { down: number; up: number } {
  if (!eta) return { down: sigmaTo, up: 0 };
  const up = Math.min(sigmaTo, eta * Math.sqrt((sigmaTo ** 2 * (sigmaFrom ** 2 - sigmaTo ** 2)) / sigmaFrom ** 2));
  return { down: Math.sqrt(sigmaTo ** 2 - up ** 2), up };
}

export function checkNoise(noise: Float32Array, length: number): Float32Array {
  if (noise.length !== length) throw new LoraserveError('INTERNAL', `nextNoise() returned ${noise.length} values, x has ${length}`);
  return noise;
}
