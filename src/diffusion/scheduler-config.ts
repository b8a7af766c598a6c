/**
 * A model's noise schedule, read from a diffusers `scheduler/scheduler_config.json` and validated up front.
 *
 * Upstream: huggingface/diffusers v0.21.4 src/diffusers/schedulers/scheduling_*.py (constructor defaults).
 * Only the fields that define the noise schedule and how the model's output is read matter here: the config's
 * `_class_name` (PNDM, Euler, DDIM, LMS, DPMSolverMultistep, …) picks nothing but the defaults of missing
 * fields, because sampler and schedule are chosen per request.
 *
 * Missing fields take the defaults of the config's own class (so an SD1.5 PNDM config without
 * `timestep_spacing` is "leading", as the pipeline it shipped with ran it). `set_alpha_to_one` and
 * `clip_sample`, which only DDIM-like classes have, fall back to DDIMScheduler's `set_alpha_to_one = true` and
 * to `clip_sample = false` (clipping x0 to [-1, 1] is wrong for every latent-diffusion model; a config that
 * wants it says so).
 */
import { LoraserveError } from '../core/errors.js';

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export type PredictionType = 'epsilon' | 'v_prediction';
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';

export interface SchedulerConfig {
  /** `_class_name` as written (informative only), or null. */
  readonly className: string | null;
  readonly numTrainTimesteps: number;
  readonly betaStart: number;
  readonly betaEnd: number;
  readonly betaSchedule: BetaSchedule;
  /** Explicit betas (`trained_betas`), length numTrainTimesteps; null when the schedule formula is used. */
  readonly trainedBetas: Float64Array | null;
  readonly predictionType: PredictionType;
  readonly timestepSpacing: TimestepSpacing;
  readonly stepsOffset: number;
  /** DDIM: the ᾱ after the last step is 1 (true) or ᾱ[0] (false, SD's configs). */
  readonly setAlphaToOne: boolean;
  /** DDIM: clamp the predicted x0 to ±clipSampleRange. */
  readonly clipSample: boolean;
  readonly clipSampleRange: number;
  /** diffusers' Euler/DPM `use_karras_sigmas`; recorded, not applied: the schedule is chosen per request. */
  readonly useKarrasSigmas: boolean;
}

/** Classes whose `timestep_spacing` defaults to "leading" (all others: "linspace"). */
const LEADING_SPACING = new Set([
  'PNDMScheduler',
  'DDIMScheduler',
  'DDIMParallelScheduler',
  'DDIMInverseScheduler',
  'DDPMScheduler',
  'DDPMParallelScheduler',
  'LCMScheduler',
  'TCDScheduler',
]);
/** Classes whose beta_start/beta_end default to SD's 0.00085/0.012 instead of 0.0001/0.02. */
const SD_BETA_DEFAULTS = new Set(['HeunDiscreteScheduler', 'KDPM2DiscreteScheduler', 'KDPM2AncestralDiscreteScheduler', 'DPMSolverSDEScheduler']);
/** Classes with `clip_sample = true` by default. */
const CLIP_SAMPLE_DEFAULT = new Set(['DDIMScheduler', 'DDIMParallelScheduler', 'DDIMInverseScheduler', 'DDPMScheduler', 'DDPMParallelScheduler', 'LCMScheduler', 'TCDScheduler']);

function invalid(field: string, message: string, value?: unknown): LoraserveError {
  return new LoraserveError('MODEL_INVALID', `scheduler_config.json: ${field} ${message}`, { field, value });
}

type Json = Record<string, unknown>;

function present(j: Json, key: string): boolean {
  return j[key] !== undefined && j[key] !== null;
}

function num(j: Json, key: string, def: number, check: (v: number) => boolean, what: string): number {
  if (!present(j, key)) return def;
  const v = j[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw invalid(key, `must be ${what}`, v);
  return v;
}

function bool(j: Json, key: string, def: boolean): boolean {
  if (!present(j, key)) return def;
  const v = j[key];
  if (typeof v !== 'boolean') throw invalid(key, 'must be true or false', v);
  return v;
}

function oneOf<T extends string>(j: Json, key: string, def: T, allowed: readonly T[]): T {
  if (!present(j, key)) return def;
  const v = j[key];
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw invalid(key, `must be one of ${allowed.map((a) => `"${a}"`).join(', ')}`, v);
  }
  return v as T;
}

/** Validates a parsed scheduler_config.json; throws LoraserveError MODEL_INVALID naming the first bad field. */
export function parseSchedulerConfig(json: unknown): SchedulerConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new LoraserveError('MODEL_INVALID', 'scheduler_config.json must hold a JSON object');
  }
  const j = json as Json;
  const className = typeof j._class_name === 'string' ? j._class_name : null;
  const cls = className ?? '';

  const numTrainTimesteps = num(j, 'num_train_timesteps', 1000, (v) => Number.isInteger(v) && v >= 2 && v <= 100000, 'an integer from 2 to 100000');
  const sdBetas = SD_BETA_DEFAULTS.has(cls);
  const betaStart = num(j, 'beta_start', sdBetas ? 0.00085 : 0.0001, (v) => v > 0 && v < 1, 'a number in (0, 1)');
  const betaEnd = num(j, 'beta_end', sdBetas ? 0.012 : 0.02, (v) => v > 0 && v < 1, 'a number in (0, 1)');
  const betaSchedule = oneOf<BetaSchedule>(j, 'beta_schedule', 'linear', ['linear', 'scaled_linear', 'squaredcos_cap_v2']);

  let trainedBetas: Float64Array | null = null;
  if (present(j, 'trained_betas')) {
    const v = j.trained_betas;
    if (!Array.isArray(v) || v.length !== numTrainTimesteps || !v.every((b) => typeof b === 'number' && b > 0 && b < 1)) {
      throw invalid('trained_betas', `must be null or an array of ${numTrainTimesteps} numbers in (0, 1)`);
    }
    trainedBetas = Float64Array.from(v as number[]);
  }

  if (j.prediction_type === 'sample') {
    throw invalid('prediction_type', 'is "sample" (x0-prediction), which loraserve does not support; use an epsilon or v_prediction model', 'sample');
  }
  const predictionType = oneOf<PredictionType>(j, 'prediction_type', 'epsilon', ['epsilon', 'v_prediction']);
  const timestepSpacing = oneOf<TimestepSpacing>(j, 'timestep_spacing', LEADING_SPACING.has(cls) ? 'leading' : 'linspace', ['leading', 'trailing', 'linspace']);
  const stepsOffset = num(j, 'steps_offset', 0, (v) => Number.isInteger(v) && v >= 0 && v < numTrainTimesteps, `an integer from 0 to ${numTrainTimesteps - 1}`);
  const setAlphaToOne = bool(j, 'set_alpha_to_one', cls !== 'PNDMScheduler');
  const clipSample = bool(j, 'clip_sample', CLIP_SAMPLE_DEFAULT.has(cls));
  const clipSampleRange = num(j, 'clip_sample_range', 1, (v) => v > 0, 'a positive number');
  const useKarrasSigmas = bool(j, 'use_karras_sigmas', false);
  // diffusers' Euler 'log_linear' interpolation only changes its own discrete sigmas; accepted, not applied.
  oneOf(j, 'interpolation_type', 'linear', ['linear', 'log_linear']);

  if (bool(j, 'rescale_betas_zero_snr', false)) {
    throw invalid('rescale_betas_zero_snr', 'is true: a zero terminal SNR makes σ_max infinite, which the σ-space samplers cannot start from', true);
  }
  if (bool(j, 'thresholding', false)) {
    throw invalid('thresholding', 'is true: dynamic thresholding is for pixel-space models and is not supported', true);
  }

  return {
    className,
    numTrainTimesteps,
    betaStart,
    betaEnd,
    betaSchedule,
    trainedBetas,
    predictionType,
    timestepSpacing,
    stepsOffset,
    setAlphaToOne,
    clipSample,
    clipSampleRange,
    useKarrasSigmas,
  };
}
