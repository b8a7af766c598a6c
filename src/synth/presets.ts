/**
 * Model dimensions per preset. `sd15` and `sd2` carry the real Stable Diffusion configs
 * (runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-2 `<component>/config.json`); `tiny` matches
 * ../shared/fixtures/tiny-sd15 (same block structure, so the same module paths, at toy widths).
 */

export type PresetName = 'tiny' | 'tiny-sd2' | 'sd15' | 'sd2';

export interface TextEncoderConfig {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  /** Rows of the token embedding: CLIP's 49408, so a real CLIP tokenizer folder also works. */
  vocabSize: number;
  maxPositions: number;
  act: 'quick_gelu' | 'gelu';
}

export interface UnetConfig {
  blockOut: [number, number, number, number];
  layersPerBlock: number;
  /** Attention heads per block (diffusers' `attention_head_dim`, which is really the head count). */
  heads: [number, number, number, number];
  crossAttentionDim: number;
  groups: number;
  linearProjection: boolean;
  inChannels: number;
  outChannels: number;
  /** Latent size the model was "trained" at (unet/config sample_size). */
  sampleSize: number;
}

export interface VaeConfig {
  blockOut: [number, number, number, number];
  layersPerBlock: number;
  groups: number;
  latentChannels: number;
  scalingFactor: number;
}

export interface Preset {
  name: PresetName;
  /** What kind of model this imitates: `sd_v1` / `sd_v2` (kohya's ss_base_model_version). */
  family: 'sd_v1' | 'sd_v2';
  textEncoder: TextEncoderConfig;
  unet: UnetConfig;
  vae: VaeConfig;
  prediction: 'epsilon' | 'v_prediction';
  /** Tokenizer pad token: `<|endoftext|>` for SD1, `!` for SD2 (open_clip pads with id 0). */
  padToken: string;
  /** Default LoRA rank for the demo files. */
  loraRank: number;
}

const CLIP_VOCAB = 49408;

const TINY_VAE: VaeConfig = { blockOut: [16, 16, 32, 32], layersPerBlock: 1, groups: 8, latentChannels: 4, scalingFactor: 0.18215 };
const SD_VAE: VaeConfig = { blockOut: [128, 256, 512, 512], layersPerBlock: 2, groups: 32, latentChannels: 4, scalingFactor: 0.18215 };

export const PRESETS: Record<PresetName, Preset> = {
  tiny: {
    name: 'tiny',
    family: 'sd_v1',
    textEncoder: { hidden: 32, intermediate: 37, layers: 12, heads: 4, vocabSize: CLIP_VOCAB, maxPositions: 77, act: 'quick_gelu' },
    unet: {
      blockOut: [32, 32, 64, 64],
      layersPerBlock: 2,
      heads: [8, 8, 8, 8],
      crossAttentionDim: 32,
      groups: 8,
      linearProjection: false,
      inChannels: 4,
      outChannels: 4,
      sampleSize: 8,
    },
    vae: TINY_VAE,
    prediction: 'epsilon',
    padToken: '<|endoftext|>',
    loraRank: 4,
  },
  'tiny-sd2': {
    name: 'tiny-sd2',
    family: 'sd_v2',
    textEncoder: { hidden: 32, intermediate: 37, layers: 23, heads: 4, vocabSize: CLIP_VOCAB, maxPositions: 77, act: 'gelu' },
    unet: {
      blockOut: [32, 32, 64, 64],
      layersPerBlock: 2,
      heads: [2, 2, 4, 4],
      crossAttentionDim: 32,
      groups: 8,
      linearProjection: true,
      inChannels: 4,
      outChannels: 4,
      sampleSize: 8,
    },
    vae: TINY_VAE,
    prediction: 'v_prediction',
    padToken: '!',
    loraRank: 4,
  },
  sd15: {
    name: 'sd15',
    family: 'sd_v1',
    textEncoder: { hidden: 768, intermediate: 3072, layers: 12, heads: 12, vocabSize: CLIP_VOCAB, maxPositions: 77, act: 'quick_gelu' },
    unet: {
      blockOut: [320, 640, 1280, 1280],
      layersPerBlock: 2,
      heads: [8, 8, 8, 8],
      crossAttentionDim: 768,
      groups: 32,
      linearProjection: false,
      inChannels: 4,
      outChannels: 4,
      sampleSize: 64,
    },
    vae: SD_VAE,
    prediction: 'epsilon',
    padToken: '<|endoftext|>',
    loraRank: 16,
  },
  sd2: {
    name: 'sd2',
    family: 'sd_v2',
    textEncoder: { hidden: 1024, intermediate: 4096, layers: 23, heads: 16, vocabSize: CLIP_VOCAB, maxPositions: 77, act: 'gelu' },
    unet: {
      blockOut: [320, 640, 1280, 1280],
      layersPerBlock: 2,
      heads: [5, 10, 20, 20],
      crossAttentionDim: 1024,
      groups: 32,
      linearProjection: true,
      inChannels: 4,
      outChannels: 4,
      sampleSize: 96,
    },
    vae: SD_VAE,
    prediction: 'v_prediction',
    padToken: '!',
    loraRank: 16,
  },
};

export function isPresetName(s: string): s is PresetName {
  return Object.prototype.hasOwnProperty.call(PRESETS, s);
}
