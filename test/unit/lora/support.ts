/** Shared by the lora unit tests: SD1.5-shaped target lists, tensor byte helpers, and safetensors builders. */
import assert from 'node:assert/strict';
import { LoraserveError } from '../../../src/core/errors.js';
import type { LoraTarget } from '../../../src/lora/types.js';
import { encodeSafetensors, type SafetensorsTensor } from '../../../src/synth/safetensors-writer.js';
import { float32ToFloat16Array } from '../../../src/tensor/float16.js';

export interface SdDims {
  channels: [number, number, number, number];
  context: number;
  teHidden: number;
  teIntermediate: number;
  teLayers: number;
}

/** Tiny dims with SD1.5's structure (the real SD1.5: [320, 640, 1280, 1280], context 768, CLIP 768/3072 × 12). */
export const TINY: SdDims = { channels: [8, 12, 16, 16], context: 12, teHidden: 12, teIntermediate: 20, teLayers: 2 };

const lin = (part: LoraTarget['part'], module: string, inF: number, outF: number): LoraTarget => ({ part, module, kind: 'linear', inFeatures: inF, outFeatures: outF });
const conv = (module: string, inF: number, outF: number, k: number): LoraTarget => ({ part: 'unet', module, kind: 'conv', inFeatures: inF, outFeatures: outF, kernel: [k, k] });

function transformer(prefix: string, c: number, ctx: number): LoraTarget[] {
  const t = `${prefix}.transformer_blocks.0`;
  return [
    conv(`${prefix}.proj_in`, c, c, 1),
    lin('unet', `${t}.attn1.to_q`, c, c),
    lin('unet', `${t}.attn1.to_k`, c, c),
    lin('unet', `${t}.attn1.to_v`, c, c),
    lin('unet', `${t}.attn1.to_out.0`, c, c),
    lin('unet', `${t}.attn2.to_q`, c, c),
    lin('unet', `${t}.attn2.to_k`, ctx, c),
    lin('unet', `${t}.attn2.to_v`, ctx, c),
    lin('unet', `${t}.attn2.to_out.0`, c, c),
    lin('unet', `${t}.ff.net.0.proj`, c, 8 * c),
    lin('unet', `${t}.ff.net.2`, 4 * c, c),
    conv(`${prefix}.proj_out`, c, c, 1),
  ];
}

function resnet(prefix: string, inC: number, outC: number, temb: number): LoraTarget[] {
  const out = [conv(`${prefix}.conv1`, inC, outC, 3), lin('unet', `${prefix}.time_emb_proj`, temb, outC), conv(`${prefix}.conv2`, outC, outC, 3)];
  if (inC !== outC) out.push(conv(`${prefix}.conv_shortcut`, inC, outC, 1));
  return out;
}

/** Every Linear/Conv2d of an SD1.5-structured UNet and CLIP text encoder, in module order. */
export function sd15Targets(d: SdDims = TINY): LoraTarget[] {
  const ch = d.channels;
  const temb = 4 * ch[0];
  const out: LoraTarget[] = [conv('conv_in', 4, ch[0], 3), lin('unet', 'time_embedding.linear_1', ch[0], temb), lin('unet', 'time_embedding.linear_2', temb, temb)];
  let prev = ch[0];
  const skips: number[] = [ch[0]];
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 2; j++) {
      out.push(...resnet(`down_blocks.${i}.resnets.${j}`, j === 0 ? prev : ch[i], ch[i], temb));
      if (i < 3) out.push(...transformer(`down_blocks.${i}.attentions.${j}`, ch[i], d.context));
      skips.push(ch[i]);
    }
    prev = ch[i];
    if (i < 3) {
      out.push(conv(`down_blocks.${i}.downsamplers.0.conv`, ch[i], ch[i], 3));
      skips.push(ch[i]);
    }
  }
  out.push(...resnet('mid_block.resnets.0', ch[3], ch[3], temb), ...transformer('mid_block.attentions.0', ch[3], d.context), ...resnet('mid_block.resnets.1', ch[3], ch[3], temb));
  const rev = [...ch].reverse();
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 3; j++) {
      const skip = skips.pop() ?? 0;
      out.push(...resnet(`up_blocks.${i}.resnets.${j}`, prev + skip, rev[i], temb));
      prev = rev[i];
      if (i > 0) out.push(...transformer(`up_blocks.${i}.attentions.${j}`, rev[i], d.context));
    }
    if (i < 3) out.push(conv(`up_blocks.${i}.upsamplers.0.conv`, rev[i], rev[i], 3));
  }
  out.push(conv('conv_out', ch[0], 4, 3));
  for (let l = 0; l < d.teLayers; l++) {
    const p = `text_model.encoder.layers.${l}`;
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) out.push(lin('te', `${p}.self_attn.${proj}`, d.teHidden, d.teHidden));
    out.push(lin('te', `${p}.mlp.fc1`, d.teHidden, d.teIntermediate), lin('te', `${p}.mlp.fc2`, d.teIntermediate, d.teHidden));
  }
  return out;
}

export function target(targets: readonly LoraTarget[], module: string, part: LoraTarget['part'] = module.startsWith('text_model') ? 'te' : 'unet'): LoraTarget {
  const t = targets.find((x) => x.module === module && x.part === part);
  assert.ok(t, `no target ${part}:${module}`);
  return t;
}

export const f32 = (v: ArrayLike<number>): Uint8Array => new Uint8Array(Float32Array.from(v).buffer);
export const f16 = (v: ArrayLike<number>): Uint8Array => new Uint8Array(float32ToFloat16Array(v).buffer);
export const f64 = (v: ArrayLike<number>): Uint8Array => new Uint8Array(Float64Array.from(v).buffer);
export function bf16(v: ArrayLike<number>): Uint8Array {
  const f = Float32Array.from(v);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = u[i] >>> 16; // truncation: the test values are exact in bf16
  return new Uint8Array(out.buffer);
}

/** Deterministic small values (exact in fp16 and bf16: multiples of 1/64 in [-1, 1)). */
export function ramp(n: number, seed = 1): Float32Array {
  const out = new Float32Array(n);
  let x = seed * 7919;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out[i] = (Math.floor((x / 2147483648) * 128) - 64) / 64;
  }
  return out;
}

type Dtype = 'F32' | 'F16' | 'BF16';
const enc: Record<Dtype, (v: ArrayLike<number>) => Uint8Array> = { F32: f32, F16: f16, BF16: bf16 };

export interface PairSpec {
  down: string;
  up: string;
  alpha?: string;
  alphaValue?: number;
  rank: number;
  dtype?: Dtype;
  /** Override shapes (e.g. SDXL dims). */
  downShape?: number[];
  upShape?: number[];
  seed?: number;
}

/** down/up (+ alpha) tensors for one target: linear [r, in]/[out, r]; conv [r, in, k, k]/[out, r, 1, 1]. */
export function pair(t: LoraTarget, s: PairSpec): { tensors: SafetensorsTensor[]; down: Float32Array; up: Float32Array } {
  const dtype = s.dtype ?? 'F32';
  const k = t.kernel ?? [1, 1];
  const downShape = s.downShape ?? (t.kind === 'conv' ? [s.rank, t.inFeatures, k[0], k[1]] : [s.rank, t.inFeatures]);
  const upShape = s.upShape ?? (t.kind === 'conv' ? [t.outFeatures, s.rank, 1, 1] : [t.outFeatures, s.rank]);
  const down = ramp(downShape.reduce((a, b) => a * b, 1), s.seed ?? 1);
  const up = ramp(upShape.reduce((a, b) => a * b, 1), (s.seed ?? 1) + 1000);
  const tensors: SafetensorsTensor[] = [
    { name: s.down, dtype, shape: downShape, data: enc[dtype](down) },
    { name: s.up, dtype, shape: upShape, data: enc[dtype](up) },
  ];
  if (s.alpha) tensors.push({ name: s.alpha, dtype, shape: [], data: enc[dtype]([s.alphaValue ?? s.rank]) });
  return { tensors, down, up };
}

/** A kohya pair for a module: `lora_<prefix>_<module with _>.lora_down.weight` … */
export function kohya(t: LoraTarget, rank: number, opts: { alpha?: number; dtype?: Dtype; prefix?: string; name?: string; seed?: number } = {}) {
  const base = `lora_${opts.prefix ?? t.part}_${opts.name ?? t.module.replace(/\./g, '_')}`;
  return pair(t, {
    down: `${base}.lora_down.weight`,
    up: `${base}.lora_up.weight`,
    alpha: opts.alpha === undefined ? undefined : `${base}.alpha`,
    alphaValue: opts.alpha,
    rank,
    dtype: opts.dtype,
    seed: opts.seed,
  });
}

export function file(tensors: SafetensorsTensor[], metadata?: Record<string, string>): Uint8Array {
  return new Uint8Array(encodeSafetensors(tensors, metadata));
}

/** Hand-built bytes for malformed files: an explicit header object (or raw header text) and data section. */
export function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), opts: { headerLength?: bigint } = {}): Uint8Array {
  const json = typeof header === 'string' ? Buffer.from(header, 'utf8') : Buffer.from(JSON.stringify(header), 'utf8');
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, opts.headerLength ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

/** Asserts that fn throws a LoraserveError with this code (and, optionally, message pattern / details.problem). */
export function throwsCode(fn: () => unknown, code: string, pattern?: RegExp, problem?: string): LoraserveError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof LoraserveError, `expected LoraserveError ${code}, got ${caught === undefined ? 'no error' : String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (pattern) assert.match(caught.message, pattern);
  if (problem) assert.equal(caught.details?.problem, problem, caught.message);
  return caught;
}

export async function rejectsCode(p: Promise<unknown>, code: string, pattern?: RegExp): Promise<LoraserveError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof LoraserveError, `expected LoraserveError ${code}, got ${caught === undefined ? 'no error' : String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (pattern) assert.match(caught.message, pattern);
  return caught;
}

/** Reference merge: scale · up @ down as [out, in·kh·kw] (row-major). */
export function delta(up: Float32Array, down: Float32Array, out: number, rank: number, scale: number): Float64Array {
  const cols = down.length / rank;
  const d = new Float64Array(out * cols);
  for (let o = 0; o < out; o++) for (let r = 0; r < rank; r++) for (let c = 0; c < cols; c++) d[o * cols + c] += scale * up[o * rank + r] * down[r * cols + c];
  return d;
}
