/**
 * The model's training noise schedule as tables over the N training timesteps: ᾱ[t], σ[t] = √((1−ᾱ)/ᾱ) and
 * log σ[t], plus k-diffusion's continuous maps between σ and a (float) timestep.
 *
 * Two flavours of ᾱ, because the two upstreams build it differently and the last bits show in every sigma:
 *  - 'diffusers': betas, alphas in float32 torch arithmetic, cumprod accumulated in double and stored float32
 *    (diffusers v0.21.4 schedulers/scheduling_euler_discrete.py and scheduling_ddim.py `__init__`; torch's CPU
 *    cumprod accumulates float in double, aten/src/ATen/native/cpu/ReduceOpsKernel.cpp).
 *  - 'ldm': betas, alphas, cumprod in float64 and stored float32 — what CompVis ldm
 *    (ldm/modules/diffusionmodules/util.py make_beta_schedule, ldm/models/diffusion/ddpm.py register_schedule)
 *    and therefore A1111 and k-diffusion's CompVisDenoiser use. ldm's "linear" schedule is diffusers'
 *    "scaled_linear" (linspace of √β, squared).
 * The two differ by ≤ 4.8e-7 in ᾱ for SD1.5.
 *
 * σ and log σ are computed in float32 as torch does (k-diffusion k_diffusion/external.py DiscreteSchedule,
 * DiscreteEpsDDPMDenoiser at ab527a9a). log/exp use JS's double functions rounded to float32; torch's SLEEF
 * kernels can differ from that in the last ulp.
 */
import type { SchedulerConfig } from './scheduler-config.js';
import { torchLinspace, type TorchFloat } from './torch-math.js';

export type NoiseTableFlavor = 'diffusers' | 'ldm';

export interface NoiseTable {
  readonly flavor: NoiseTableFlavor;
  /** ᾱ[t] for t = 0 … N−1, float32 values. */
  readonly alphasCumprod: Float64Array;
  /** σ[t] = √((1−ᾱ[t])/ᾱ[t]) in float32 arithmetic; increasing in t. */
  readonly sigmas: Float64Array;
  /** float32 log σ[t]. */
  readonly logSigmas: Float64Array;
  /** σ[0] and σ[N−1] (k-diffusion's sigma_min / sigma_max). */
  readonly sigmaMin: number;
  readonly sigmaMax: number;
}

const f = Math.fround;

/** diffusers' betas_for_alpha_bar (cosine, max_beta 0.999), in float64. */
function cosineBetas(n: number): Float64Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999);
  return out;
}

function betas(config: SchedulerConfig, dtype: TorchFloat): Float64Array {
  const r = dtype === 'float32' ? f : (v: number) => v;
  const n = config.numTrainTimesteps;
  if (config.trainedBetas) return config.trainedBetas.map(r);
  switch (config.betaSchedule) {
    case 'linear':
      return torchLinspace(config.betaStart, config.betaEnd, n, dtype);
    case 'scaled_linear':
      return torchLinspace(Math.sqrt(config.betaStart), Math.sqrt(config.betaEnd), n, dtype).map((b) => r(b * b));
    case 'squaredcos_cap_v2':
      return cosineBetas(n).map(r);
  }
}

/** ᾱ as the flavour builds it (values are float32). */
export function alphasCumprodFor(config: SchedulerConfig, flavor: NoiseTableFlavor): Float64Array {
  const dtype: TorchFloat = flavor === 'diffusers' ? 'float32' : 'float64';
  const b = betas(config, dtype);
  const out = new Float64Array(b.length);
  let acc = 1; // double accumulator in both flavours (torch CPU cumprod; numpy float64 cumprod)
  for (let i = 0; i < b.length; i++) {
    acc *= dtype === 'float32' ? f(1 - b[i]) : 1 - b[i];
    out[i] = f(acc);
  }
  return out;
}

/** σ = √((1−ᾱ)/ᾱ) in float32 arithmetic, as both upstreams compute it from a float32 ᾱ. */
export function sigmaFromAlphaCumprod(alphaCumprod: number): number {
  const a = f(alphaCumprod);
  return f(Math.sqrt(f(f(1 - a) / a)));
}

export function buildNoiseTable(config: SchedulerConfig, flavor: NoiseTableFlavor): NoiseTable {
  const alphasCumprod = alphasCumprodFor(config, flavor);
  const sigmas = alphasCumprod.map(sigmaFromAlphaCumprod);
  const logSigmas = sigmas.map((s) => f(Math.log(s)));
  return { flavor, alphasCumprod, sigmas, logSigmas, sigmaMin: sigmas[0], sigmaMax: sigmas[sigmas.length - 1] };
}

/**
 * k-diffusion's DiscreteSchedule.sigma_to_t (quantize off, A1111's default): the float timestep whose
 * log-linearly interpolated σ is `sigma`, in float32 arithmetic. low = the last index with
 * log σ[low] ≤ log σ (0 if none), at most N−2; the weight is clamped to [0, 1].
 */
export function sigmaToT(table: NoiseTable, sigma: number): number {
  const ls = table.logSigmas;
  const logSigma = f(Math.log(f(sigma)));
  let low = 0;
  for (let i = 0; i < ls.length; i++) if (logSigma >= ls[i]) low = i;
  low = Math.min(low, ls.length - 2);
  const high = low + 1;
  let w = f(f(ls[low] - logSigma) / f(ls[low] - ls[high]));
  w = Math.min(1, Math.max(0, w));
  return f(f(f(1 - w) * low) + f(w * high));
}

/** k-diffusion's DiscreteSchedule.t_to_sigma: exp of log σ linearly interpolated at float timestep t (float32). */
export function tToSigma(table: NoiseTable, t: number): number {
  const tf = f(t);
  const low = Math.floor(tf);
  const high = Math.ceil(tf);
  const w = f(tf - Math.trunc(tf));
  const ls = table.logSigmas;
  return f(Math.exp(f(f(f(1 - w) * ls[low]) + f(w * ls[high]))));
}
