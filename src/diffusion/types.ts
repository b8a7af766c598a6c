/**
 * The contract between a sigma schedule, a sampler and the caller that runs the UNet.
 *
 * Everything is expressed in k-diffusion's σ-space: the sampler's state is x = x0 + σ·ε (not the VP latents
 * √ᾱ·x0 + √(1−ᾱ)·ε diffusers' DDIM keeps), the caller feeds the UNet x·c_in and turns its output into the
 * denoised x0 (see denoiser.ts). A schedule turns (model noise table, step count) into a SigmaPlan; a sampler
 * walks a plan. Samplers are plain async functions: every piece of state (history, noise) lives in one call,
 * so nothing is shared between jobs.
 */
import type { NoiseTable } from './noise-table.js';
import type { SchedulerConfig } from './scheduler-config.js';

export interface SigmaPlan {
  /**
   * The n+1 noise levels the sampler walks, decreasing; n = sigmas.length − 1 is the number of steps (it can
   * differ from the requested count where upstream does: A1111's DDIM). Values are float32 numbers. The last is
   * 0 for k-diffusion schedules and σ(ᾱ_final) for diffusers/A1111 DDIM, which end on a VP latent.
   */
  readonly sigmas: Float64Array;
  /** The UNet timestep per step, timestepFor(sigmas[i]) for i < n (for logs and tests). */
  readonly timesteps: Float64Array;
  /**
   * The UNet timestep for a model call at σ: diffusers' timestep for σ's of a discrete plan (integer for
   * leading/trailing spacing), k-diffusion's float sigma_to_t otherwise (and for σ's between plan steps).
   */
  timestepFor(sigma: number): number;
  /** x_start = unit noise · initNoiseScale (diffusers' init_noise_sigma in σ-space; sigmas[0] for k-diffusion). */
  readonly initNoiseScale: number;
  /** Multiply the sampler's result by this to get the latents to decode (DDIM ending at σ > 0: √ᾱ_final). */
  readonly finalScale?: number;
  /**
   * DDIM only: the σ step i integrates to when upstream's "previous timestep" is not the next planned one
   * (diffusers' DDIM steps to t − N/n whatever the spacing); the sampler then re-reads the VP latent at
   * sigmas[i+1]. Absent: every step ends at sigmas[i+1].
   */
  readonly stepTargets?: Float64Array;
  /** DDIM with `clip_sample`: clamp the x0 used for the step to ±clipDenoised. */
  readonly clipDenoised?: number;
}

export interface ScheduleContext {
  readonly steps: number;
  readonly config: SchedulerConfig;
  readonly table: NoiseTable;
}

export type Schedule = (ctx: ScheduleContext) => SigmaPlan;

/**
 * One model evaluation: x in σ-space at noise level σ → the (CFG-combined) denoised x0. `stepIndex` is the
 * sampler step the call belongs to (second-order samplers call twice with the same index).
 */
export type Denoise = (x: Float32Array, sigma: number, stepIndex: number) => Promise<Float32Array>;

/** Anything with `aborted` (AbortSignal, the jobs layer's CancelSignal). */
export interface AbortLike {
  readonly aborted: boolean;
}

export interface SamplerInput {
  /** Start latents, already × plan.initNoiseScale. Not modified. */
  readonly x: Float32Array;
  readonly plan: SigmaPlan;
  readonly denoise: Denoise;
  /** The next draw of the image's generator, same length as x (ancestral and SDE samplers). */
  readonly nextNoise: () => Float32Array;
  /** After step i of n (0-based) with the new x (σ-space, at sigmas[i+1]) and the denoised x0 of that step. */
  readonly onStep?: (i: number, n: number, x: Float32Array, denoised: Float32Array) => void | Promise<void>;
  /** Checked before every model call; aborting throws LoraserveError CANCELLED. */
  readonly signal?: AbortLike;
  /** Ancestral / SDE noise amount (A1111's "Eta"); default 1. Deterministic samplers ignore it. */
  readonly eta?: number;
}

/** Runs the plan; resolves to x in σ-space at sigmas[n] (multiply by plan.finalScale if set). */
export type Sampler = (input: SamplerInput) => Promise<Float32Array>;
