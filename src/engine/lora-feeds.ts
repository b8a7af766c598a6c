/**
 * Where LoRA files meet the graph: a request's scale plan (src/lora) becomes the feeds of the low-rank
 * branches the load-time rewrite added (src/onnx/lora-branches.ts): per branch, with the active LoRAs'
 * factors stacked along the rank axis R,
 *
 *   linear:  A [R, in] = [down₁ ; down₂ ; …]          B [R, out] = [up₁ᵀ ; up₂ᵀ ; …]   (the graph transposes A)
 *   conv:    A [R, in, kh, kw] = [down₁ ; down₂ ; …]  B [out, R, 1, 1] = [up₁ | up₂ | …]
 *   s [R]    per-rank scale: weight × block weight × alpha/rank
 *
 * so that ((x·Aᵀ) ⊙ s)·B = Σᵢ sᵢ · x · downᵢᵀ · upᵢᵀ = x · (Σᵢ sᵢ · upᵢ @ downᵢ)ᵀ, the merged delta. A is the
 * files' own layout: stacking it is row copies, and a single LoRA's down is fed as is.
 *
 * Cost model: A and B depend only on WHICH LoRA layers are active, not on their weights. Each LoRA layer is put
 * in feed layout once (cached), a single active LoRA is fed without a copy, and a combination is stacked once
 * and cached; new weights only rebuild the small s vectors. Branches no LoRA touches get zero-size feeds
 * (R = 0), which add exactly nothing.
 */
import { LoraserveError } from '../core/errors.js';
import type { LoraLayer, ScalePlan, ScaledLayer } from '../lora/index.js';
import type { LoraBranch, LoraBranchPlan } from '../onnx/lora-branches.js';
import { float32ToFloat16Array } from '../tensor/float16.js';
import type { HostTensor } from '../tensor/host-tensor.js';

export type FeedSet = Record<string, HostTensor>;

type Data = Float32Array | Uint16Array;

function tensorOf(dtype: 'float32' | 'float16', data: Data, dims: number[]): HostTensor {
  return dtype === 'float32' ? { type: 'float32', data: data as Float32Array, dims } : { type: 'float16', data: data as Uint16Array, dims };
}

function convert(dtype: 'float32' | 'float16', data: Float32Array): Data {
  return dtype === 'float32' ? data : float32ToFloat16Array(data);
}

function scaleDims(b: LoraBranch, R: number): number[] {
  return b.kind === 'conv' ? [R, 1, 1] : [R];
}

function downDims(b: LoraBranch, R: number): number[] {
  return b.kind === 'conv' ? [R, b.inFeatures, b.kernel[0], b.kernel[1]] : [R, b.inFeatures];
}

function upDims(b: LoraBranch, R: number): number[] {
  return b.kind === 'conv' ? [b.outFeatures, R, 1, 1] : [R, b.outFeatures];
}

/** [rows, cols] → [cols, rows]. */
function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(m.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = m[i * cols + j];
  return t;
}

/** Copies `part` ([rows, w]) into columns [off, off+w) of `dst` ([rows, W]); a plain loop (w is a rank: small). */
function setColumns(dst: Data, part: Data, rows: number, W: number, w: number, off: number): void {
  for (let i = 0, src = 0; i < rows; i++) {
    const base = i * W + off;
    for (let j = 0; j < w; j++, src++) dst[base + j] = part[src];
  }
}

/** Zero-rank feeds for every branch: the graph then computes exactly the base model. */
export function emptyFeeds(plan: LoraBranchPlan): FeedSet {
  const feeds: FeedSet = {};
  for (const b of plan.branches) {
    const empty = b.dtype === 'float32' ? new Float32Array(0) : new Uint16Array(0);
    feeds[b.downInput] = tensorOf(b.dtype, empty, downDims(b, 0));
    feeds[b.upInput] = tensorOf(b.dtype, empty, upDims(b, 0));
    feeds[b.scaleInput] = tensorOf(b.dtype, empty, scaleDims(b, 0));
  }
  return feeds;
}

/** One LoRA layer's factors in feed layout (A and B of a single-LoRA branch). */
interface PreparedLayer {
  a: Data;
  b: Data;
}

interface StackedFactors {
  a: Data;
  b: Data;
  bytes: number;
}

/**
 * Per-LoRA-layer arrays in feed layout and per-combination stacks, both cached. Keys are the LoraLayer
 * objects themselves (a changed file yields new objects, so nothing stale is ever reused).
 */
export class LoraFactorCache {
  private readonly prepared = new WeakMap<LoraLayer, Map<string, PreparedLayer>>();
  private readonly ids = new WeakMap<LoraLayer, number>();
  private nextId = 1;
  private readonly stacks = new Map<string, StackedFactors>();
  private stackBytes = 0;

  constructor(private readonly maxStackBytes = 512 * 2 ** 20) {}

  get bytes(): number {
    return this.stackBytes;
  }

  private idOf(l: LoraLayer): number {
    let id = this.ids.get(l);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(l, id);
    }
    return id;
  }

  /** Puts every layer of a LoRA in feed layout now (at its first use), so a new combination only stacks. */
  prepareAll(branches: LoraBranchPlan, layers: readonly LoraLayer[]): void {
    for (const l of layers) {
      const b = branches.byModule.get(l.module);
      if (b) this.prepare(b, l);
    }
  }

  /** The layer's factors in the branch's layout and dtype, checked against the branch's shape. */
  prepare(b: LoraBranch, layer: LoraLayer): PreparedLayer {
    let byType = this.prepared.get(layer);
    const hit = byType?.get(b.dtype);
    if (hit) return hit;
    if (layer.outFeatures !== b.outFeatures || layer.inFeatures !== b.inFeatures) {
      throw new LoraserveError('LORA_MISMATCH', `LoRA layer ${layer.key} has in ${layer.inFeatures} / out ${layer.outFeatures}; ${b.module} is ${b.inFeatures} / ${b.outFeatures}`, { module: b.module });
    }
    const [kh, kw] = layer.downKernel;
    if (kh !== b.kernel[0] || kw !== b.kernel[1]) {
      throw new LoraserveError('LORA_MISMATCH', `LoRA layer ${layer.key} has a ${kh}x${kw} down kernel; ${b.module} is ${b.kernel[0]}x${b.kernel[1]}`, { module: b.module });
    }
    const r = layer.rank;
    const prepared =
      b.kind === 'conv'
        ? { a: convert(b.dtype, layer.down), b: convert(b.dtype, layer.up) }
        : { a: convert(b.dtype, layer.down), b: convert(b.dtype, transpose(layer.up, b.outFeatures, r)) };
    if (!byType) {
      byType = new Map();
      this.prepared.set(layer, byType);
    }
    byType.set(b.dtype, prepared);
    return prepared;
  }

  /** A and B for this combination of layers (no copy for a single layer). */
  stack(b: LoraBranch, layers: readonly ScaledLayer[]): PreparedLayer {
    if (layers.length === 1) return this.prepare(b, layers[0].layer);
    const key = `${b.dtype}|${b.module}|${layers.map((l) => this.idOf(l.layer)).join(',')}`;
    const hit = this.stacks.get(key);
    if (hit) {
      this.stacks.delete(key);
      this.stacks.set(key, hit);
      return hit;
    }
    const parts = layers.map((l) => this.prepare(b, l.layer));
    const R = layers.reduce((n, l) => n + l.layer.rank, 0);
    const rowLen = b.inFeatures * b.kernel[0] * b.kernel[1];
    const make = (n: number): Data => (b.dtype === 'float32' ? new Float32Array(n) : new Uint16Array(n));
    const a = make(R * rowLen);
    const bb = make(R * b.outFeatures);
    let off = 0;
    for (let i = 0; i < parts.length; i++) {
      const r = layers[i].layer.rank;
      a.set(parts[i].a as never, off * rowLen); // rows, both kinds
      if (b.kind === 'conv') setColumns(bb, parts[i].b, b.outFeatures, R, r, off);
      else bb.set(parts[i].b as never, off * b.outFeatures); // rows
      off += r;
    }
    const entry = { a, b: bb, bytes: a.byteLength + bb.byteLength };
    this.stacks.set(key, entry);
    this.stackBytes += entry.bytes;
    while (this.stackBytes > this.maxStackBytes && this.stacks.size > 1) {
      const [k, v] = this.stacks.entries().next().value!;
      this.stacks.delete(k);
      this.stackBytes -= v.bytes;
    }
    return entry;
  }
}

/**
 * Feeds for one part (unet or te) of a scale plan; branches the plan does not touch reuse `empty`.
 * A planned module the graph has no branch for is an error (the LoRA was matched against these same targets).
 */
export function buildFeeds(branches: LoraBranchPlan, layers: ReadonlyMap<string, ScaledLayer[]>, empty: FeedSet, cache: LoraFactorCache): FeedSet {
  const feeds: FeedSet = { ...empty };
  for (const [module, list] of layers) {
    const b = branches.byModule.get(module);
    if (!b) throw new LoraserveError('LORA_MISMATCH', `LoRA targets ${module}, which this model's graph has no LoRA branch for`, { module });
    const { a, b: up } = cache.stack(b, list);
    const R = list.reduce((n, l) => n + l.layer.rank, 0);
    const scale = new Float32Array(R);
    let off = 0;
    for (const l of list) {
      scale.fill(l.scale, off, off + l.layer.rank);
      off += l.layer.rank;
    }
    feeds[b.downInput] = tensorOf(b.dtype, a, downDims(b, R));
    feeds[b.upInput] = tensorOf(b.dtype, up, upDims(b, R));
    feeds[b.scaleInput] = tensorOf(b.dtype, convert(b.dtype, scale), scaleDims(b, R));
  }
  return feeds;
}

/** Both parts of a plan, as one object the render loop passes with every text-encoder / UNet run. */
export interface LoraFeeds {
  unet: FeedSet;
  te: FeedSet;
  signature: string;
}

export function feedsForPlan(plan: ScalePlan, unet: LoraBranchPlan, te: LoraBranchPlan, empty: { unet: FeedSet; te: FeedSet }, cache: LoraFactorCache): LoraFeeds {
  return { unet: buildFeeds(unet, plan.unet, empty.unet, cache), te: buildFeeds(te, plan.te, empty.te, cache), signature: plan.signature };
}
