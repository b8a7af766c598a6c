/**
 * torch.nn modules as torch.onnx (opset 14) exports them: one function per module, emitting the same ops in
 * the same order with the same initializer naming as ../shared/fixtures/tiny-sd15 (torch 1.13 + diffusers
 * 0.21.4 / transformers 4.33). Weight initialisation follows torch's defaults (kaiming-uniform with a = √5,
 * i.e. U(±1/√fan_in)) unless a caller passes its own bound, which keeps activations O(1) through deep stacks.
 */
import { af, ai, aints, astr, type GraphBuilder, type WeightInit } from './graph-builder.js';

export interface LinearOptions {
  bias?: boolean;
  /** Weight bound; default torch's U(±1/√in). */
  weightBound?: number;
  /** Bias bound; default torch's U(±1/√in). */
  biasBound?: number;
}

/**
 * nn.Linear applied to a 3-D activation: `MatMul(x, Wᵀ)` then `Add(bias, ·)`. The exporter folds Wᵀ into an
 * anonymous initializer `onnx::MatMul_<n>` of shape [in, out]; the bias keeps its torch name.
 */
export function linear(b: GraphBuilder, mod: string, x: string, inF: number, outF: number, o: LinearOptions = {}): string {
  const w = b.anonymousParam('MatMul', `${mod}.weight`, [inF, outF], { bound: o.weightBound ?? 1 / Math.sqrt(inF) });
  const y = b.op(mod, 'MatMul', [x, w]);
  if (o.bias === false) return y;
  const bias = b.param(`${mod}.bias`, [outF], { bound: o.biasBound ?? 1 / Math.sqrt(inF) });
  return b.op(mod, 'Add', [bias, y]);
}

/** nn.Linear applied to a 2-D activation: `Gemm(x, W, b, transB=1)`, torch names and [out, in] layout. */
export function gemm(b: GraphBuilder, mod: string, x: string, inF: number, outF: number): string {
  const bound = 1 / Math.sqrt(inF);
  const w = b.param(`${mod}.weight`, [outF, inF], { bound });
  const bias = b.param(`${mod}.bias`, [outF], { bound });
  return b.op(mod, 'Gemm', [x, w, bias], { alpha: af(1), beta: af(1), transB: ai(1) });
}

export interface ConvOptions {
  stride?: number;
  /** Symmetric padding; default (k - 1) / 2. */
  pad?: number;
  /** Multiplies torch's default weight bound. */
  gain?: number;
}

/** nn.Conv2d: `Conv(x, W, b)` with torch names and [out, in, kh, kw] layout. */
export function conv2d(b: GraphBuilder, mod: string, x: string, inC: number, outC: number, k: number, o: ConvOptions = {}): string {
  const fanIn = inC * k * k;
  const bound = 1 / Math.sqrt(fanIn);
  const w = b.param(`${mod}.weight`, [outC, inC, k, k], { bound: bound * (o.gain ?? 1) });
  const bias = b.param(`${mod}.bias`, [outC], { bound });
  const p = o.pad ?? (k - 1) / 2;
  const s = o.stride ?? 1;
  return b.op(mod, 'Conv', [x, w, bias], {
    dilations: aints([1, 1]),
    group: ai(1),
    kernel_shape: aints([k, k]),
    pads: aints([p, p, p, p]),
    strides: aints([s, s]),
  });
}

/** Norm affine parameters: around (1, 0) with a little noise, so a swapped weight/bias would show. */
const NORM_WEIGHT: WeightInit = { center: 1, bound: 0.1 };
const NORM_BIAS: WeightInit = { bound: 0.05 };

/** nn.LayerNorm over the last axis, decomposed as torch 1.13 exports it at opset 14. */
export function layerNorm(b: GraphBuilder, mod: string, x: string, dim: number, eps: number): string {
  const mean = b.op(mod, 'ReduceMean', [x], { axes: aints([-1]) });
  const centered = b.op(mod, 'Sub', [x, mean]);
  const sq = b.op(mod, 'Pow', [centered, b.f32(mod, [2])]);
  const variance = b.op(mod, 'ReduceMean', [sq], { axes: aints([-1]) });
  const std = b.op(mod, 'Sqrt', [b.op(mod, 'Add', [variance, b.f32(mod, [eps])])]);
  const normed = b.op(mod, 'Div', [centered, std]);
  const scaled = b.op(mod, 'Mul', [normed, b.param(`${mod}.weight`, [dim], NORM_WEIGHT)]);
  return b.op(mod, 'Add', [scaled, b.param(`${mod}.bias`, [dim], NORM_BIAS)]);
}

/**
 * nn.GroupNorm as torch exports it: reshape to [N, G, -1], InstanceNormalization with unit affine, reshape
 * back, then the real affine as `Mul`/`Add` with constant-folded [C, 1, 1] (or [C, 1] on 3-D input)
 * initializers named `onnx::Mul_<n>` / `onnx::Add_<n>`.
 */
export function groupNorm(b: GraphBuilder, mod: string, x: string, channels: number, groups: number, eps: number, rank: 3 | 4 = 4): string {
  const grouped = b.op(mod, 'Reshape', [x, b.i64(mod, [0, groups, -1])], { allowzero: ai(0) });
  const ones = b.f32(mod, new Array(groups).fill(1), [groups]);
  const zeros = b.f32(mod, new Array(groups).fill(0), [groups]);
  const normed = b.op(mod, 'InstanceNormalization', [grouped, ones, zeros], { epsilon: af(eps) });
  const back = b.op(mod, 'Reshape', [normed, b.op(mod, 'Shape', [x])], { allowzero: ai(0) });
  const affineDims = rank === 4 ? [channels, 1, 1] : [channels, 1];
  const scaled = b.op(mod, 'Mul', [back, b.anonymousParam('Mul', `${mod}.weight`, affineDims, NORM_WEIGHT)]);
  return b.op(mod, 'Add', [scaled, b.anonymousParam('Add', `${mod}.bias`, affineDims, NORM_BIAS)]);
}

/** nn.SiLU: x · sigmoid(x). */
export function silu(b: GraphBuilder, mod: string, x: string): string {
  return b.op(mod, 'Mul', [x, b.op(mod, 'Sigmoid', [x])]);
}

/** Exact GELU (erf form), as F.gelu exports at opset 14. */
export function gelu(b: GraphBuilder, mod: string, x: string): string {
  const erf = b.op(mod, 'Erf', [b.op(mod, 'Div', [x, b.f32(mod, [Math.SQRT2])])]);
  const onePlus = b.op(mod, 'Add', [erf, b.f32(mod, [1])]);
  return b.op(mod, 'Mul', [b.op(mod, 'Mul', [x, onePlus]), b.f32(mod, [0.5])]);
}

/** CLIP's quick_gelu: x · sigmoid(1.702 x). */
export function quickGelu(b: GraphBuilder, mod: string, x: string): string {
  const sig = b.op(mod, 'Sigmoid', [b.op(mod, 'Mul', [x, b.f32(mod, [1.702])])]);
  return b.op(mod, 'Mul', [x, sig]);
}

/** Reshape with a constant target shape (0 = copy that input dim, -1 = infer). */
export function reshape(b: GraphBuilder, mod: string, x: string, shape: number[]): string {
  return b.op(mod, 'Reshape', [x, b.i64(mod, shape)], { allowzero: ai(0) });
}

export function transpose(b: GraphBuilder, mod: string, x: string, perm: number[]): string {
  return b.op(mod, 'Transpose', [x], { perm: aints(perm) });
}

/** F.interpolate(scale_factor=2, mode="nearest") at opset 14. */
export function upsampleNearest2x(b: GraphBuilder, mod: string, x: string): string {
  return b.op(mod, 'Resize', [x, '', b.f32(mod, [1, 1, 2, 2], [4])], {
    coordinate_transformation_mode: astr('asymmetric'),
    cubic_coeff_a: af(-0.75),
    mode: astr('nearest'),
    nearest_mode: astr('floor'),
  });
}

