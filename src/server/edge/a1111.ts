/**
 * AUTOMATIC1111's txt2img request, as its clients send it, into our RenderRequests — and its answer back.
 *
 * Field names and defaults follow A1111 v1.9.4: modules/processing.py StableDiffusionProcessing and
 * StableDiffusionProcessingTxt2Img (dataclass defaults: steps 50, cfg_scale 7.0, 512×512, seed -1, …) and
 * modules/api/models.py StableDiffusionTxt2ImgProcessingAPI (sampler_index "Euler", send_images True, …);
 * modules/api/api.py text2imgapi picks the sampler as `sampler_name or sampler_index`, answers
 * `{images, parameters: vars(request), info: processed.js()}`. The `info` keys are Processed.js()'s.
 *
 * What A1111 would do but we cannot (hires fix, variation seeds, face restoration, scripts, …) is refused
 * with a 400 naming the field when the request asks for it, rather than silently rendering something else.
 */
import { type Static, Type, type TSchema } from '@fastify/type-provider-typebox';
import { LoraserveError } from '../../core/errors.js';
import type { RngKind } from '../../diffusion/rng/index.js';
import type { EmphasisMode, RenderRequest } from '../../engine/request.js';
import type { ModelInfo } from '../../jobs/queue.js';
import { resolveSeed } from './check.js';

/** A1111 fields are pydantic Optional: null means "default". */
const nullable = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()]));

export const Txt2ImgBody = Type.Object(
  {
    prompt: nullable(Type.String()),
    negative_prompt: nullable(Type.String()),
    styles: nullable(Type.Array(Type.String())),
    seed: nullable(Type.Integer({ minimum: -1 })),
    subseed: nullable(Type.Integer({ minimum: -1 })),
    subseed_strength: nullable(Type.Number()),
    seed_resize_from_h: nullable(Type.Integer()),
    seed_resize_from_w: nullable(Type.Integer()),
    sampler_name: nullable(Type.String()),
    scheduler: nullable(Type.String()),
    batch_size: nullable(Type.Integer({ minimum: 1, maximum: 1024 })),
    n_iter: nullable(Type.Integer({ minimum: 1, maximum: 1024 })),
    steps: nullable(Type.Integer({ minimum: 1, maximum: 10_000 })),
    cfg_scale: nullable(Type.Number({ minimum: 0, maximum: 100 })),
    width: nullable(Type.Integer({ minimum: 8, maximum: 16384 })),
    height: nullable(Type.Integer({ minimum: 8, maximum: 16384 })),
    restore_faces: nullable(Type.Boolean()),
    tiling: nullable(Type.Boolean()),
    do_not_save_samples: nullable(Type.Boolean()),
    do_not_save_grid: nullable(Type.Boolean()),
    eta: nullable(Type.Number()),
    denoising_strength: nullable(Type.Number()),
    s_min_uncond: nullable(Type.Number()),
    s_churn: nullable(Type.Number()),
    s_tmax: nullable(Type.Number()),
    s_tmin: nullable(Type.Number()),
    s_noise: nullable(Type.Number()),
    override_settings: nullable(Type.Record(Type.String(), Type.Unknown())),
    override_settings_restore_afterwards: nullable(Type.Boolean()),
    refiner_checkpoint: nullable(Type.String()),
    refiner_switch_at: nullable(Type.Number()),
    disable_extra_networks: nullable(Type.Boolean()),
    firstpass_image: nullable(Type.String()),
    comments: nullable(Type.Record(Type.String(), Type.Unknown())),
    enable_hr: nullable(Type.Boolean()),
    firstphase_width: nullable(Type.Integer()),
    firstphase_height: nullable(Type.Integer()),
    hr_scale: nullable(Type.Number()),
    hr_upscaler: nullable(Type.String()),
    hr_second_pass_steps: nullable(Type.Integer()),
    hr_resize_x: nullable(Type.Integer()),
    hr_resize_y: nullable(Type.Integer()),
    hr_checkpoint_name: nullable(Type.String()),
    hr_sampler_name: nullable(Type.String()),
    hr_scheduler: nullable(Type.String()),
    hr_prompt: nullable(Type.String()),
    hr_negative_prompt: nullable(Type.String()),
    force_task_id: nullable(Type.String()),
    sampler_index: nullable(Type.String()),
    script_name: nullable(Type.String()),
    script_args: nullable(Type.Array(Type.Unknown())),
    send_images: nullable(Type.Boolean()),
    save_images: nullable(Type.Boolean()),
    alwayson_scripts: nullable(Type.Record(Type.String(), Type.Unknown())),
    infotext: nullable(Type.String()),
  },
  // A1111's pydantic model ignores fields it does not know; so do we (clients send extension fields).
  { additionalProperties: true },
);
export type Txt2ImgBody = Static<typeof Txt2ImgBody>;

/** A1111 v1.9.4's value for every field a client leaves out (the `parameters` echo shows these). */
export const TXT2IMG_DEFAULTS = {
  prompt: '',
  negative_prompt: '',
  styles: null,
  seed: -1,
  subseed: -1,
  subseed_strength: 0,
  seed_resize_from_h: -1,
  seed_resize_from_w: -1,
  sampler_name: null,
  scheduler: null,
  batch_size: 1,
  n_iter: 1,
  steps: 50,
  cfg_scale: 7.0,
  width: 512,
  height: 512,
  restore_faces: null,
  tiling: null,
  do_not_save_samples: false,
  do_not_save_grid: false,
  eta: null,
  denoising_strength: 0.75,
  s_min_uncond: null,
  s_churn: null,
  s_tmax: null,
  s_tmin: null,
  s_noise: null,
  override_settings: null,
  override_settings_restore_afterwards: true,
  refiner_checkpoint: null,
  refiner_switch_at: null,
  disable_extra_networks: false,
  firstpass_image: null,
  comments: null,
  enable_hr: false,
  firstphase_width: 0,
  firstphase_height: 0,
  hr_scale: 2.0,
  hr_upscaler: null,
  hr_second_pass_steps: 0,
  hr_resize_x: 0,
  hr_resize_y: 0,
  hr_checkpoint_name: null,
  hr_sampler_name: null,
  hr_scheduler: null,
  hr_prompt: '',
  hr_negative_prompt: '',
  force_task_id: null,
  sampler_index: 'Euler',
  script_name: null,
  script_args: [],
  send_images: true,
  save_images: false,
  alwayson_scripts: {},
  infotext: null,
} as const satisfies Record<keyof Txt2ImgBody, unknown>;

export type Txt2ImgParams = { -readonly [K in keyof typeof TXT2IMG_DEFAULTS]: NonNullable<Txt2ImgBody[K]> | (typeof TXT2IMG_DEFAULTS)[K] };

/**
 * The request with A1111's defaults filled in where a field is absent or null, as pydantic fills them; fields
 * A1111 does not know are dropped (its `parameters` echo is the model's fields only).
 */
export function withTxt2ImgDefaults(body: Txt2ImgBody): Txt2ImgParams {
  const given = body as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(TXT2IMG_DEFAULTS)) out[k] = given[k] === undefined || given[k] === null ? v : given[k];
  return out as Txt2ImgParams;
}

/** The A1111 settings (modules/shared_options.py) the server understands; GET/POST /sdapi/v1/options. */
export interface A1111Options {
  sd_model_checkpoint: string;
  CLIP_stop_at_last_layers: number;
  /** "GPU" (A1111's default) and "NV" draw the philox noise NVIDIA GPUs give; "CPU" torch's CPU noise. */
  randn_source: 'GPU' | 'CPU' | 'NV';
  eta_noise_seed_delta: number;
  emphasis: EmphasisMode;
  pad_cond_uncond: boolean;
  show_progress_every_n_steps: number;
  live_previews_enable: boolean;
  samples_format: string;
  sd_vae: string;
}

export function defaultOptions(model: ModelInfo | undefined): A1111Options {
  return {
    sd_model_checkpoint: model ? checkpointTitle(model) : '',
    CLIP_stop_at_last_layers: 1,
    randn_source: 'GPU',
    eta_noise_seed_delta: 0,
    emphasis: 'Original',
    pad_cond_uncond: false,
    show_progress_every_n_steps: 10,
    live_previews_enable: true,
    samples_format: 'png',
    sd_vae: 'Automatic',
  };
}

/** A1111's checkpoint title: "name [short hash]". */
export function checkpointTitle(m: ModelInfo): string {
  return `${m.name} [${m.hash}]`;
}

function checkpointMatches(m: ModelInfo, value: string): boolean {
  const v = value.trim();
  return v === checkpointTitle(m) || v === m.name || v === m.hash || v === m.sha256 || v.replace(/\.(safetensors|ckpt|onnx)$/, '') === m.name;
}

/**
 * Applies settings (POST /options, or a request's override_settings) onto `base`. Known keys are checked;
 * unknown ones are ignored as A1111 ignores options it does not have. Returns the keys that were ignored.
 */
export function applyOptions(base: A1111Options, patch: Record<string, unknown>, model: ModelInfo | undefined): { options: A1111Options; ignored: string[] } {
  const o = { ...base };
  const ignored: string[] = [];
  const bad = (k: string, want: string) => new LoraserveError('INVALID_ARGUMENT', `option ${k} must be ${want} (got ${JSON.stringify(patch[k])})`, { field: k });
  for (const [k, v] of Object.entries(patch)) {
    switch (k) {
      case 'sd_model_checkpoint':
        if (typeof v !== 'string') throw bad(k, 'a string');
        if (model && !checkpointMatches(model, v)) {
          throw new LoraserveError('NOT_FOUND', `model '${v}' not found; this server has '${checkpointTitle(model)}' loaded`, { field: k, available: [checkpointTitle(model)] });
        }
        o.sd_model_checkpoint = model ? checkpointTitle(model) : v;
        break;
      case 'CLIP_stop_at_last_layers':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 12) throw bad(k, 'an integer from 1 to 12');
        o.CLIP_stop_at_last_layers = v;
        break;
      case 'randn_source':
        if (v !== 'GPU' && v !== 'CPU' && v !== 'NV') throw bad(k, '"GPU", "CPU" or "NV"');
        o.randn_source = v;
        break;
      case 'eta_noise_seed_delta':
        if (v !== 0) throw new LoraserveError('INVALID_ARGUMENT', 'eta_noise_seed_delta (ENSD) other than 0 is not supported', { field: k });
        break;
      case 'emphasis':
        if (v !== 'Original' && v !== 'No norm' && v !== 'Ignore') throw bad(k, '"Original", "No norm" or "Ignore"');
        o.emphasis = v;
        break;
      case 'pad_cond_uncond':
        if (typeof v !== 'boolean') throw bad(k, 'a boolean');
        o.pad_cond_uncond = v;
        break;
      case 'show_progress_every_n_steps':
        if (typeof v !== 'number' || !Number.isInteger(v)) throw bad(k, 'an integer');
        o.show_progress_every_n_steps = v;
        break;
      case 'live_previews_enable':
        if (typeof v !== 'boolean') throw bad(k, 'a boolean');
        o.live_previews_enable = v;
        break;
      case 'samples_format':
        if (v !== 'png') throw bad(k, '"png" (the only format this server writes)');
        break;
      case 'sd_vae':
        if (v !== 'Automatic' && v !== 'None') throw bad(k, '"Automatic" (a separate VAE is not supported)');
        break;
      default:
        ignored.push(k);
    }
  }
  return { options: o, ignored };
}

export function rngOf(o: A1111Options): RngKind {
  return o.randn_source === 'CPU' ? 'cpu' : 'nv';
}

/** Refuses what A1111 would do but this server cannot, naming the field. */
function refuseUnsupported(p: Txt2ImgParams): void {
  const no = (field: string, what: string) => new LoraserveError('INVALID_ARGUMENT', `${field}: ${what} is not supported by this server`, { field });
  if (p.enable_hr) throw no('enable_hr', 'hires fix');
  if (p.firstphase_width || p.firstphase_height) throw no('firstphase_width', 'hires fix');
  if (p.subseed_strength) throw no('subseed_strength', 'variation seeds');
  if (p.seed_resize_from_w > 0 || p.seed_resize_from_h > 0) throw no('seed_resize_from_w', 'seed resize');
  if (p.restore_faces) throw no('restore_faces', 'face restoration');
  if (p.tiling) throw no('tiling', 'tiling');
  if (p.refiner_checkpoint) throw no('refiner_checkpoint', 'a refiner');
  if (p.styles && p.styles.length) throw no('styles', 'prompt styles');
  if (p.script_name) throw no('script_name', 'scripts');
  if (p.alwayson_scripts && Object.keys(p.alwayson_scripts).length) throw no('alwayson_scripts', 'extension scripts');
  if (p.firstpass_image) throw no('firstpass_image', 'a first-pass image');
  if (p.infotext) throw no('infotext', 'applying an infotext');
}

export interface A1111Plan {
  params: Txt2ImgParams;
  options: A1111Options;
  /** One job per n_iter iteration; iteration k uses seed + k·batch_size (A1111's all_seeds). */
  jobs: RenderRequest[];
  seed: number;
  subseed: number;
}

/** Validated A1111 request → one RenderRequest per iteration (n_iter), with A1111's defaults and settings. */
export function planTxt2Img(body: Txt2ImgBody, serverOptions: A1111Options, model: ModelInfo | undefined, previewDefault: number): A1111Plan {
  const params = withTxt2ImgDefaults(body);
  refuseUnsupported(params);
  const { options } = applyOptions(serverOptions, (params.override_settings ?? {}) as Record<string, unknown>, model);
  const seed = resolveSeed(params.seed);
  const subseed = resolveSeed(params.subseed);
  const previewEvery = options.live_previews_enable && options.show_progress_every_n_steps > 0 ? options.show_progress_every_n_steps : previewDefault;
  const base: Omit<RenderRequest, 'seed'> = {
    prompt: params.prompt,
    negativePrompt: params.negative_prompt,
    steps: params.steps,
    cfgScale: params.cfg_scale,
    sampler: params.sampler_name || params.sampler_index || 'Euler',
    scheduler: params.scheduler ?? 'Automatic',
    flavor: 'a1111',
    rng: rngOf(options),
    width: params.width,
    height: params.height,
    batchSize: params.batch_size,
    clipSkip: options.CLIP_stop_at_last_layers,
    emphasis: options.emphasis,
    padConds: options.pad_cond_uncond,
    previewEvery,
  };
  const jobs = Array.from({ length: params.n_iter }, (_, k) => ({ ...base, seed: seed + k * params.batch_size }));
  return { params, options, jobs, seed, subseed };
}

/** A1111's `state.job_timestamp` format: YYYYMMDDHHMMSS, local time. */
export function jobTimestamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Processed.js(): the `info` string of a txt2img answer. */
export function txt2imgInfo(
  plan: A1111Plan,
  run: { samplerLabel: string; scheduleLabel: string; infotexts: string[]; model: ModelInfo | undefined; timestamp: string; version: string },
): string {
  const p = plan.params;
  const total = p.batch_size * p.n_iter;
  const allSeeds = Array.from({ length: total }, (_, i) => plan.seed + i);
  const allSubseeds = Array.from({ length: total }, (_, i) => plan.subseed + i);
  const obj = {
    prompt: p.prompt,
    all_prompts: Array(total).fill(p.prompt),
    negative_prompt: p.negative_prompt,
    all_negative_prompts: Array(total).fill(p.negative_prompt),
    seed: plan.seed,
    all_seeds: allSeeds,
    subseed: plan.subseed,
    all_subseeds: allSubseeds,
    subseed_strength: p.subseed_strength,
    width: p.width,
    height: p.height,
    sampler_name: run.samplerLabel,
    cfg_scale: p.cfg_scale,
    steps: p.steps,
    batch_size: p.batch_size,
    restore_faces: p.restore_faces,
    face_restoration_model: null,
    sd_model_name: run.model?.name ?? null,
    sd_model_hash: run.model?.hash ?? null,
    sd_vae_name: null,
    sd_vae_hash: null,
    seed_resize_from_w: p.seed_resize_from_w,
    seed_resize_from_h: p.seed_resize_from_h,
    denoising_strength: p.denoising_strength,
    extra_generation_params: run.scheduleLabel !== 'Automatic' ? { 'Schedule type': run.scheduleLabel } : {},
    index_of_first_image: 0,
    infotexts: run.infotexts,
    styles: p.styles ?? [],
    job_timestamp: run.timestamp,
    clip_skip: plan.options.CLIP_stop_at_last_layers,
    is_using_inpainting_conditioning: false,
    version: run.version,
  };
  return JSON.stringify(obj);
}
