/**
 * `synthesize`: writes a complete diffusers-layout ONNX Stable Diffusion folder with seeded random weights
 * (text encoder, UNet, VAE decoder and encoder, tokenizer, scheduler, model_index.json) plus LoRA files for
 * it, so tests, the demo and benchmarks need no download. Same preset + seed ⇒ byte-identical files.
 *
 * The folder is built beside its destination under a temporary name and renamed into place at the end, so
 * a crash or Ctrl-C never leaves a half-written model where a server would load it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { LoraserveError } from '../core/errors.js';
import { discoverTargetLayers, type TargetLayer } from '../onnx/graph-modules.js';
import { writeModel } from '../onnx/proto.js';
import { GraphBuilder } from './graph-builder.js';
import { defaultLoraSpecs, type LoraFileInfo, writeLora } from './loras.js';
import { modelIndexJson, schedulerConfigJson } from './pipeline-config.js';
import { isPresetName, type Preset, type PresetName, PRESETS } from './presets.js';
import { buildTextEncoder } from './text-encoder.js';
import { buildTokenizerFiles } from './tokenizer.js';
import { buildUnet } from './unet.js';
import { manifest, readme } from './readme.js';
import { buildVaeDecoder } from './vae-decoder.js';
import { buildVaeEncoder } from './vae-encoder.js';

export { PRESETS, type PresetName } from './presets.js';
export { defaultLoraSpecs, writeLora, buildLora, type LoraSpec, type LoraFileInfo, type LoraFormat } from './loras.js';

export interface SynthesizeOptions {
  preset: PresetName;
  outDir: string;
  /** Default 0. */
  seed?: number;
  /** Number of LoRA files (default 5: catears, idol, stage, costume [LoCon], lights [PEFT]; more cycle formats). */
  loras?: number;
  /** Rank of every generated LoRA (default: the preset's ranks, 2–8 for tiny, 8–32 for sd15/sd2). */
  loraRank?: number;
  /** Replace an existing outDir (default: refuse). */
  overwrite?: boolean;
  onProgress?: (msg: string) => void;
}

export interface SynthesizeResult {
  outDir: string;
  /** Total bytes written. */
  bytes: number;
  /** Absolute paths of the LoRA files (in `<outDir>/loras/`). */
  loras: string[];
}

type Component = 'text_encoder' | 'unet' | 'vae_decoder' | 'vae_encoder';

const BUILDERS: Record<Component, (b: GraphBuilder, p: Preset) => void> = {
  text_encoder: (b, p) => buildTextEncoder(b, p.textEncoder),
  unet: (b, p) => buildUnet(b, p.unet),
  vae_decoder: (b, p) => buildVaeDecoder(b, p.vae),
  vae_encoder: (b, p) => buildVaeEncoder(b, p.vae),
};

function checkOptions(opts: SynthesizeOptions): { preset: Preset; seed: number; loraCount: number } {
  if (!isPresetName(opts.preset)) {
    throw new LoraserveError('INVALID_ARGUMENT', `unknown synth preset "${opts.preset}" (known: ${Object.keys(PRESETS).join(', ')})`);
  }
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new LoraserveError('INVALID_ARGUMENT', `seed must be a non-negative integer, got ${seed}`);
  const loraCount = opts.loras ?? 5;
  if (!Number.isInteger(loraCount) || loraCount < 0 || loraCount > 100) {
    throw new LoraserveError('INVALID_ARGUMENT', `loras must be an integer in 0..100, got ${loraCount}`);
  }
  if (opts.loraRank !== undefined && (!Number.isInteger(opts.loraRank) || opts.loraRank < 1 || opts.loraRank > 1024)) {
    throw new LoraserveError('INVALID_ARGUMENT', `loraRank must be an integer in 1..1024, got ${opts.loraRank}`);
  }
  return { preset: PRESETS[opts.preset], seed, loraCount };
}

export async function synthesize(opts: SynthesizeOptions): Promise<SynthesizeResult> {
  const { preset, seed, loraCount } = checkOptions(opts);
  const progress = opts.onProgress ?? (() => {});
  const outDir = resolve(opts.outDir);
  if (existsSync(outDir) && !opts.overwrite) {
    throw new LoraserveError('INVALID_ARGUMENT', `${outDir} already exists (pass overwrite to replace it)`, { outDir });
  }
  mkdirSync(dirname(outDir), { recursive: true });
  const tmp = join(dirname(outDir), `.${basename(outDir)}.synth-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(tmp);
  const t0 = performance.now();
  let bytes = 0;
  const loraFiles: string[] = [];
  const writeText = (rel: string, text: string): void => {
    mkdirSync(dirname(join(tmp, rel)), { recursive: true });
    writeFileSync(join(tmp, rel), text);
    bytes += Buffer.byteLength(text);
  };
  try {
    const layers: Partial<Record<Component, TargetLayer[]>> = {};
    const params: Partial<Record<Component, number>> = {};
    for (const component of Object.keys(BUILDERS) as Component[]) {
      const b = new GraphBuilder({ seed, component });
      BUILDERS[component](b, preset);
      const { model, initializers } = b.build({
        docString: `loraserve synth: random-weight ${preset.name} ${component} (seed ${seed}); not a trained model`,
        metadata: { 'loraserve.synthetic': 'true', 'loraserve.preset': preset.name, 'loraserve.seed': String(seed) },
      });
      layers[component] = discoverTargetLayers(model);
      params[component] = b.parameterCount;
      progress(`${component}: ${(b.parameterCount / 1e6).toFixed(1)}M parameters, ${initializers.length} tensors`);
      let lastReport = performance.now();
      // diffusers' script always writes the UNet with external data (weights.pb beside model.onnx).
      const r = writeModel(join(tmp, component, 'model.onnx'), model, initializers, {
        externalData: component === 'unet' ? { location: 'weights.pb' } : undefined,
        onTensor: (_name, soFar) => {
          if (performance.now() - lastReport > 2000) {
            lastReport = performance.now();
            progress(`${component}: ${(soFar / 2 ** 30).toFixed(2)} GiB written`);
          }
        },
      });
      bytes += r.modelBytes + r.externalBytes;
      await new Promise((res) => setImmediate(res)); // let the event loop breathe between components
    }

    const tok = buildTokenizerFiles({ padToken: preset.padToken });
    for (const [name, text] of Object.entries(tok.files)) writeText(join('tokenizer', name), text);
    writeText('scheduler/scheduler_config.json', schedulerConfigJson(preset));
    writeText('model_index.json', modelIndexJson(preset));

    const loraDir = join(tmp, 'loras');
    mkdirSync(loraDir);
    const specs = defaultLoraSpecs(loraCount, preset, opts.loraRank);
    const loraInfos: LoraFileInfo[] = [];
    for (const spec of specs) {
      const info = writeLora(loraDir, spec, { unet: layers.unet ?? [], textEncoder: layers.text_encoder ?? [] }, seed, preset);
      bytes += info.bytes;
      loraInfos.push({ ...info, file: `${spec.name}.safetensors` });
      loraFiles.push(`${spec.name}.safetensors`);
      progress(`lora ${spec.name}: ${spec.format}, rank ${spec.rank}, ${info.unetModules} UNet + ${info.textEncoderModules} text-encoder modules`);
    }
    writeText('loras/loras.json', `${JSON.stringify(loraInfos, null, 1)}\n`);
    writeText('synth.json', `${JSON.stringify(manifest(preset, seed, params, tok.vocabSize, loraInfos), null, 2)}\n`);
    writeText('README.md', readme(preset, seed, loraInfos));

    if (existsSync(outDir)) {
      const trash = `${tmp}.old`;
      renameSync(outDir, trash);
      renameSync(tmp, outDir);
      rmSync(trash, { recursive: true, force: true });
    } else {
      renameSync(tmp, outDir);
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (e instanceof LoraserveError) throw e;
    throw new LoraserveError('IO_FAILED', `synthesizing ${preset.name} into ${outDir} failed: ${(e as Error).message}`, { outDir }, { cause: e });
  }
  progress(`${preset.name} pipeline written to ${outDir} (${(bytes / 2 ** 20).toFixed(1)} MiB, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  return { outDir, bytes, loras: loraFiles.map((f) => join(outDir, 'loras', f)) };
}
