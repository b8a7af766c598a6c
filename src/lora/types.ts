/**
 * The lora layer's domain types. Everything here is plain data: the layer reads LoRA files and plans their
 * scales, and never touches ONNX or onnxruntime. The engine turns ONNX target layers into `LoraTarget`s and
 * LoRA layers into graph branches or merged weights.
 */

/** Which network a layer belongs to. SD1/SD2 have one text encoder; SDXL's second one (`te2`) has no target here. */
export type LoraPart = 'unet' | 'te';

/**
 * A layer of the loaded model that a LoRA may target, as plain data (the engine builds these from
 * src/onnx/graph-modules.ts `discoverTargetLayers`; this layer does not import it).
 * `module` is the torch module path (`down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`,
 * `text_model.encoder.layers.0.self_attn.q_proj`); `inFeatures`/`outFeatures` are torch's in/out
 * (for a Conv: in/out channels); `kernel` is [kh, kw] for a Conv.
 */
export interface LoraTarget {
  part: LoraPart;
  module: string;
  kind: 'linear' | 'conv';
  inFeatures: number;
  outFeatures: number;
  kernel?: [number, number];
}

/** File formats we read. `kohya` and `locon` may use diffusers or A1111/ldm ("compvis") UNet names. */
export type LoraFormat = 'kohya' | 'locon' | 'diffusers-attnprocs' | 'diffusers' | 'peft';

/**
 * A LoRA factor as the file stores it: Float32Array for F32 (and BF16, widened exactly), Uint16Array of fp16
 * bits for F16 — kept narrow so a loaded LoRA holds about its file size. `factorToFloat32` widens a copy.
 */
export type LoraFactor = Float32Array | Uint16Array;

/** One targeted layer of one LoRA: ΔW = scale · up @ down (reshaped to W's torch shape). */
export interface LoraLayer {
  part: LoraPart;
  module: string;
  kind: 'linear' | 'conv';
  rank: number;
  /** The file's alpha for this layer; rank when the file has none. */
  alpha: number;
  /** alpha / rank (alpha / √rank for PEFT rsLoRA). The user's weight is applied later (scale-plan). */
  scale: number;
  /** [rank, in·kh·kw] row-major, in the file's precision (see LoraFactor). */
  down: LoraFactor;
  /** [out, rank] row-major, in the file's precision. */
  up: LoraFactor;
  /** Kernel of `down` ([1, 1] for linear layers and 1×1 convs; [3, 3] for LoCon's ResNet convs). */
  downKernel: [number, number];
  inFeatures: number;
  outFeatures: number;
  /** The file's key stem this layer came from (for messages). */
  key: string;
}

export type BaseModel = 'sd1' | 'sd2' | 'sdxl' | 'other' | 'unknown';

/** What the file says about itself, computed from the header alone (no tensor data). */
export interface LoraInfo {
  /** Format guessed from key names (null when no known LoRA key is present). */
  format: LoraFormat | null;
  /** Set when the file uses a network type we refuse (e.g. 'LoHa'); parseLora throws LORA_UNSUPPORTED then. */
  unsupported: string | null;
  /** Distinct ranks (first dim of every down/lora_A tensor), ascending. */
  ranks: number[];
  /** Distinct alphas: from the `.alpha` tensors after parseLora, else from metadata (kohya ss_network_alpha, PEFT lora_alpha); empty when unknown. */
  alphas: number[];
  alphaSource: 'tensors' | 'metadata' | 'none';
  /** LoCon / kohya conv_dim: rank and alpha of 3×3 convs when the metadata says. */
  convRank: number | null;
  convAlpha: number | null;
  /** Coarse base model from ss_base_model_version, ss_v2, modelspec.architecture; 'unknown' without metadata. */
  baseModel: BaseModel;
  /** The raw string it was decided from (e.g. 'sd_v1', 'stable-diffusion-xl-v1-base/lora'). */
  baseModelVersion: string | null;
  /** Tags from ss_tag_frequency, most frequent first (A1111's build_tags). */
  tagFrequency: Array<[string, number]>;
  /** The first few tags of tagFrequency. */
  triggerWords: string[];
  /** kohya `ss_output_name`: A1111 offers it as an alias of the file name. */
  outputName: string | null;
  trainingComment: string | null;
  networkModule: string | null;
  sdModelName: string | null;
  /** Number of tensors, and of distinct targeted modules per part by key name (before matching). */
  tensors: number;
  modules: { unet: number; te: number; te2: number; unknown: number };
  /** Distinct dtypes of the tensors. */
  dtypes: string[];
  /** kohya's `sshs_model_hash` (the addnet hash computed at save time); A1111 trusts it over hashing the file. */
  declaredHash: string | null;
  /** Textual-inversion embeddings bundled in the file (A1111 `bundle_emb.*`); not applied by this layer. */
  bundledEmbeddings: string[];
}

/** A parsed LoRA, ready for the engine: every layer matched to a target and checked against its shape. */
export interface LoraAdapter {
  name: string;
  format: LoraFormat;
  /** kohya/LoCon files name UNet modules either like diffusers (`down_blocks_0_…`) or like A1111/ldm (`input_blocks_1_1_…`). */
  unetNaming: 'diffusers' | 'ldm' | null;
  layers: LoraLayer[];
  /** Keys that name no target layer (e.g. SDXL `lora_te2_…`, norm layers, bundled embeddings). */
  unmatchedKeys: string[];
  metadata: Record<string, string>;
  info: LoraInfo;
  /** Bytes held by the decoded down/up arrays (what a cache should count). */
  bytes: number;
}

/**
 * One LoRA in a request (the same shape as src/engine/request.ts `LoraSpec`; redeclared here because the
 * lora layer does not import the engine). `te`/`unet` override `weight` for that part; `blocks` scale UNet
 * blocks by A1111 "LoRA Block Weight" ids (BASE, IN00…IN11, M00, OUT00…OUT11) or groups `in`/`mid`/`out`.
 */
export interface LoraRequest {
  name: string;
  weight: number;
  te?: number;
  unet?: number;
  blocks?: Record<string, number>;
}
