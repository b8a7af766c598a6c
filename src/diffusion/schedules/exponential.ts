/**
 * Noise levels evenly spaced in log σ from σ_max to σ_min, then 0 (A1111 "Exponential", the Automatic
 * schedule of DPM++ 2M SDE); and its generalisation "Polyexponential" (ramp^ρ in log σ, ρ = 1 by default,
 * which equals Exponential up to rounding).
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py get_sigmas_exponential,
 * get_sigmas_polyexponential, evaluated in float32 as torch does.
 */
import { torchLinspace } from '../torch-math.js';
import type { ScheduleContext, SigmaPlan } from '../types.js';
import { appendZero, checkSteps, makePlan } from './plan.js';

const f = Math.fround;

/** get_sigmas_exponential without the final 0. */
export function exponentialSigmas(n: number, sigmaMin: number, sigmaMax: number): Float64Array {
  return torchLinspace(Math.log(sigmaMax), Math.log(sigmaMin), n, 'float32').map((l) => f(Math.exp(l)));
}

/** get_sigmas_polyexponential without the final 0. */
export function polyexponentialSigmas(n: number, sigmaMin: number, sigmaMax: number, rho = 1): Float64Array {
  const span = f(Math.log(sigmaMax) - Math.log(sigmaMin));
  const logMin = f(Math.log(sigmaMin));
  return torchLinspace(1, 0, n, 'float32').map((r) => f(Math.exp(f(f((rho === 1 ? r : f(r ** rho)) * span) + logMin))));
}

export function exponentialSchedule({ steps, table }: ScheduleContext): SigmaPlan {
  checkSteps(steps, table.sigmas.length);
  return makePlan({ sigmas: appendZero(exponentialSigmas(steps, table.sigmaMin, table.sigmaMax)), table });
}

export function polyexponentialSchedule({ steps, table }: ScheduleContext): SigmaPlan {
  checkSteps(steps, table.sigmas.length);
  return makePlan({ sigmas: appendZero(polyexponentialSigmas(steps, table.sigmaMin, table.sigmaMax)), table });
}
