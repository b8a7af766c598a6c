/**
 * Where LoRA files meet the graph: a request's scale plan (src/lora) becomes the feeds of the low-rank
 * branches the load-time rewrite added (src/onnx/lora-branches.ts). Per branch, with the active LoRAs'
 * factors stacked along the rank axis R, both in the files' own layouts:
 *
 *   A [R, in(, kh, kw)]  = [down₁ ; down₂ ; …]            rows
 *   B [out, R(, 1, 1)]   = [s₁·up₁ | s₂·up₂ | …]          sᵢ = weight × block weight × alpha/rank
 *
 * so that the graph's (x·Aᵀ)·Bᵀ (conv: conv(conv(x; A); B)) = Σᵢ sᵢ · x · downᵢᵀ · upᵢᵀ, the merged delta.
 *
 * Cost model (bench/lora-resolve.ts, bench/lora.ts):
 *   - A depends only on WHICH LoRA layers are active. A single LoRA whose precision matches the graph is fed
 *     as is (no copy); otherwise its stack — row copies, fp16 widened or fp32 narrowed to the graph's dtype —
 *     is made once per combination and cached.
 *   - B carries the per-rank scale. Folding s into B instead of feeding it saves a Mul node and an input per
 *     branch on every UNet step; the price is that B is built per combination AND weights (also cached), so
 *     new weights for a seen set rebuild B only: every LoRA's r columns of a row are one contiguous run.
 *   - Both caches share one LRU bounded by bytes; the loaded LoRAs themselves (src/lora, fp16 kept fp16) are
 *     the only per-LoRA copy. Branches no LoRA touches get zero-size feeds (R = 0), which add exactly nothing.
 */
import { LoraserveError } from '../core/errors.js';
import type { LoraFactor, LoraLayer, ScalePlan, ScaledLayer } from '../lora/index.js';
import type { LoraBranch, LoraBranchPlan } from '../onnx/lora-branches.js';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../tensor/float16.js';
import type { HostTensor } from '../tensor/host-tensor.js';

export type FeedSet = Record<string, HostTensor>;

type Data = Float32Array | Uint16Array;

function tensorOf(dtype: 'float32' | 'float16', data: Data, dims: number[]): HostTensor {
  return dtype === 'float32' ? { type: 'float32', data: data as Float32Array, dims } : { type: 'float16', data: data as Uint16Array, dims };
}

function downDims(b: LoraBranch, R: number): number[] {
  return b.kind === 'conv' ? [R, b.inFeatures, b.kernel[0], b.kernel[1]] : [R, b.inFeatures];
}

function upDims(b: LoraBranch, R: number): number[] {
  return b.kind === 'conv' ? [b.outFeatures, R, 1, 1] : [b.outFeatures, R];
}

const rankOf = (layers: readonly ScaledLayer[]): number => layers.reduce((n, l) => n + l.layer.rank, 0);

let f16Table: Float32Array | undefined;
/** fp16 bits → float32, as a 256 KiB table (widening inside the stacking loops, without a temporary array). */
function widenTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) f16Table[bits] = float16BitsToFloat32(bits);
  }
  return f16Table;
}

/** Copies `src` into `dst` at `at`, converted to dst's precision (a memcpy when they agree). */
function copyInto(dst: Data, at: number, src: LoraFactor): void {
  const dstHalf = dst instanceof Uint16Array;
  if (dstHalf === src instanceof Uint16Array) {
    (dst as Float32Array).set(src as Float32Array, at);
  } else if (dstHalf) {
    for (let i = 0; i < src.length; i++) dst[at + i] = float32ToFloat16Bits(src[i]);
  } else {
    const t = widenTable();
    for (let i = 0; i < src.length; i++) dst[at + i] = t[src[i]];
  }
}

/** B = [s₁·up₁ | s₂·up₂ | …] as [out, R]: each s·up is computed in double and rounded once to B's dtype. */
function scaledUp(b: LoraBranch, layers: readonly ScaledLayer[], R: number): Data {
  const rows = b.outFeatures;
  const half = b.dtype === 'float16';
  const dst = half ? new Uint16Array(rows * R) : new Float32Array(rows * R);
  let off = 0;
  for (const { layer, scale } of layers) {
    const r = layer.rank;
    const up = layer.up;
    const t = up instanceof Uint16Array ? widenTable() : undefined;
    for (let o = 0, src = 0; o < rows; o++) {
      const base = o * R + off;
      if (half) for (let j = 0; j < r; j++, src++) dst[base + j] = float32ToFloat16Bits(scale * (t ? t[up[src]] : up[src]));
      else if (t) for (let j = 0; j < r; j++, src++) dst[base + j] = scale * t[up[src]];
      else for (let j = 0; j < r; j++, src++) dst[base + j] = scale * up[src];
    }
    off += r;
  }
  return dst;
}

/** A LoRA layer whose shapes disagree with the branch is a LORA_MISMATCH (the adapter was matched elsewhere). */
function checkLayer(b: LoraBranch, layer: LoraLayer): void {
  if (layer.outFeatures !== b.outFeatures || layer.inFeatures !== b.inFeatures) {
    throw new LoraserveError('LORA_MISMATCH', `LoRA layer ${layer.key} has in ${layer.inFeatures} / out ${layer.outFeatures}; ${b.module} is ${b.inFeatures} / ${b.outFeatures}`, { module: b.module });
  }
  const [kh, kw] = layer.downKernel;
  if (kh !== b.kernel[0] || kw !== b.kernel[1]) {
    throw new LoraserveError('LORA_MISMATCH', `LoRA layer ${layer.key} has a ${kh}x${kw} down kernel; ${b.module} is ${b.kernel[0]}x${b.kernel[1]}`, { module: b.module });
  }
}

/** Zero-rank feeds for every branch: the graph then computes exactly the base model. */
export function emptyFeeds(plan: LoraBranchPlan): FeedSet {
  const feeds: FeedSet = {};
  for (const b of plan.branches) {
    const empty = b.dtype === 'float32' ? new Float32Array(0) : new Uint16Array(0);
    feeds[b.downInput] = tensorOf(b.dtype, empty, downDims(b, 0));
    feeds[b.upInput] = tensorOf(b.dtype, empty, upDims(b, 0));
  }
  return feeds;
}

interface Entry {
  /** Kept whole, so a repeated request reuses the object (and OnnxSession its checked ORT tensor). */
  tensor: HostTensor;
  bytes: number;
}

/**
 * Stacked A and scaled B per branch, in one LRU bounded by bytes. Keys name the LoraLayer objects (a changed
 * file yields new objects, so nothing stale is ever reused) and, for B, their scales.
 */
export class LoraFactorCache {
  private readonly ids = new WeakMap<LoraLayer, number>();
  private nextId = 1;
  private readonly entries = new Map<string, Entry>();
  /** A single LoRA's own down array, fed without a copy: lives as long as the layer, outside the byte budget. */
  private readonly direct = new WeakMap<LoraLayer, HostTensor>();
  private held = 0;

  constructor(private readonly maxBytes = 512 * 2 ** 20) {}

  /** Bytes held by copies (stacks, converted and scaled factors); the LoRAs' own arrays are not counted. */
  get bytes(): number {
    return this.held;
  }

  private idOf(l: LoraLayer): number {
    let id = this.ids.get(l);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(l, id);
    }
    return id;
  }

  private cached(key: string, make: () => HostTensor): HostTensor {
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key); // re-insert: Map order is the LRU order
      this.entries.set(key, hit);
      return hit.tensor;
    }
    const tensor = make();
    const entry = { tensor, bytes: tensor.data.byteLength };
    this.entries.set(key, entry);
    this.held += entry.bytes;
    while (this.held > this.maxBytes && this.entries.size > 1) {
      const [k, v] = this.entries.entries().next().value!;
      this.entries.delete(k);
      this.held -= v.bytes;
    }
    return tensor;
  }

  /** A: the layers' down factors stacked by rows, in the branch's dtype. */
  down(b: LoraBranch, layers: readonly ScaledLayer[]): HostTensor {
    const first = layers[0].layer;
    if (layers.length === 1 && (first.down instanceof Uint16Array) === (b.dtype === 'float16')) {
      let t = this.direct.get(first);
      if (!t) this.direct.set(first, (t = tensorOf(b.dtype, first.down, downDims(b, first.rank))));
      return t;
    }
    const key = `A|${b.dtype}|${layers.map((l) => this.idOf(l.layer)).join(',')}`;
    return this.cached(key, () => {
      const R = rankOf(layers);
      const rowLen = b.inFeatures * b.kernel[0] * b.kernel[1];
      const a = b.dtype === 'float32' ? new Float32Array(R * rowLen) : new Uint16Array(R * rowLen);
      let off = 0;
      for (const { layer } of layers) {
        copyInto(a, off * rowLen, layer.down);
        off += layer.rank;
      }
      return tensorOf(b.dtype, a, downDims(b, R));
    });
  }

  /** B: the layers' up factors side by side, each times its scale, in the branch's dtype. */
  up(b: LoraBranch, layers: readonly ScaledLayer[]): HostTensor {
    // String(number) is exact (shortest round-trip), so equal keys mean equal scales.
    const key = `B|${b.dtype}|${layers.map((l) => `${this.idOf(l.layer)}:${l.scale}`).join(',')}`;
    return this.cached(key, () => {
      const R = rankOf(layers);
      return tensorOf(b.dtype, scaledUp(b, layers, R), upDims(b, R));
    });
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
    for (const l of list) checkLayer(b, l.layer);
    feeds[b.downInput] = cache.down(b, list);
    feeds[b.upInput] = cache.up(b, list);
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
