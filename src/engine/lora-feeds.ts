/**
 * Where LoRA files meet the graph: a request's scale plan (src/lora) becomes the feeds of the low-rank
 * branches the load-time rewrite added (src/onnx/lora-branches.ts).
 *
 * For each branch, the active LoRAs' factors are concatenated along the rank axis, the per-LoRA scale
 * (user weight × block weight × alpha/rank) folded into the up factor:
 *   MatMul / Gemm:  A [in, R] = [down_1ᵀ | down_2ᵀ | …]        B [R, out] = [s_1·up_1ᵀ ; s_2·up_2ᵀ ; …]
 *   Conv:           A [R, in, kh, kw] = [down_1 ; down_2 ; …]   B [out, R, 1, 1] = [s_1·up_1 | s_2·up_2 | …]
 * so that x·A·B = Σ s_i · x · down_iᵀ · up_iᵀ = x · (Σ s_i · up_i @ down_i)ᵀ, the merged delta.
 * Branches no LoRA touches get zero-size feeds (R = 0), which add exactly nothing.
 */
import { LoraserveError } from '../core/errors.js';
import type { ScalePlan, ScaledLayer } from '../lora/index.js';
import type { LoraBranch, LoraBranchPlan } from '../onnx/lora-branches.js';
import { float32ToFloat16Array } from '../tensor/float16.js';
import type { HostTensor } from '../tensor/host-tensor.js';

export type FeedSet = Record<string, HostTensor>;

function tensor(dtype: 'float32' | 'float16', data: Float32Array, dims: number[]): HostTensor {
  return dtype === 'float32' ? { type: 'float32', data, dims } : { type: 'float16', data: float32ToFloat16Array(data), dims };
}

/** Zero-rank feeds for every branch: the graph then computes exactly the base model. */
export function emptyFeeds(plan: LoraBranchPlan): FeedSet {
  const feeds: FeedSet = {};
  for (const b of plan.branches) Object.assign(feeds, branchFeeds(b, []));
  return feeds;
}

/** Length of one down row: in × kh × kw. */
function downRowLength(b: LoraBranch): number {
  return b.inFeatures * b.kernel[0] * b.kernel[1];
}

function branchFeeds(b: LoraBranch, layers: readonly ScaledLayer[]): FeedSet {
  const R = layers.reduce((n, l) => n + l.layer.rank, 0);
  const inLen = downRowLength(b);
  const down = new Float32Array(R * inLen);
  const up = new Float32Array(R * b.outFeatures);
  let off = 0;
  for (const { layer, scale } of layers) {
    const r = layer.rank;
    if (layer.outFeatures !== b.outFeatures || layer.inFeatures !== b.inFeatures) {
      throw new LoraserveError('LORA_MISMATCH', `LoRA layer ${layer.key} has shape in ${layer.inFeatures} / out ${layer.outFeatures}; ${b.module} is ${b.inFeatures} / ${b.outFeatures}`, { module: b.module });
    }
    const [kh, kw] = layer.downKernel;
    const sameKernel = kh === b.kernel[0] && kw === b.kernel[1];
    if (!sameKernel && !(kh === 1 && kw === 1)) {
      throw new LoraserveError('LORA_MISMATCH', `LoRA layer ${layer.key} has a ${kh}x${kw} down kernel; ${b.module} is ${b.kernel[0]}x${b.kernel[1]}`, { module: b.module });
    }
    if (b.kind === 'conv') {
      // A [R, in, kh, kw]: rows of down, stacked; a 1×1 down on a k×k conv sits at the centre tap
      // (same output as a 1×1 conv with the original stride, since the centre tap of a padded k×k conv is it).
      if (sameKernel) down.set(layer.down, off * inLen);
      else {
        const cy = (b.kernel[0] - 1) >> 1;
        const cx = (b.kernel[1] - 1) >> 1;
        const kk = b.kernel[0] * b.kernel[1];
        for (let j = 0; j < r; j++) {
          for (let c = 0; c < b.inFeatures; c++) down[(off + j) * inLen + c * kk + cy * b.kernel[1] + cx] = layer.down[j * b.inFeatures + c];
        }
      }
      // B [out, R, 1, 1]: column block of s·up.
      for (let o = 0; o < b.outFeatures; o++) {
        for (let j = 0; j < r; j++) up[o * R + off + j] = scale * layer.up[o * r + j];
      }
    } else {
      // A [in, R]: columns are down rows (downᵀ).
      for (let j = 0; j < r; j++) {
        for (let c = 0; c < b.inFeatures; c++) down[c * R + off + j] = layer.down[j * b.inFeatures + c];
      }
      // B [R, out]: rows are s·up columns (s·upᵀ).
      for (let j = 0; j < r; j++) {
        for (let o = 0; o < b.outFeatures; o++) up[(off + j) * b.outFeatures + o] = scale * layer.up[o * r + j];
      }
    }
    off += r;
  }
  return b.kind === 'conv'
    ? {
        [b.downInput]: tensor(b.dtype, down, [R, b.inFeatures, b.kernel[0], b.kernel[1]]),
        [b.upInput]: tensor(b.dtype, up, [b.outFeatures, R, 1, 1]),
      }
    : {
        [b.downInput]: tensor(b.dtype, down, [b.inFeatures, R]),
        [b.upInput]: tensor(b.dtype, up, [R, b.outFeatures]),
      };
}

/**
 * Feeds for one part (unet or te) of a scale plan. Branches the plan does not touch reuse `empty`.
 * A planned module the graph has no branch for is an error (the LoRA was matched against these same targets).
 */
export function buildFeeds(branches: LoraBranchPlan, layers: ReadonlyMap<string, ScaledLayer[]>, empty: FeedSet): FeedSet {
  const feeds: FeedSet = { ...empty };
  for (const [module, list] of layers) {
    const b = branches.byModule.get(module);
    if (!b) throw new LoraserveError('LORA_MISMATCH', `LoRA targets ${module}, which this model's graph has no LoRA branch for`, { module });
    Object.assign(feeds, branchFeeds(b, list));
  }
  return feeds;
}

/** Both parts of a plan, as one object the render loop passes with every text-encoder / UNet run. */
export interface LoraFeeds {
  unet: FeedSet;
  te: FeedSet;
  signature: string;
}

export function feedsForPlan(plan: ScalePlan, unet: LoraBranchPlan, te: LoraBranchPlan, empty: { unet: FeedSet; te: FeedSet }): LoraFeeds {
  return { unet: buildFeeds(unet, plan.unet, empty.unet), te: buildFeeds(te, plan.te, empty.te), signature: plan.signature };
}
