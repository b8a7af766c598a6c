/**
 * Karras et al. (2022) noise levels: σ_i = (σ_max^(1/ρ) + i/(n−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, ρ = 7, then 0;
 * σ_min/σ_max are the model's σ table ends (A1111's defaults: no `use_old_karras_scheduler_sigmas`, no
 * sigma_min/max/rho overrides). diffusers' `use_karras_sigmas` instead takes σ_min from the last
 * *scheduled* timestep; this follows k-diffusion / A1111.
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py get_sigmas_karras, evaluated as torch
 * does: ramp = float32 linspace(0, 1, n), the Python-float constants cast to float32, float32 ops.
 */
import { torchLinspace } from '../torch-math.js';
import type { ScheduleContext, SigmaPlan } from '../types.js';
import { appendZero, checkSteps, makePlan } from './plan.js';

const f = Math.fround;

/** get_sigmas_karras without the final 0 (float32 values). */
export function karrasSigmas(n: number, sigmaMin: number, sigmaMax: number, rho = 7): Float64Array {
  const ramp = torchLinspace(0, 1, n, 'float32');
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  const span = f(minInvRho - maxInvRho);
  const base = f(maxInvRho);
  return ramp.map((r) => f(f(base + f(r * span)) ** rho));
}

export function karrasSchedule({ steps, table }: ScheduleContext): SigmaPlan {
  checkSteps(steps, table.sigmas.length);
  return makePlan({ sigmas: appendZero(karrasSigmas(steps, table.sigmaMin, table.sigmaMax)), table });
}
