/**
 * Random LoRA files for a generated pipeline, in the formats people actually download:
 *   - kohya-ss `networks/lora.py` (A1111 / civitai): `lora_unet_<module with _>.lora_down.weight` [r, in],
 *     `.lora_up.weight` [out, r], optional 0-d `.alpha`; 1×1 convs keep conv shapes [r, in, 1, 1] / [out, r, 1, 1];
 *     `__metadata__` with kohya's ss_* fields;
 *   - LoCon (kohya `conv_dim`, "LoRA-C3Lier"): the same keys, plus ResNet 3×3 convs with down [r, in, 3, 3] and
 *     up [out, r, 1, 1], and ResNet time_emb_proj (a Gemm in ONNX);
 *   - PEFT as diffusers' `save_lora_weights` writes it: `unet.<module>.lora_A.weight` / `.lora_B.weight`,
 *     `text_encoder.<module>…`, alpha in the `lora_adapter_metadata` JSON (`unet.lora_alpha`, `unet.r`, …).
 * Targets come from discoverTargetLayers on the generated graphs, so every key maps onto a real layer.
 * Magnitudes: each targeted weight moves by about `strength` × its own scale at LoRA weight 1.
 */
import { join } from 'node:path';
import type { TargetLayer } from '../onnx/graph-modules.js';
import { float32ToFloat16Bits } from '../tensor/float16.js';
import { fillUniform, streamSeed } from './prng.js';
import type { Preset } from './presets.js';
import { type SafetensorsTensor, writeSafetensors } from './safetensors-writer.js';

export type LoraFormat = 'kohya' | 'locon' | 'peft';

/** Which layers a LoRA trains, named like the training scripts' target sets. */
export type LoraTargetSet = 'attention' | 'cross-attention+ff+proj' | 'transformer' | 'transformer+resnet';

export interface LoraSpec {
  name: string;
  format: LoraFormat;
  rank: number;
  /** Omitted: the file has no alpha (kohya: no `.alpha` tensors; both mean alpha = rank). */
  alpha?: number;
  /** LoCon: rank and alpha of the 3×3 ResNet convs. */
  convRank?: number;
  convAlpha?: number;
  dtype: 'float32' | 'float16';
  unetTargets: LoraTargetSet;
  /** Text-encoder modules: none, attention projections, or attention + MLP. */
  textEncoderTargets: 'none' | 'attention' | 'attention+mlp';
  /** Relative change of each targeted weight at LoRA weight 1. */
  strength: number;
}

export interface LoraTargets {
  unet: readonly TargetLayer[];
  textEncoder: readonly TargetLayer[];
}

export interface LoraFileInfo {
  name: string;
  file: string;
  format: LoraFormat;
  rank: number;
  alpha: number | null;
  convRank: number | null;
  dtype: 'float32' | 'float16';
  tensors: number;
  unetModules: number;
  textEncoderModules: number;
  bytes: number;
}

const ATTN = /\.attn[12]\.to_(q|k|v|out\.0)$/;
const ATTN2 = /\.attn2\.to_(q|k|v|out\.0)$/;
const FF = /\.ff\.net\.(0\.proj|2)$/;
const PROJ = /\.(proj_in|proj_out)$/;
const RESNET = /\.resnets\.\d+\.(conv1|conv2|conv_shortcut|time_emb_proj)$|\.(downsamplers|upsamplers)\.0\.conv$/;
const TE_ATTN = /\.self_attn\.(q|k|v|out)_proj$/;
const TE_MLP = /\.mlp\.fc[12]$/;

function unetSelector(set: LoraTargetSet): (m: string) => boolean {
  switch (set) {
    case 'attention':
      return (m) => ATTN.test(m);
    case 'cross-attention+ff+proj':
      return (m) => ATTN2.test(m) || FF.test(m) || PROJ.test(m);
    case 'transformer':
      return (m) => ATTN.test(m) || FF.test(m) || PROJ.test(m);
    case 'transformer+resnet':
      return (m) => ATTN.test(m) || FF.test(m) || PROJ.test(m) || RESNET.test(m);
  }
}

function teSelector(set: LoraSpec['textEncoderTargets']): (m: string) => boolean {
  if (set === 'none') return () => false;
  if (set === 'attention') return (m) => TE_ATTN.test(m);
  return (m) => TE_ATTN.test(m) || TE_MLP.test(m);
}

/** The seed example's three LoRAs, then one LoCon and one PEFT file, then more kohya/LoCon/PEFT as asked. */
export function defaultLoraSpecs(count: number, preset: Preset, rank?: number): LoraSpec[] {
  const r = (base: number): number => rank ?? base * (preset.loraRank / 4);
  // catears / idol / stage mirror ../shared/fixtures/tiny-sd15/loras (formats, ranks, alphas, dtypes, targets);
  // strengths are set so that, on `tiny`, LoRA weight 1 changes the UNet output (t=500) by about 15% / 10% / 8%
  // like the fixture's files (costume ≈ 15%, lights ≈ 8%).
  const fixed: LoraSpec[] = [
    { name: 'catears', format: 'kohya', rank: r(4), alpha: r(4) / 2, dtype: 'float32', unetTargets: 'transformer', textEncoderTargets: 'attention+mlp', strength: 0.065 },
    { name: 'idol', format: 'kohya', rank: r(8), alpha: r(8), dtype: 'float16', unetTargets: 'attention', textEncoderTargets: 'none', strength: 0.09 },
    { name: 'stage', format: 'kohya', rank: r(2), dtype: 'float32', unetTargets: 'cross-attention+ff+proj', textEncoderTargets: 'none', strength: 0.04 },
    { name: 'costume', format: 'locon', rank: r(4), alpha: r(4), convRank: r(4), convAlpha: 1, dtype: 'float32', unetTargets: 'transformer+resnet', textEncoderTargets: 'none', strength: 0.05 },
    { name: 'lights', format: 'peft', rank: r(4), alpha: r(8), dtype: 'float32', unetTargets: 'attention', textEncoderTargets: 'attention', strength: 0.12 },
  ];
  const specs = fixed.slice(0, count);
  const formats: LoraFormat[] = ['kohya', 'locon', 'peft'];
  for (let i = fixed.length; i < count; i++) {
    const format = formats[(i - fixed.length) % 3];
    specs.push({
      name: `lora_${String(i + 1).padStart(2, '0')}`,
      format,
      rank: r(4),
      alpha: i % 2 === 0 ? r(4) : undefined,
      convRank: format === 'locon' ? r(4) : undefined,
      convAlpha: format === 'locon' ? 1 : undefined,
      dtype: i % 4 === 1 ? 'float16' : 'float32',
      unetTargets: format === 'locon' ? 'transformer+resnet' : 'transformer',
      textEncoderTargets: format === 'kohya' ? 'attention+mlp' : 'none',
      strength: 0.05,
    });
  }
  return specs;
}

interface ModuleTensors {
  down: SafetensorsTensor;
  up: SafetensorsTensor;
  alpha?: SafetensorsTensor;
}

function encode(values: Float32Array, dtype: 'float32' | 'float16'): Uint8Array {
  if (dtype === 'float32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const half = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) half[i] = float32ToFloat16Bits(values[i]);
  return new Uint8Array(half.buffer);
}

/** down/up (and alpha) for one layer; names are filled in by the caller's format. */
function moduleTensors(layer: TargetLayer, spec: LoraSpec, seed: number, prefix: string): ModuleTensors {
  const isConv3 = layer.op === 'Conv' && layer.kernel !== undefined && (layer.kernel[0] > 1 || layer.kernel[1] > 1);
  const rank = isConv3 && spec.convRank ? spec.convRank : spec.rank;
  const alpha = isConv3 && spec.convRank ? spec.convAlpha : spec.alpha;
  const k = layer.kernel ?? [1, 1];
  const fanIn = layer.inFeatures * k[0] * k[1];
  const downShape = layer.op === 'Conv' ? [rank, layer.inFeatures, k[0], k[1]] : [rank, layer.inFeatures];
  const upShape = layer.op === 'Conv' ? [layer.outFeatures, rank, 1, 1] : [layer.outFeatures, rank];
  // ΔW = (alpha/rank)·up@down. With down ~ U(±1/√fanIn) (kohya's init) and a base weight of std ≈ 1/√(3·fanIn),
  // up's bound below makes std(ΔW) ≈ strength · std(W).
  const scale = (alpha ?? rank) / rank;
  const downBound = 1 / Math.sqrt(fanIn);
  const upBound = (spec.strength * Math.sqrt(3)) / (scale * Math.sqrt(rank));
  const key = `${prefix}${layer.module}`;
  const down = fillUniform(new Float32Array(downShape.reduce((a, b) => a * b, 1)), streamSeed(seed, spec.name, key, 'down'), downBound);
  const up = fillUniform(new Float32Array(upShape.reduce((a, b) => a * b, 1)), streamSeed(seed, spec.name, key, 'up'), upBound);
  const st = spec.dtype === 'float16' ? 'F16' : 'F32';
  const out: ModuleTensors = {
    down: { name: '', dtype: st, shape: downShape, data: encode(down, spec.dtype) },
    up: { name: '', dtype: st, shape: upShape, data: encode(up, spec.dtype) },
  };
  if (alpha !== undefined && spec.format !== 'peft') {
    out.alpha = { name: '', dtype: st, shape: [], data: encode(Float32Array.of(alpha), spec.dtype) };
  }
  return out;
}

/** The tensors and metadata of one LoRA file. */
export function buildLora(
  spec: LoraSpec,
  targets: LoraTargets,
  seed: number,
  preset: Preset,
): { tensors: SafetensorsTensor[]; metadata: Record<string, string>; unetModules: number; textEncoderModules: number } {
  const unet = targets.unet.filter((l) => unetSelector(spec.unetTargets)(l.module));
  const te = targets.textEncoder.filter((l) => teSelector(spec.textEncoderTargets)(l.module));
  const tensors: SafetensorsTensor[] = [];
  const add = (layers: readonly TargetLayer[], part: 'unet' | 'te'): void => {
    for (const layer of layers) {
      const t = moduleTensors(layer, spec, seed, part === 'unet' ? 'unet.' : 'text_encoder.');
      if (spec.format === 'peft') {
        const base = `${part === 'unet' ? 'unet' : 'text_encoder'}.${layer.module}`;
        tensors.push({ ...t.down, name: `${base}.lora_A.weight` }, { ...t.up, name: `${base}.lora_B.weight` });
      } else {
        const base = `lora_${part}_${layer.module.replace(/\./g, '_')}`;
        tensors.push({ ...t.down, name: `${base}.lora_down.weight` }, { ...t.up, name: `${base}.lora_up.weight` });
        if (t.alpha) tensors.push({ ...t.alpha, name: `${base}.alpha` });
      }
    }
  };
  add(unet, 'unet');
  add(te, 'te');
  const metadata = spec.format === 'peft' ? peftMetadata(spec, unet, te) : kohyaMetadata(spec, preset);
  return { tensors, metadata, unetModules: unet.length, textEncoderModules: te.length };
}

/** Python's str(float): 2 → '2.0', 0.5 → '0.5'. */
function pyFloat(x: number): string {
  return Number.isInteger(x) ? `${x}.0` : String(x);
}

function kohyaMetadata(spec: LoraSpec, preset: Preset): Record<string, string> {
  const tags = spec.name === 'catears' ? ['cat ears', '1girl', 'animal ear fluff', 'brown hair'] : ['1girl', spec.name.replace(/_/g, ' '), 'solo'];
  const frequency = Object.fromEntries(tags.map((t, i) => [t, 40 - 7 * i]));
  const meta: Record<string, string> = {
    ss_network_module: 'networks.lora',
    ss_network_dim: String(spec.rank),
    // kohya stores the float network_alpha with str(): 2 → '2.0'. Without alpha the file says the rank.
    ss_network_alpha: spec.alpha === undefined ? String(spec.rank) : pyFloat(spec.alpha),
    ss_output_name: spec.name,
    ss_base_model_version: preset.family,
    ss_v2: String(preset.family === 'sd_v2' ? 'True' : 'False'),
    ss_sd_model_name: `loraserve-synth-${preset.name}`,
    ss_resolution: preset.family === 'sd_v2' ? '(768, 768)' : '(512, 512)',
    ss_tag_frequency: JSON.stringify({ [`10_${spec.name}`]: frequency }),
    ss_training_comment: 'random synthetic LoRA (no training), generated by loraserve synth',
  };
  if (spec.format === 'locon') {
    meta.ss_network_args = JSON.stringify({ conv_dim: String(spec.convRank ?? spec.rank), conv_alpha: String(spec.convAlpha ?? spec.convRank ?? spec.rank) });
  }
  return meta;
}

/** PEFT's target_modules name: the module's last attribute (`to_q`), with a trailing index (`to_out.0`). */
function leafName(module: string): string {
  const parts = module.split('.');
  const last = parts[parts.length - 1];
  return /^\d+$/.test(last) ? parts.slice(-2).join('.') : last;
}

function peftMetadata(spec: LoraSpec, unet: readonly TargetLayer[], te: readonly TargetLayer[]): Record<string, string> {
  const config = (layers: readonly TargetLayer[]) => ({
    bias: 'none',
    init_lora_weights: true,
    lora_alpha: spec.alpha ?? spec.rank,
    lora_dropout: 0,
    peft_type: 'LORA',
    r: spec.rank,
    target_modules: [...new Set(layers.map((l) => leafName(l.module)))].sort(),
    use_dora: false,
    use_rslora: false,
  });
  // diffusers' _pack_dict_with_prefix: every LoraConfig field as "<component>.<field>".
  const packed: Record<string, unknown> = {};
  for (const [prefix, layers] of [['unet', unet], ['text_encoder', te]] as const) {
    if (layers.length === 0) continue;
    for (const [k, v] of Object.entries(config(layers))) packed[`${prefix}.${k}`] = v;
  }
  const sorted = Object.fromEntries(Object.entries(packed).sort(([a], [b]) => (a < b ? -1 : 1)));
  return { format: 'pt', lora_adapter_metadata: JSON.stringify(sorted, null, 2) };
}

/** Writes `<dir>/<name>.safetensors` for one spec. */
export function writeLora(dir: string, spec: LoraSpec, targets: LoraTargets, seed: number, preset: Preset): LoraFileInfo {
  const { tensors, metadata, unetModules, textEncoderModules } = buildLora(spec, targets, seed, preset);
  const file = join(dir, `${spec.name}.safetensors`);
  const bytes = writeSafetensors(file, tensors, metadata);
  return {
    name: spec.name,
    file,
    format: spec.format,
    rank: spec.rank,
    alpha: spec.alpha ?? null,
    convRank: spec.convRank ?? null,
    dtype: spec.dtype,
    tensors: tensors.length,
    unetModules,
    textEncoderModules,
    bytes,
  };
}
