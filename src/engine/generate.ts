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
import { textEncoderFeeds } from '../onnx/text-encoder-rewrite.js';
import type { EmbeddingLibrary } from '../text/embeddings/library.js';
import { buildConditioning, type Conditioning } from './conditioning.js';
import { lorasForRequest } from './lora-list.js';
import { noLoras, type LoraResolver, type ResolvedLoras } from './lora-resolver.js';
import type { LoadedModel } from './model.js';
import type { RenderHooks, RenderRequest, RenderResult, RenderedImage } from './request.js';
import { validateRenderRequest } from './validate.js';

/** Wraps session runs to account the time spent inside onnxruntime. */
class OrtClock {
  ms = 0;
  async run(s: OnnxSession, feeds: Record<string, HostTensor>, outputs?: string[]): Promise<Record<string, HostTensor>> {
    const t = performance.now();
    try {
      return await s.run(feeds, outputs);
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

/** What a render may use besides the model: the LoRA resolver and the textual-inversion library. */
export interface RenderContext {
  loras?: LoraResolver;
  embeddings?: EmbeddingLibrary;
}

/**
 * Renders one request. Without `ctx.loras`, a request that names LoRAs (in its list or as `<lora:>` tags)
 * is refused (UNKNOWN_LORA).
 */
export async function generate(model: LoadedModel, req: RenderRequest, hooks: RenderHooks = {}, ctx: RenderContext = {}): Promise<RenderResult> {
  const t0 = performance.now();
  validateRenderRequest(model, req);
  const sampling = resolveSampling({ sampler: req.sampler, scheduler: req.scheduler, flavor: req.flavor });
  const specs = lorasForRequest(req.prompt, req.loras);
  if (specs.length && !ctx.loras) {
    throw new LoraserveError('UNKNOWN_LORA', `unknown LoRA '${specs[0].name}': no LoRA folder is configured`, { name: specs[0].name });
  }
  const loras = ctx.loras ? await ctx.loras.resolve(specs) : noLoras(model);
  try {
    return await render(model, req, hooks, ctx, loras, sampling, t0);
  } finally {
    loras.release?.(); // the feeds' memory may be reused from now on
  }
}

async function render(
  model: LoadedModel,
  req: RenderRequest,
  hooks: RenderHooks,
  ctx: RenderContext,
  loras: ResolvedLoras,
  sampling: ReturnType<typeof resolveSampling>,
  t0: number,
): Promise<RenderResult> {
  const tStart = performance.now(); // LoRAs resolved (and a merged UNet built, if this render made one)
  const clock = new OrtClock();
  const sig = model.unetSig;
  const B = req.batchSize;
  const C = sig.latentChannels;
  const h = req.height / model.vaeScaleFactor;
  const w = req.width / model.vaeScaleFactor;
  const per = C * h * w;
  const seeds = Array.from({ length: B }, (_, k) => req.seed + k);

  // 1. text: A1111's prompt language → per-model-call conditioning (prompt editing changes it mid-render)
  checkAborted(hooks.signal);
  await ctx.embeddings?.refresh();
  const cond = await buildConditioning(
    {
      tokenizer: model.tokenizer,
      hiddenSize: model.te.hiddenSize,
      placeholderBase: model.te.tableRows,
      layers: model.te.layers,
      embeddings: ctx.embeddings,
      encode: async (ids, extra, clipSkip) => {
        const { feeds, output } = textEncoderFeeds(model.te, ids, extra, clipSkip);
        const out = await clock.run(model.textEncoder, { ...feeds, ...loras.feeds.te }, [output]);
        return toFloat32(out[output]);
      },
    },
    {
      prompt: req.prompt,
      negativePrompt: req.negativePrompt,
      // A1111 counts prompt-editing steps in model calls: twice the steps for second-order samplers.
      steps: req.steps * (sampling.secondOrder ? 2 : 1),
      clipSkip: req.clipSkip,
      emphasis: req.emphasis,
      padConds: req.padConds,
    },
  );
  const tText = performance.now();
  const guided = req.cfgScale !== 1;
  const cfgScale = req.cfgScale * cond.cfgWeight;
  const contexts = new ContextTensors(cond, B, sig.floatType, sig.contextDim);

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

  // 3. the model call the sampler sees: x (sampler space) and σ → CFG-combined denoised x0.
  // Cond and uncond share one UNet batch [uncond×B; cond×B] when their token lengths agree, else two calls.
  let unetCalls = 0;
  let call = 0;
  const runUnet = async (sample: Float32Array, rows: number, t: number, context: HostTensor): Promise<Float32Array> => {
    // A hot LoRA set (or none) may have a session with its weights merged: no branch feeds then.
    const out = await clock.run(loras.unet ?? model.unet, {
      [sig.sample]: floatTensor(sig.floatType, sample, [rows, C, h, w]),
      [sig.timestep]: timestepTensor(sig.timestepType, sig.timestepRank, t, rows),
      [sig.context]: context,
      ...(loras.unet ? {} : loras.feeds.unet),
    });
    unetCalls++;
    return toFloat32(out[sig.output] ?? Object.values(out)[0]);
  };
  const denoise = async (xs: Float32Array, sigma: number): Promise<Float32Array> => {
    checkAborted(hooks.signal);
    const c = call++;
    const cIn = modelInputScale(sigma);
    const scaled = new Float32Array(xs.length);
    for (let i = 0; i < xs.length; i++) scaled[i] = xs[i] * cIn;
    const t = plan.timestepFor(sigma);
    let eps: Float32Array;
    if (!guided) eps = await runUnet(scaled, B, t, contexts.cond(c));
    else if (cond.sameLength) {
      const both = new Float32Array(2 * B * per);
      both.set(scaled, 0);
      both.set(scaled, B * per);
      const raw = await runUnet(both, 2 * B, t, contexts.both(c));
      eps = cfgCombine(raw.subarray(0, B * per), raw.subarray(B * per), cfgScale);
    } else {
      const u = await runUnet(scaled, B, t, contexts.uncond(c));
      const k = await runUnet(scaled, B, t, contexts.cond(c));
      eps = cfgCombine(u, k, cfgScale);
    }
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
      tiHashes: cond.infotext.tiHashes.length ? cond.infotext.tiHashes : undefined,
      emphasis: cond.infotext.emphasis,
      clipSkip: req.clipSkip,
      extra: cond.infotext.padConds ? { 'Pad conds': 'True' } : undefined,
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
      loraMs: loras.ms,
      mergedUnet: loras.unet !== undefined,
      textMs: tText - tStart,
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

/**
 * UNet context tensors for a model call, repeated over the batch: built once per distinct conditioning
 * (prompt editing switches it at scheduled steps) and reused for every call in between.
 */
class ContextTensors {
  private last = new Map<string, { key: Float32Array[]; tensor: HostTensor }>();
  constructor(
    private readonly c: Conditioning,
    private readonly B: number,
    private readonly type: 'float32' | 'float16',
    private readonly D: number,
  ) {}

  private build(kind: string, parts: Float32Array[], tokens: number): HostTensor {
    const hit = this.last.get(kind);
    if (hit && hit.key.length === parts.length && hit.key.every((p, i) => p === parts[i])) return hit.tensor;
    const len = tokens * this.D;
    const data = new Float32Array(parts.length * this.B * len);
    parts.forEach((p, j) => {
      for (let k = 0; k < this.B; k++) data.set(p, (j * this.B + k) * len);
    });
    const tensor = floatTensor(this.type, data, [parts.length * this.B, tokens, this.D]);
    this.last.set(kind, { key: parts, tensor });
    return tensor;
  }

  cond(call: number): HostTensor {
    return this.build('cond', [this.c.condAt(call)], this.c.condTokens);
  }
  uncond(call: number): HostTensor {
    return this.build('uncond', [this.c.uncondAt(call)], this.c.uncondTokens);
  }
  /** [uncond×B; cond×B] (equal token lengths). */
  both(call: number): HostTensor {
    return this.build('both', [this.c.uncondAt(call), this.c.condAt(call)], this.c.condTokens);
  }
}
