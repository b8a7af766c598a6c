/**
 * A1111's "Uniform" (= "Automatic" for Euler, Euler a, LMS, Heun): k-diffusion's model.get_sigmas(n), n
 * timesteps evenly spaced from N−1 to 0 (float32 torch.linspace), mapped to σ by log-linear interpolation of
 * the σ table, then 0.
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/external.py DiscreteSchedule.get_sigmas / t_to_sigma;
 * AUTOMATIC1111/stable-diffusion-webui v1.9.4 modules/sd_schedulers.py `uniform`.
 */
import { tToSigma } from '../noise-table.js';
import { torchLinspace } from '../torch-math.js';
import type { ScheduleContext, SigmaPlan } from '../types.js';
import { appendZero, checkSteps, makePlan } from './plan.js';

export function uniformSchedule({ steps, table }: ScheduleContext): SigmaPlan {
  const N = table.sigmas.length;
  checkSteps(steps, N);
  const t = torchLinspace(N - 1, 0, steps, 'float32');
  return makePlan({ sigmas: appendZero(Array.from(t, (ti) => tToSigma(table, ti))), table });
}
