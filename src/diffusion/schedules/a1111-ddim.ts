/**
 * The timesteps A1111's DDIM sampler walks (it ignores the Schedule type): T = range(0, N, N // n) + 1,
 * clipped to N−1, visited from T[last] down to T[1], each step going to ᾱ[T[k−1]]; the result is the VP
 * latent at ᾱ[T[0]] = ᾱ[1]. So n requested steps make len(T) − 1 model calls: 7 for 8 steps
 * (1000 // 8 = 125 → T has 8 entries), 7 for 7 steps (T = 0, 142, …, 994 → 8 entries).
 *
 * Upstream: AUTOMATIC1111/stable-diffusion-webui v1.9.4 modules/sd_samplers_timesteps.py
 * (CompVisSampler.get_timesteps) and modules/sd_samplers_timesteps_impl.py (`ddim`: alphas_prev from
 * timesteps padded with 0, loop `for i in range(len(timesteps) - 1)`).
 */
import { LoraserveError } from '../../core/errors.js';
import type { ScheduleContext, SigmaPlan } from '../types.js';
import { checkSteps, makePlan } from './plan.js';

export function a1111DdimTimesteps(steps: number, trainSteps: number): number[] {
  checkSteps(steps, trainSteps);
  const T: number[] = [];
  for (let t = 0; t < trainSteps; t += Math.floor(trainSteps / steps)) T.push(Math.min(t + 1, trainSteps - 1));
  return T;
}

export function a1111DdimSchedule({ steps, table }: ScheduleContext): SigmaPlan {
  const T = a1111DdimTimesteps(steps, table.sigmas.length);
  if (T.length < 2) throw new LoraserveError('INVALID_ARGUMENT', `A1111's DDIM makes no model call at ${steps} step(s); use at least 2 steps`, { steps });
  const visited = T.slice().reverse(); // T[last] … T[0]; the last one is only the landing point
  const sigmas = Float64Array.from(visited, (t) => table.sigmas[t]);
  const n = sigmas.length - 1;
  return makePlan({
    sigmas,
    table,
    timesteps: visited.slice(0, n),
    initNoiseScale: Math.sqrt(sigmas[0] * sigmas[0] + 1),
    finalScale: 1 / Math.sqrt(sigmas[n] * sigmas[n] + 1),
  });
}
