/**
 * diffusers' own step schedule for a config: `set_timesteps(n)` with the config's timestep_spacing and
 * steps_offset, on diffusers' float32 noise table.
 *
 * Upstream: huggingface/diffusers v0.21.4 src/diffusers/schedulers/scheduling_euler_discrete.py
 * (set_timesteps, init_noise_sigma) and scheduling_ddim.py (set_timesteps, step's prev_timestep and
 * final_alpha_cumprod). Two modes, because the two classes end differently:
 *  - 'euler' (EulerDiscreteScheduler, also what every σ-space sampler gets): σ(t) at the scheduled timesteps
 *    (np.interp of the σ table, exact at integer t), then 0. init_noise_sigma is σ_max for linspace/trailing
 *    spacing and √(σ_max²+1) for leading.
 *  - 'ddim' (DDIMScheduler, eta 0): the same timesteps (integers; linspace spacing rounds), each step going to
 *    ᾱ[t − N/n] — or final_alpha_cumprod (1 with set_alpha_to_one, else ᾱ[0]) below 0 — and the result is the
 *    VP latent at that ᾱ. In σ-space: start at noise·√(σ_0²+1) (diffusers starts from unit noise in VP space),
 *    Euler steps to σ(ᾱ_prev), end at σ_final with finalScale = √ᾱ_final.
 */
import { LoraserveError } from '../../core/errors.js';
import { sigmaFromAlphaCumprod } from '../noise-table.js';
import type { ScheduleContext, SigmaPlan } from '../types.js';
import { appendZero, checkSteps, makePlan } from './plan.js';

export type DiscreteMode = 'euler' | 'ddim';

const f = Math.fround;

/** numpy's round (np.rint): half to even. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.linspace(start, stop, num) in float64: i·step + start, the last value set to stop. */
function numpyLinspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const div = num - 1;
  const step = div > 0 ? (stop - start) / div : 0;
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) for float64: length ceil((stop−start)/step); start + i·(second − start). */
function numpyArange(start: number, stop: number, step: number): Float64Array {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Float64Array(len);
  if (len === 0) return out;
  out[0] = start;
  if (len > 1) {
    const delta = start + step - start;
    for (let i = 1; i < len; i++) out[i] = start + i * delta;
  }
  return out;
}

/**
 * diffusers' `scheduler.timesteps` after set_timesteps(steps), descending. 'euler' gives EulerDiscrete's
 * float32 values (fractional for linspace spacing), 'ddim' DDIMScheduler's integers.
 */
export function diffusersTimesteps(ctx: Pick<ScheduleContext, 'steps' | 'config'>, mode: DiscreteMode): Float64Array {
  const { steps: n, config } = ctx;
  const N = config.numTrainTimesteps;
  checkSteps(n, N);
  switch (config.timestepSpacing) {
    case 'linspace': {
      const lin = numpyLinspace(0, N - 1, n).reverse();
      return mode === 'euler' ? lin.map(f) : lin.map(roundHalfEven);
    }
    case 'leading': {
      const ratio = Math.floor(N / n);
      return Float64Array.from({ length: n }, (_, k) => (n - 1 - k) * ratio + config.stepsOffset);
    }
    case 'trailing':
      return numpyArange(N, 0, -N / n).map((t) => roundHalfEven(t) - 1);
  }
}

/** np.interp(t, arange(N), table) — exact at integer t. */
function interpSigma(table: Float64Array, t: number): number {
  if (t <= 0) return table[0];
  if (t >= table.length - 1) return table[table.length - 1];
  const j = Math.floor(t);
  return (table[j + 1] - table[j]) * (t - j) + table[j];
}

export function discreteSchedule(ctx: ScheduleContext, mode: DiscreteMode = 'euler'): SigmaPlan {
  const { config, table } = ctx;
  const timesteps = diffusersTimesteps(ctx, mode);
  const n = timesteps.length;
  if (mode === 'euler') {
    const sigmas = appendZero(Array.from(timesteps, (t) => f(interpSigma(table.sigmas, t))));
    const max = sigmas[0];
    const initNoiseScale = config.timestepSpacing === 'leading' ? f(Math.sqrt(f(f(max * max) + 1))) : max;
    return makePlan({ sigmas, table, timesteps, initNoiseScale });
  }
  const finalAlpha = config.setAlphaToOne ? 1 : table.alphasCumprod[0];
  const ratio = Math.floor(config.numTrainTimesteps / ctx.steps);
  const sigmas = new Float64Array(n + 1);
  const targets = new Float64Array(n);
  let rescales = false;
  for (let i = 0; i < n; i++) {
    if (timesteps[i] > config.numTrainTimesteps - 1) {
      throw new LoraserveError('INVALID_ARGUMENT', `DDIM: steps_offset ${config.stepsOffset} puts timestep ${timesteps[i]} past the model's ${config.numTrainTimesteps} training steps at ${ctx.steps} steps`);
    }
    sigmas[i] = table.sigmas[timesteps[i]];
    const prev = timesteps[i] - ratio;
    targets[i] = sigmaFromAlphaCumprod(prev >= 0 ? table.alphasCumprod[prev] : finalAlpha);
  }
  sigmas[n] = targets[n - 1];
  for (let i = 0; i < n - 1; i++) if (targets[i] !== sigmas[i + 1]) rescales = true;
  return makePlan({
    sigmas,
    table,
    timesteps,
    initNoiseScale: Math.sqrt(sigmas[0] * sigmas[0] + 1),
    finalScale: 1 / Math.sqrt(sigmas[n] * sigmas[n] + 1),
    stepTargets: rescales ? targets : undefined,
    clipDenoised: config.clipSample ? config.clipSampleRange : undefined,
  });
}
