/**
 * Building blocks shared by the schedules: the σ → UNet timestep lookup and the step-count check.
 */
import { LoraserveError } from '../../core/errors.js';
import { sigmaToT, type NoiseTable } from '../noise-table.js';
import type { SigmaPlan } from '../types.js';

export function checkSteps(steps: number, trainSteps: number): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > trainSteps) {
    throw new LoraserveError('INVALID_ARGUMENT', `steps must be an integer from 1 to ${trainSteps}, got ${steps}`, { steps });
  }
}

/** Appends σ = 0 (k-diffusion's append_zero). */
export function appendZero(sigmas: ArrayLike<number>): Float64Array {
  const out = new Float64Array(sigmas.length + 1);
  out.set(Array.from(sigmas));
  return out;
}

interface PlanParts {
  sigmas: Float64Array;
  table: NoiseTable;
  /** Scheduled timesteps for sigmas[0..n−1]; absent = sigma_to_t for every σ. */
  timesteps?: ArrayLike<number>;
  initNoiseScale?: number;
  finalScale?: number;
  stepTargets?: Float64Array;
  clipDenoised?: number;
}

/**
 * A plan whose UNet timestep is the scheduled one for the plan's own σ's and k-diffusion's sigma_to_t for
 * any other σ (e.g. a second-order sampler's midpoint).
 */
export function makePlan(p: PlanParts): SigmaPlan {
  const n = p.sigmas.length - 1;
  const scheduled = new Map<number, number>();
  if (p.timesteps) for (let i = 0; i < n; i++) if (!scheduled.has(p.sigmas[i])) scheduled.set(p.sigmas[i], p.timesteps[i]);
  const table = p.table;
  const timestepFor = (sigma: number): number => scheduled.get(sigma) ?? sigmaToT(table, sigma);
  const timesteps = new Float64Array(n);
  for (let i = 0; i < n; i++) timesteps[i] = timestepFor(p.sigmas[i]);
  const plan: SigmaPlan = {
    sigmas: p.sigmas,
    timesteps,
    timestepFor,
    initNoiseScale: p.initNoiseScale ?? p.sigmas[0],
    ...(p.finalScale !== undefined && p.finalScale !== 1 ? { finalScale: p.finalScale } : {}),
    ...(p.stepTargets ? { stepTargets: p.stepTargets } : {}),
    ...(p.clipDenoised !== undefined ? { clipDenoised: p.clipDenoised } : {}),
  };
  return plan;
}

/**
 * A1111's discard_next_to_last_sigma (DPM2, DPM2 a, DPM++ 3M SDE): a plan built for n+1 steps without its
 * next-to-last σ, so the sampler ends with one long step to 0 instead of a tiny one to σ_min.
 * Upstream: AUTOMATIC1111/stable-diffusion-webui v1.9.4 modules/sd_samplers_kdiffusion.py get_sigmas.
 */
export function discardPenultimateSigma(plan: SigmaPlan): SigmaPlan {
  const n = plan.sigmas.length - 1;
  if (n < 2) return plan;
  const sigmas = new Float64Array(n);
  sigmas.set(plan.sigmas.subarray(0, n - 1));
  sigmas[n - 1] = plan.sigmas[n];
  const timesteps = Float64Array.from(sigmas.subarray(0, n - 1), (s) => plan.timestepFor(s));
  return { ...plan, sigmas, timesteps };
}
