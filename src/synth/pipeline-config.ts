/**
 * The JSON files of an ONNX Stable Diffusion folder besides the models: model_index.json as diffusers'
 * conversion script writes it (OnnxStableDiffusionPipeline, no safety checker) and the scheduler config
 * the source checkpoint ships (SD1.5: PNDM/epsilon; SD2 768-v: DDIM/v_prediction), both as diffusers
 * v0.21.4 `save_config` lays them out (sorted keys, 2-space indent).
 */
import type { Preset } from './presets.js';

const DIFFUSERS_VERSION = '0.21.4';

export function modelIndexJson(preset: Preset): string {
  return json({
    _class_name: 'OnnxStableDiffusionPipeline',
    _diffusers_version: DIFFUSERS_VERSION,
    feature_extractor: [null, null],
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ['diffusers', preset.prediction === 'v_prediction' ? 'DDIMScheduler' : 'PNDMScheduler'],
    text_encoder: ['diffusers', 'OnnxRuntimeModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'OnnxRuntimeModel'],
    vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
    vae_encoder: ['diffusers', 'OnnxRuntimeModel'],
  });
}

export function schedulerConfigJson(preset: Preset): string {
  const common = {
    _diffusers_version: DIFFUSERS_VERSION,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    beta_start: 0.00085,
    clip_sample: false,
    num_train_timesteps: 1000,
    prediction_type: preset.prediction,
    set_alpha_to_one: false,
    steps_offset: 1,
    timestep_spacing: 'leading',
    trained_betas: null,
  };
  if (preset.prediction === 'v_prediction') {
    return json({
      _class_name: 'DDIMScheduler',
      ...common,
      clip_sample_range: 1.0,
      dynamic_thresholding_ratio: 0.995,
      rescale_betas_zero_snr: false,
      sample_max_value: 1.0,
      thresholding: false,
    });
  }
  return json({ _class_name: 'PNDMScheduler', ...common, skip_prk_steps: true });
}

/** JSON with sorted keys and 2-space indent, like diffusers' to_json_string. */
function json(obj: Record<string, unknown>): string {
  const sorted = Object.fromEntries(Object.entries(obj).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return `${JSON.stringify(sorted, null, 2)}\n`;
}
