/**
 * ComfyUI's / A1111 1.10's "Simple": every (N/n)-th entry of the σ table from the top, then 0.
 *
 * Upstream: AUTOMATIC1111/stable-diffusion-webui modules/sd_schedulers.py `simple_scheduler` (v1.10.0), after
 * comfyanonymous/ComfyUI comfy/samplers.py simple_scheduler.
 */
import type { ScheduleContext, SigmaPlan } from '../types.js';
import { appendZero, checkSteps, makePlan } from './plan.js';

export function simpleSchedule({ steps, table }: ScheduleContext): SigmaPlan {
  const N = table.sigmas.length;
  checkSteps(steps, N);
  const ss = N / steps;
  const sigmas = Array.from({ length: steps }, (_, x) => table.sigmas[N - 1 - Math.trunc(x * ss)]);
  return makePlan({ sigmas: appendZero(sigmas), table });
}
