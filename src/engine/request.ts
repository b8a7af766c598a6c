/**
 * The engine's domain types: what a render needs once the edges (HTTP JSON, CLI flags) have parsed and
 * defaulted their input. The engine and the jobs layer never see an HTTP request.
 */
import type { CancelSignal } from '../core/config.js';
import type { RngKind } from '../diffusion/rng/index.js';

/** `native` = our API (schedule "automatic" = diffusers' discrete); `a1111` = A1111-compatible routes. */
export type SamplingFlavor = 'native' | 'a1111';

/** One LoRA in a request. `te`/`unet` override `weight` for that part; `blocks` scale UNet blocks. */
export interface LoraSpec {
  name: string;
  weight: number;
  te?: number;
  unet?: number;
  /** Block weights: keys `in`, `mid`, `out` or per block (`IN00`…`IN11`, `M00`, `OUT00`…`OUT11`). */
  blocks?: Record<string, number>;
}

/** A1111's emphasis modes (modules/sd_emphasis.py). */
export type EmphasisMode = 'Original' | 'No norm' | 'Ignore';

export interface RenderRequest {
  prompt: string;
  negativePrompt: string;
  steps: number;
  cfgScale: number;
  sampler: string;
  scheduler: string;
  flavor: SamplingFlavor;
  /** Resolved seed (never -1); image k of the batch uses seed + k, like A1111. */
  seed: number;
  rng: RngKind;
  width: number;
  height: number;
  batchSize: number;
  /** LoRAs named in the request (merged with `<lora:…>` tags from the prompt; see docs/ARCHITECTURE.md). */
  loras?: LoraSpec[];
  /** A1111 "Clip skip": 1 = last layer (default), 2 = the layer before it, … */
  clipSkip?: number;
  /** Emphasis mode for (word:1.2) weights; default 'Original'. */
  emphasis?: EmphasisMode;
  /** A1111's "Pad prompt/negative prompt to be same length" option; default off. */
  padConds?: boolean;
  /** Unscaled initial noise [batch, C, h, w], as diffusers' `latents=` argument; replaces the seeded draw. */
  initialNoise?: Float32Array;
  /** Return the final latents (before the VAE scaling factor is divided out). */
  returnLatents?: boolean;
  /** Send a low-resolution preview with every Nth progress event (0 = never). */
  previewEvery?: number;
}

export interface RenderProgress {
  step: number;
  total: number;
  elapsedMs: number;
  etaMs: number;
  /** RGB preview (approximate, latent-space) when requested for this step. */
  preview?: { rgb: Uint8Array; width: number; height: number };
}

export interface RenderedImage {
  png: Uint8Array;
  width: number;
  height: number;
  seed: number;
  infotext: string;
}

export interface RenderTimings {
  totalMs: number;
  /** LoRA resolution: parse on a cache miss, feed build, and a merged UNet's build when this render made one. */
  loraMs: number;
  /** The UNet ran on a merged-weights session (a hot LoRA set, or none) rather than the branched graph. */
  mergedUnet: boolean;
  textMs: number;
  denoiseMs: number;
  vaeMs: number;
  encodeMs: number;
  /** Time spent inside onnxruntime session runs. */
  ortMs: number;
  unetCalls: number;
}

export interface RenderResult {
  images: RenderedImage[];
  seeds: number[];
  latents?: { data: Float32Array; dims: number[] };
  timings: RenderTimings;
}

export interface RenderHooks {
  signal?: CancelSignal;
  onProgress?: (p: RenderProgress) => void;
}
