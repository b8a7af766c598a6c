/**
 * A1111 "SGM Uniform" (SDXL-Turbo / LCM style): n timesteps evenly spaced from sigma_to_t(σ_max) to
 * sigma_to_t(σ_min) over n+1 points with the last dropped, each mapped back to σ, then 0. Unlike Uniform it
 * never evaluates the model at σ_min.
 *
 * Upstream: AUTOMATIC1111/stable-diffusion-webui v1.9.4 modules/sd_schedulers.py `sgm_uniform`.
 */
import { sigmaToT, tToSigma } from '../noise-table.js';
import { torchLinspace } from '../torch-math.js';
import type { ScheduleContext, SigmaPlan } from '../types.js';
import { appendZero, checkSteps, makePlan } from './plan.js';

export function sgmUniformSchedule({ steps, table }: ScheduleContext): SigmaPlan {
  checkSteps(steps, table.sigmas.length);
  const start = sigmaToT(table, table.sigmaMax);
  const end = sigmaToT(table, table.sigmaMin);
  const t = torchLinspace(start, end, steps + 1, 'float32').subarray(0, steps);
  return makePlan({ sigmas: appendZero(Array.from(t, (ti) => tToSigma(table, ti))), table });
}
