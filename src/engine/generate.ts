/**
 * txt2img: prompt → text embeddings → sampler loop over the UNet with classifier-free guidance → VAE → PNG.
 *
 * The loop reads as diffusers' StableDiffusionPipeline.__call__ does, in numbered steps. Every piece of
 * per-job state (noise generators, sampler history) is created here and dropped at the end: nothing is
 * shared between jobs.
 */
import type { CancelSignal } from '../core/config.js';
import { LoraserveError } from '../core/errors.js';
import { INFOTEXT_VERSION } from '../core/version.js';
import { cfgCombine, denoisedFromModelOutput, modelInputScale } from '../diffusion/denoiser.js';
import { createNoiseGenerator, type NoiseGenerator } from '../diffusion/rng/index.js';
import { resolveSampling } from '../diffusion/registry.js';
import { formatInfotext } from '../image/infotext.js';
import { encodePng } from '../image/png.js';
import { latentPreviewRgb, vaeOutputToRgb } from '../image/pixels.js';
import type { OnnxSession } from '../onnx/runtime.js';
import { float16ToFloat32Array, float32ToFloat16Array } from '../tensor/float16.js';
import type { HostTensor } from '../tensor/host-tensor.js';
import type { LoraResolver, ResolvedLoras } from './lora-resolver.js';
import type { LoadedModel } from './model.js';
import type { RenderHooks, RenderRequest, RenderResult, RenderedImage } from './request.js';
import { validateRenderRequest } from './validate.js';

/** Wraps session runs to account the time spent inside onnxruntime. */
class OrtClock {
  ms = 0;
  async run(s: OnnxSession, feeds: Record<string, HostTensor>): Promise<Record<string, HostTensor>> {
    const t = performance.now();
    try {
      return await s.run(feeds);
    } finally {
      this.ms += performance.now() - t;
    }
  }
}

function toFloat32(t: HostTensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float16') return float16ToFloat32Array(t.data as Uint16Array);
  throw new LoraserveError('INFERENCE_FAILED', `expected a float output, got ${t.type}`);
}

function floatTensor(type: 'float32' | 'float16', data: Float32Array, dims: number[]): HostTensor {
  return type === 'float32' ? { type, data, dims } : { type, data: float32ToFloat16Array(data), dims };
}

function checkAborted(signal?: CancelSignal): void {
  if (signal?.aborted) throw new LoraserveError('CANCELLED', 'render cancelled');
}

/** Step 1: prompt and negative prompt → [uncond; cond] embeddings [2, 77, D]. */
async function encodeText(model: LoadedModel, req: RenderRequest, clock: OrtClock, loras: ResolvedLoras): Promise<{ uncond: Float32Array; cond: Float32Array; seqLen: number }> {
  const len = model.tokenizer.maxLength;
  const ids = new Int32Array(2 * len);
  ids.set(model.tokenizer.encodeForModel(req.negativePrompt), 0);
  ids.set(model.tokenizer.encodeForModel(req.prompt), len);
  const feed: HostTensor =
    model.textInput.type === 'int64'
      ? { type: 'int64', data: BigInt64Array.from(ids, (v) => BigInt(v)), dims: [2, len] }
      : { type: 'int32', data: ids, dims: [2, len] };
  const out = await clock.run(model.textEncoder, { [model.textInput.name]: feed, ...loras.feeds.te });
  const hidden = out['last_hidden_state'] ?? Object.values(out)[0];
  const data = toFloat32(hidden);
  const per = data.length / 2;
  return { uncond: data.subarray(0, per), cond: data.subarray(per), seqLen: hidden.dims[1] };
}

/** Step 2: the initial noise, one generator per image (seed + k), as A1111 does; or the caller's latents. */
function initialNoise(req: RenderRequest, shape: number[], generators: NoiseGenerator[]): Float32Array {
  const per = shape[1] * shape[2] * shape[3];
  if (req.initialNoise) {
    if (req.initialNoise.length !== per * req.batchSize) {
      throw new LoraserveError('INVALID_ARGUMENT', `initial latents have ${req.initialNoise.length} values; [${[req.batchSize, ...shape.slice(1)].join(',')}] needs ${per * req.batchSize}`);
    }
    return Float32Array.from(req.initialNoise);
  }
  const x = new Float32Array(per * req.batchSize);
  generators.forEach((g, k) => x.set(g.randn([1, shape[1], shape[2], shape[3]]), k * per));
  return x;
}

/**
 * Renders one request. `loras` resolves the request's LoRA list into branch feeds; without it, a request
 * that names LoRAs is refused (UNKNOWN_LORA).
 */
export async function generate(model: LoadedModel, req: RenderRequest, hooks: RenderHooks = {}, loraResolver?: LoraResolver): Promise<RenderResult> {
  const t0 = performance.now();
  validateRenderRequest(model, req);
  if (req.loras?.length && !loraResolver) {
    throw new LoraserveError('UNKNOWN_LORA', `unknown LoRA '${req.loras[0].name}': no LoRA folder is configured`, { name: req.loras[0].name });
  }
  const noLoras: ResolvedLoras = { feeds: { unet: model.lora.unet.empty, te: model.lora.te.empty, signature: '' }, hashes: [], ms: 0 };
  const loras = loraResolver ? await loraResolver.resolve(req.loras) : noLoras;
  const sampling = resolveSampling({ sampler: req.sampler, scheduler: req.scheduler, flavor: req.flavor });
  const clock = new OrtClock();
  const sig = model.unetSig;
  const B = req.batchSize;
  const C = sig.latentChannels;
  const h = req.height / model.vaeScaleFactor;
  const w = req.width / model.vaeScaleFactor;
  const per = C * h * w;
  const seeds = Array.from({ length: B }, (_, k) => req.seed + k);

  // 1. text
  checkAborted(hooks.signal);
  const text = await encodeText(model, req, clock, loras);
  const tText = performance.now();
  const guided = req.cfgScale !== 1;
  const rows = guided ? 2 * B : B;
  const ctxPer = text.cond.length;
  const context = new Float32Array(rows * ctxPer);
  for (let k = 0; k < B; k++) {
    if (guided) {
      context.set(text.uncond, k * ctxPer);
      context.set(text.cond, (B + k) * ctxPer);
    } else context.set(text.cond, k * ctxPer);
  }
  const contextTensor = floatTensor(sig.floatType, context, [rows, text.seqLen, sig.contextDim]);

  // 2. schedule and noise
  const plan = sampling.schedule(model.scheduler, req.steps);
  const generators = seeds.map((s) => createNoiseGenerator(req.rng, s));
  let x = initialNoise(req, [B, C, h, w], generators);
  for (let i = 0; i < x.length; i++) x[i] *= plan.initNoiseScale;
  const nextNoise = () => {
    const n = new Float32Array(per * B);
    generators.forEach((g, k) => n.set(g.randn([1, C, h, w]), k * per));
    return n;
  };

  // 3. the model call the sampler sees: x (sampler space) and σ → CFG-combined denoised x0
  let unetCalls = 0;
  const sampleBuf = new Float32Array(rows * per);
  const denoise = async (xs: Float32Array, sigma: number): Promise<Float32Array> => {
    checkAborted(hooks.signal);
    const cIn = modelInputScale(sigma);
    for (let i = 0; i < xs.length; i++) sampleBuf[i] = xs[i] * cIn;
    if (guided) sampleBuf.copyWithin(B * per, 0, B * per);
    const t = plan.timestepFor(sigma);
    const out = await clock.run(model.unet, {
      [sig.sample]: floatTensor(sig.floatType, sampleBuf, [rows, C, h, w]),
      [sig.timestep]: timestepTensor(sig.timestepType, sig.timestepRank, t, rows),
      [sig.context]: contextTensor,
      ...loras.feeds.unet,
    });
    unetCalls++;
    const raw = toFloat32(out[sig.output] ?? Object.values(out)[0]);
    const eps = guided ? cfgCombine(raw.subarray(0, B * per), raw.subarray(B * per), req.cfgScale) : raw;
    return denoisedFromModelOutput(xs, eps, sigma, model.scheduler.predictionType);
  };

  // 4. sample
  const total = req.steps;
  const loopStart = performance.now();
  x = await sampling.sampler({
    x,
    plan,
    denoise,
    nextNoise,
    signal: hooks.signal,
    onStep: (i, n, _x, denoised) => {
      if (!hooks.onProgress) return;
      const elapsed = performance.now() - loopStart;
      const step = i + 1;
      const wantPreview = (req.previewEvery ?? 0) > 0 && step % req.previewEvery! === 0 && step < n;
      hooks.onProgress({
        step,
        total: n,
        elapsedMs: elapsed,
        etaMs: (elapsed / step) * (n - step),
        preview: wantPreview ? latentPreviewRgb(denoised.subarray(0, per), [1, C, h, w]) : undefined,
      });
    },
  });
  if (plan.finalScale !== undefined && plan.finalScale !== 1) for (let i = 0; i < x.length; i++) x[i] *= plan.finalScale;
  const tLoop = performance.now();

  // 5. decode, one image at a time (as diffusers' ONNX pipeline does: fp16 VAEs misbehave at batch > 1)
  const images: RenderedImage[] = [];
  const rgbs: Uint8Array[] = [];
  for (let k = 0; k < B; k++) {
    checkAborted(hooks.signal);
    const lat = new Float32Array(per);
    for (let i = 0; i < per; i++) lat[i] = x[k * per + i] / model.vaeScalingFactor;
    const dec = await clock.run(model.vaeDecoder, { [model.vaeDecoder.inputs[0].name]: floatTensor(sig.floatType, lat, [1, C, h, w]) });
    rgbs.push(vaeOutputToRgb(toFloat32(Object.values(dec)[0]), [1, 3, req.height, req.width])[0].rgb);
  }
  const tVae = performance.now();

  // 6. PNG with A1111 infotext
  for (let k = 0; k < B; k++) {
    const infotext = formatInfotext({
      prompt: req.prompt,
      negativePrompt: req.negativePrompt,
      steps: req.steps,
      sampler: sampling.a1111Sampler,
      scheduleType: sampling.a1111Schedule,
      cfgScale: req.cfgScale,
      seed: seeds[k],
      width: req.width,
      height: req.height,
      modelHash: model.hash.short,
      modelName: model.name,
      // A1111 writes no RNG field for its default source ("GPU", which "nv" reproduces): on A1111 routes say
      // nothing for nv, like A1111; on our API name the generator so the image can be reproduced exactly.
      rng: req.rng === 'cpu' ? 'CPU' : req.flavor === 'a1111' ? undefined : 'NV',
      loraHashes: loras.hashes.length ? loras.hashes : undefined,
      version: INFOTEXT_VERSION,
    });
    const png = await encodePng(rgbs[k], req.width, req.height, { parameters: infotext });
    images.push({ png, width: req.width, height: req.height, seed: seeds[k], infotext });
  }
  const tEnd = performance.now();
  return {
    images,
    seeds,
    latents: req.returnLatents ? { data: x, dims: [B, C, h, w] } : undefined,
    timings: {
      totalMs: tEnd - t0,
      textMs: tText - t0,
      denoiseMs: tLoop - tText,
      vaeMs: tVae - tLoop,
      encodeMs: tEnd - tVae,
      ortMs: clock.ms,
      unetCalls,
    },
  };
}

function timestepTensor(type: string, rank: number, t: number, rows: number): HostTensor {
  const dims = rank === 0 ? [] : [rows];
  const n = rank === 0 ? 1 : rows;
  if (type === 'int64') return { type: 'int64', data: new BigInt64Array(n).fill(BigInt(Math.round(t))), dims };
  if (type === 'int32') return { type: 'int32', data: new Int32Array(n).fill(Math.round(t)), dims };
  if (type === 'float16') return { type: 'float16', data: float32ToFloat16Array(new Float32Array(n).fill(t)), dims };
  return { type: 'float32', data: new Float32Array(n).fill(t), dims };
}
