/**
 * Where LoRA files meet the graph: a request's scale plan (src/lora) becomes the feeds of the low-rank
 * branches the load-time rewrite added (src/onnx/lora-branches.ts). Per branch, with the active LoRAs'
 * factors stacked along the rank axis R, both in the files' own layouts:
 *
 *   A [R, in(, kh, kw)]  = [s₁·down₁ ; s₂·down₂ ; …]      rows
 *   B [out, R(, 1, 1)]   = [up₁ | up₂ | …]                 one contiguous run per LoRA and row
 *
 * so that the graph's (x·Aᵀ)·Bᵀ (conv: conv(conv(x; A); B)) = Σᵢ sᵢ · x · downᵢᵀ · upᵢᵀ, the merged delta, with
 * sᵢ = weight × block weight × alpha/rank. The scales sit on whichever factor is cheaper to rewrite
 * (`scaleOnDown`: down unless it is more than twice as long as up, e.g. 3×3 convs).
 *
 * Why the scales are folded in rather than fed: a per-rank Mul node on every branch cost the tiny UNet more
 * than all the rest of the branch together (~13 ms of ~9 ms base per step, bench/lora.ts); the price is that
 * the scaled factor is rebuilt for new weights (tens of ms on the SD1.5-shaped model, bench/lora-resolve.ts).
 *
 * Cost model: the plain factor depends only on WHICH LoRA layers are active: a single LoRA whose precision
 * matches the graph is fed as is (no copy), a combination is stacked once (fp16 widened / fp32 narrowed to
 * the graph's dtype) and cached. The scaled factor is cached per combination AND scales, so a repeated request
 * builds nothing and reuses the very feed objects. Both share one LRU bounded by bytes; the loaded LoRAs
 * (src/lora, fp16 files kept fp16) are the only per-LoRA copy. Branches no LoRA touches get zero-size feeds
 * (R = 0), which add exactly nothing. Copies are carved from pre-touched memory (feed-arena.ts) under a lease
 * held for the render (FeedLease), so building a never-seen set does not wait on page faults.
 */
import { LoraserveError } from '../core/errors.js';
import type { LoraFactor, LoraLayer, ScalePlan, ScaledLayer } from '../lora/index.js';
import type { LoraBranch, LoraBranchPlan } from '../onnx/lora-branches.js';
import { float16BitsToFloat32, float32ToFloat16Array, float32ToFloat16Bits } from '../tensor/float16.js';
import { numel, type HostTensor } from '../tensor/host-tensor.js';
import { FeedArena, type ArenaRange } from './feed-arena.js';

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

// The loops below are split by element type so that each call site sees one array type (V8 then keeps
// them monomorphic). Every scaled value is computed in double and rounded once to the feed's dtype.

/** dst[at + i] = s · src[i]: a contiguous block (the down factors, stacked by rows). */
function scaleRows(dst: Float32Array, at: number, src: Float32Array, s: number): void {
  if (s === 1) dst.set(src, at);
  else for (let i = 0; i < src.length; i++) dst[at + i] = s * src[i];
}

function scaleRowsHalf(dst: Float32Array, at: number, src: Uint16Array, s: number): void {
  const t = widenTable();
  for (let i = 0; i < src.length; i++) dst[at + i] = s * t[src[i]];
}

/** fp16 graphs (rare on CPU). */
function scaleRowsToHalf(dst: Uint16Array, at: number, src: LoraFactor, s: number): void {
  if (s === 1 && src instanceof Uint16Array) dst.set(src, at);
  else if (src instanceof Uint16Array) for (let i = 0, t = widenTable(); i < src.length; i++) dst[at + i] = float32ToFloat16Bits(s * t[src[i]]);
  else for (let i = 0; i < src.length; i++) dst[at + i] = float32ToFloat16Bits(s * src[i]);
}

/** dst[o, off + j] = s · src[o, j] for src [rows, r], dst [rows, R] (the up factors, side by side). */
function scaleColumns(dst: Float32Array, R: number, off: number, src: Float32Array, r: number, s: number): void {
  if (r === R) return scaleRows(dst, 0, src, s);
  for (let i = 0, o = off; i < src.length; o += R - r) for (let j = 0; j < r; j++, i++, o++) dst[o] = s * src[i];
}

function scaleColumnsHalf(dst: Float32Array, R: number, off: number, src: Uint16Array, r: number, s: number): void {
  if (r === R) return scaleRowsHalf(dst, 0, src, s);
  const t = widenTable();
  for (let i = 0, o = off; i < src.length; o += R - r) for (let j = 0; j < r; j++, i++, o++) dst[o] = s * t[src[i]];
}

function scaleColumnsToHalf(dst: Uint16Array, R: number, off: number, src: LoraFactor, r: number, s: number): void {
  if (r === R) return scaleRowsToHalf(dst, 0, src, s);
  const t = src instanceof Uint16Array ? widenTable() : undefined;
  for (let i = 0, o = off; i < src.length; o += R - r) for (let j = 0; j < r; j++, i++, o++) dst[o] = float32ToFloat16Bits(s * (t ? t[src[i]] : src[i]));
}

/** Where a factor's memory comes from: the cache's pre-touched arena when it has room (see feed-arena.ts). */
type Alloc = (dtype: 'float32' | 'float16', n: number) => Data;

const freshAlloc: Alloc = (dtype, n) => (dtype === 'float16' ? new Uint16Array(n) : new Float32Array(n));

/** A = [s₁·down₁ ; s₂·down₂ ; …] as [R, in·kh·kw] (s = 1 when the scale is folded into B). Writes every element. */
function stackDown(b: LoraBranch, layers: readonly ScaledLayer[], R: number, scaled: boolean, alloc: Alloc): Data {
  const rowLen = b.inFeatures * b.kernel[0] * b.kernel[1];
  const dst = alloc(b.dtype, R * rowLen);
  let off = 0;
  for (const { layer, scale } of layers) {
    const s = scaled ? scale : 1;
    const down = layer.down;
    if (dst instanceof Uint16Array) scaleRowsToHalf(dst, off * rowLen, down, s);
    else if (down instanceof Float32Array) scaleRows(dst, off * rowLen, down, s);
    else scaleRowsHalf(dst, off * rowLen, down, s);
    off += layer.rank;
  }
  return dst;
}

/** B = [s₁·up₁ | s₂·up₂ | …] as [out, R] (s = 1 when the scale is folded into A). Writes every element. */
function stackUp(b: LoraBranch, layers: readonly ScaledLayer[], R: number, scaled: boolean, alloc: Alloc): Data {
  const n = b.outFeatures * R;
  const dst = alloc(b.dtype, n);
  let off = 0;
  for (const { layer, scale } of layers) {
    const s = scaled ? scale : 1;
    const up = layer.up;
    if (dst instanceof Uint16Array) scaleColumnsToHalf(dst, R, off, up, layer.rank, s);
    else if (up instanceof Float32Array) scaleColumns(dst, R, off, up, layer.rank, s);
    else scaleColumnsHalf(dst, R, off, up, layer.rank, s);
    off += layer.rank;
  }
  return dst;
}

let warmed = false;

/**
 * Runs the stacking loops once on small made-up factors of every source/graph precision, so the first
 * never-seen LoRA set a server builds runs optimized code (measured: the first 3-LoRA set in a process took
 * 57–99 ms on SD1.5 shapes, later ones 44–51 ms). Once per process; a few milliseconds.
 */
export function warmUpStacking(): void {
  if (warmed) return;
  warmed = true;
  for (const dtype of ['float32', 'float16'] as const) {
    const b: LoraBranch = { index: 0, module: 'warm-up', op: 'MatMul', kind: 'linear', inFeatures: 96, outFeatures: 80, kernel: [1, 1], dtype, downInput: '', upInput: '' };
    const layers: ScaledLayer[] = [8, 4, 16].map((rank, k) => {
      const down = new Float32Array(rank * b.inFeatures).fill(0.25);
      const up = new Float32Array(b.outFeatures * rank).fill(0.5);
      const half = k % 2 === 1;
      return {
        lora: 'warm-up',
        weight: 1,
        scale: 0.5 + k,
        layer: { part: 'unet', module: b.module, kind: 'linear', rank, alpha: rank, scale: 1, key: 'warm-up', downKernel: [1, 1], inFeatures: b.inFeatures, outFeatures: b.outFeatures, down: half ? float32ToFloat16Array(down) : down, up: half ? float32ToFloat16Array(up) : up },
      };
    });
    const R = rankOf(layers);
    for (let i = 0; i < 40; i++) {
      for (const scaled of [true, false]) {
        stackDown(b, layers, R, scaled, freshAlloc);
        stackUp(b, layers, R, scaled, freshAlloc);
        stackDown(b, layers.slice(0, 1), layers[0].layer.rank, scaled, freshAlloc);
        stackUp(b, layers.slice(0, 1), layers[0].layer.rank, scaled, freshAlloc);
      }
    }
  }
}

/**
 * Which factor carries the scales, and so is rebuilt for new weights: the cheaper one to write. Down is
 * written as contiguous blocks, up as short per-row runs (about twice the cost per value on the bench), so
 * down is chosen unless it is more than twice as long (3×3 convs, fc2-like layers).
 */
export function scaleOnDown(b: LoraBranch): boolean {
  return b.inFeatures * b.kernel[0] * b.kernel[1] <= 2 * b.outFeatures;
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

/**
 * Feeds for branches no LoRA touches: zero-rank (zero-size) factors, so the graph computes exactly the base
 * model. `rank` 1 gives rank-1 factors of zeros instead, for execution providers that cannot take zero-size
 * tensors (onnxruntime-node 1.30's WebGPU crashes the process on them): the branch then adds x·0 = 0.
 */
export function emptyFeeds(plan: LoraBranchPlan, rank: 0 | 1 = 0): FeedSet {
  const feeds: FeedSet = {};
  for (const b of plan.branches) {
    const down = downDims(b, rank);
    const up = upDims(b, rank);
    const make = (dims: number[]) => (b.dtype === 'float32' ? new Float32Array(numel(dims)) : new Uint16Array(numel(dims)));
    feeds[b.downInput] = tensorOf(b.dtype, make(down), down);
    feeds[b.upInput] = tensorOf(b.dtype, make(up), up);
  }
  return feeds;
}

interface Entry {
  /** Kept whole, so a repeated request reuses the object (and OnnxSession its checked ORT tensor). */
  tensor: HostTensor;
  bytes: number;
  /** Its memory, when carved from the arena: given back once it is evicted AND no lease holds it. */
  range?: ArenaRange;
  /** Leases holding it (Infinity: handed out without a lease, so never recycled). */
  refs: number;
  evicted: boolean;
}

/**
 * The factor-cache entries one request's feeds use. While a lease is held its entries' memory is never
 * recycled, even if the LRU drops them; `release()` when the render is over. A lease never released only
 * means that memory is not reused (it is dropped with the entry, as any garbage).
 */
export class FeedLease {
  readonly entries: Entry[] = [];
  private done = false;
  constructor(private readonly cache: LoraFactorCache) {}

  release(): void {
    if (this.done) return;
    this.done = true;
    for (const e of this.entries) this.cache.unref(e);
  }
}

/**
 * Stacked and scaled factors per branch, in one LRU bounded by bytes. Keys name the LoraLayer objects (a
 * changed file yields new objects, so nothing stale is ever reused) and, for the scaled factor, the scales.
 * Their memory comes from a pre-touched arena when a lease is given (src/engine/feed-arena.ts).
 */
export class LoraFactorCache {
  private readonly ids = new WeakMap<LoraLayer, number>();
  private nextId = 1;
  private readonly entries = new Map<string, Entry>();
  /** A single LoRA's own unscaled factor, fed without a copy: lives as long as the layer, outside the budget. */
  private readonly direct = { down: new WeakMap<LoraLayer, HostTensor>(), up: new WeakMap<LoraLayer, HostTensor>() };
  private held = 0;
  /** Bytes of factors built since the start (a counter: the resolver sizes the arena's headroom from it). */
  builtBytes = 0;
  readonly arena = new FeedArena();

  constructor(readonly maxBytes = 512 * 2 ** 20) {}

  /** Bytes held by copies (stacks, converted and scaled factors); the LoRAs' own arrays are not counted. */
  get bytes(): number {
    return this.held;
  }

  lease(): FeedLease {
    return new FeedLease(this);
  }

  /** @internal FeedLease.release */
  unref(e: Entry): void {
    e.refs--;
    this.recycle(e);
  }

  private recycle(e: Entry): void {
    if (e.evicted && e.refs === 0 && e.range) {
      this.arena.release(e.range);
      e.range = undefined;
    }
  }

  /** Keeps at least `headroom` bytes of the arena free for the next never-seen set (call while idle). */
  topUp(headroom: number): void {
    this.arena.reserve(Math.min(this.arena.usedBytes + headroom, this.maxBytes + headroom));
  }

  private idOf(l: LoraLayer): number {
    let id = this.ids.get(l);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(l, id);
    }
    return id;
  }

  private hold(e: Entry, lease: FeedLease | undefined): HostTensor {
    if (lease) {
      e.refs++;
      lease.entries.push(e);
    } else e.refs = Infinity;
    return e.tensor;
  }

  private cached(key: string, make: (alloc: Alloc) => HostTensor, lease: FeedLease | undefined): HostTensor {
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key); // re-insert: Map order is the LRU order
      this.entries.set(key, hit);
      return this.hold(hit, lease);
    }
    let range: ArenaRange | undefined;
    const alloc: Alloc = (dtype, n) => {
      const got = lease ? this.arena.alloc(n * (dtype === 'float16' ? 2 : 4)) : undefined;
      if (!got) return freshAlloc(dtype, n);
      range = got.range;
      return dtype === 'float16' ? new Uint16Array(got.buffer, got.range.offset, n) : new Float32Array(got.buffer, got.range.offset, n);
    };
    const tensor = make(alloc);
    const entry: Entry = { tensor, bytes: tensor.data.byteLength, range, refs: 0, evicted: false };
    this.builtBytes += entry.bytes;
    this.entries.set(key, entry);
    this.held += entry.bytes;
    while (this.held > this.maxBytes && this.entries.size > 1) {
      const [k, v] = this.entries.entries().next().value!;
      this.entries.delete(k);
      this.held -= v.bytes;
      v.evicted = true;
      this.recycle(v);
    }
    return this.hold(entry, lease);
  }

  /** The branch's feed for one factor: scaled (keyed by the scales too) or plain (keyed by the combination). */
  private factor(side: 'down' | 'up', b: LoraBranch, layers: readonly ScaledLayer[], lease: FeedLease | undefined): HostTensor {
    const scaled = scaleOnDown(b) === (side === 'down');
    const dims = side === 'down' ? downDims : upDims;
    const first = layers[0].layer;
    if (!scaled && layers.length === 1 && (first[side] instanceof Uint16Array) === (b.dtype === 'float16')) {
      const direct = this.direct[side];
      let t = direct.get(first);
      if (!t) direct.set(first, (t = tensorOf(b.dtype, first[side], dims(b, first.rank))));
      return t;
    }
    // String(number) is exact (shortest round-trip), so equal keys mean equal scales.
    const key = `${side}|${b.dtype}|${layers.map((l) => (scaled ? `${this.idOf(l.layer)}:${l.scale}` : this.idOf(l.layer))).join(',')}`;
    return this.cached(
      key,
      (alloc) => {
        const R = rankOf(layers);
        return tensorOf(b.dtype, (side === 'down' ? stackDown : stackUp)(b, layers, R, scaled, alloc), dims(b, R));
      },
      lease,
    );
  }

  /** A: the layers' down factors stacked by rows, in the branch's dtype. */
  down(b: LoraBranch, layers: readonly ScaledLayer[], lease?: FeedLease): HostTensor {
    return this.factor('down', b, layers, lease);
  }

  /** B: the layers' up factors side by side, in the branch's dtype. */
  up(b: LoraBranch, layers: readonly ScaledLayer[], lease?: FeedLease): HostTensor {
    return this.factor('up', b, layers, lease);
  }
}

/**
 * Feeds for one part (unet or te) of a scale plan; branches the plan does not touch reuse `empty`.
 * A planned module the graph has no branch for is an error (the LoRA was matched against these same targets).
 */
export function buildFeeds(branches: LoraBranchPlan, layers: ReadonlyMap<string, ScaledLayer[]>, empty: FeedSet, cache: LoraFactorCache, lease?: FeedLease): FeedSet {
  const feeds: FeedSet = { ...empty };
  for (const [module, list] of layers) {
    const b = branches.byModule.get(module);
    if (!b) throw new LoraserveError('LORA_MISMATCH', `LoRA targets ${module}, which this model's graph has no LoRA branch for`, { module });
    for (const l of list) checkLayer(b, l.layer);
    feeds[b.downInput] = cache.down(b, list, lease);
    feeds[b.upInput] = cache.up(b, list, lease);
  }
  return feeds;
}

/** Both parts of a plan, as one object the render loop passes with every text-encoder / UNet run. */
export interface LoraFeeds {
  unet: FeedSet;
  te: FeedSet;
  signature: string;
}

export function feedsForPlan(plan: ScalePlan, unet: LoraBranchPlan, te: LoraBranchPlan, empty: { unet: FeedSet; te: FeedSet }, cache: LoraFactorCache, lease?: FeedLease): LoraFeeds {
  return { unet: buildFeeds(unet, plan.unet, empty.unet, cache, lease), te: buildFeeds(te, plan.te, empty.te, cache, lease), signature: plan.signature };
}
