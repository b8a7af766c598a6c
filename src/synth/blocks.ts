/**
 * diffusers building blocks (v0.21.4 `models/resnet.py`, `models/attention.py`, `models/attention_processor.py`,
 * `models/transformer_2d.py`) as the torch exporter writes them; shared by the UNet and the VAE.
 *
 * One deliberate simplification: attention keeps the heads as a 4-D [batch, heads, tokens, dim] tensor
 * (Reshape with constant [0, 0, heads, dim] + Transpose) instead of folding them into the batch with
 * Shape/Gather/Concat chains as `head_to_batch_dim` + `baddbmm` export. The projections (what a LoRA targets),
 * the MatMul → Mul(scale) → Softmax → MatMul core and every module path are the same.
 */
import { ai, type GraphBuilder, join } from './graph-builder.js';
import { conv2d, gelu, gemm, groupNorm, layerNorm, linear, reshape, silu, transpose, upsampleNearest2x } from './layers.js';

/** Time embedding shared by every ResNet of a UNet; its SiLU is computed once (torch's CSE does the same). */
export interface TimeEmbedding {
  value: string;
  dim: number;
  /** silu(value), filled in by the first ResNet that needs it. */
  activated?: string;
}

export interface ResnetOptions {
  groups: number;
  eps: number;
  temb?: TimeEmbedding;
}

/** ResnetBlock2D: norm1 → SiLU → conv1 (+ time_emb_proj) → norm2 → SiLU → conv2, + (shortcut) x. */
export function resnetBlock(b: GraphBuilder, mod: string, x: string, inC: number, outC: number, o: ResnetOptions): string {
  // The module's one `nonlinearity` is called several times: torch scopes the calls nonlinearity, _1, _2.
  let calls = 0;
  const act = (v: string): string => silu(b, join(mod, calls++ === 0 ? 'nonlinearity' : `nonlinearity_${calls - 1}`), v);

  let h = groupNorm(b, join(mod, 'norm1'), x, inC, o.groups, o.eps);
  h = act(h);
  h = conv2d(b, join(mod, 'conv1'), h, inC, outC, 3);
  if (o.temb) {
    if (!o.temb.activated) o.temb.activated = act(o.temb.value);
    let t = gemm(b, join(mod, 'time_emb_proj'), o.temb.activated, o.temb.dim, outC);
    t = b.op(mod, 'Unsqueeze', [t, b.i64(mod, [2])]);
    t = b.op(mod, 'Unsqueeze', [t, b.i64(mod, [3])]);
    h = b.op(mod, 'Add', [h, t]);
  }
  h = groupNorm(b, join(mod, 'norm2'), h, outC, o.groups, o.eps);
  h = act(h);
  // Zero-ish init of the last conv is what trained ResNets look like; a small gain keeps deep stacks tame.
  h = conv2d(b, join(mod, 'conv2'), h, outC, outC, 3, { gain: 0.5 });
  const shortcut = inC !== outC ? conv2d(b, join(mod, 'conv_shortcut'), x, inC, outC, 1) : x;
  const sum = b.op(mod, 'Add', [shortcut, h]);
  return b.op(mod, 'Div', [sum, b.f32(mod, [1])]); // output_scale_factor = 1
}

export interface AttentionOptions {
  heads: number;
  dimHead: number;
  queryDim: number;
  /** Width of the context (cross-attention); self-attention when `context` is undefined. */
  contextDim?: number;
  /** to_q/to_k/to_v bias: false in the UNet, true in the VAE. */
  qkvBias: boolean;
  /** Multiplies the q/k/v/out weight bound (the fixture doubled UNet attention weights so text matters). */
  gain?: number;
}

/** Attention + AttnProcessor on [batch, tokens, dim] input, through to_out.0 and rescale_output_factor. */
export function attention(b: GraphBuilder, mod: string, x: string, context: string | undefined, o: AttentionOptions): string {
  const inner = o.heads * o.dimHead;
  const ctxDim = context ? (o.contextDim ?? o.queryDim) : o.queryDim;
  const ctx = context ?? x;
  const g = o.gain ?? 1;
  const q = linear(b, join(mod, 'to_q'), x, o.queryDim, inner, { bias: o.qkvBias, weightBound: g / Math.sqrt(o.queryDim) });
  const k = linear(b, join(mod, 'to_k'), ctx, ctxDim, inner, { bias: o.qkvBias, weightBound: g / Math.sqrt(ctxDim) });
  const v = linear(b, join(mod, 'to_v'), ctx, ctxDim, inner, { bias: o.qkvBias, weightBound: g / Math.sqrt(ctxDim) });
  const split = [0, 0, o.heads, o.dimHead];
  const qh = transpose(b, mod, reshape(b, mod, q, split), [0, 2, 1, 3]); // [b, h, n, d]
  const kt = transpose(b, mod, reshape(b, mod, k, split), [0, 2, 3, 1]); // [b, h, d, m]
  const vh = transpose(b, mod, reshape(b, mod, v, split), [0, 2, 1, 3]); // [b, h, m, d]
  const scores = b.op(mod, 'Mul', [b.op(mod, 'MatMul', [qh, kt]), b.f32(mod, [1 / Math.sqrt(o.dimHead)])]);
  const probs = b.op(mod, 'Softmax', [scores], { axis: ai(-1) });
  const heads = b.op(mod, 'MatMul', [probs, vh]);
  const merged = reshape(b, mod, transpose(b, mod, heads, [0, 2, 1, 3]), [0, 0, inner]);
  const out = linear(b, join(mod, 'to_out.0'), merged, inner, o.queryDim, { weightBound: g / Math.sqrt(inner) });
  return b.op(mod, 'Div', [out, b.f32(mod, [1])]); // rescale_output_factor = 1
}

export interface TransformerOptions {
  channels: number;
  heads: number;
  dimHead: number;
  contextDim: number;
  groups: number;
  /** SD2: proj_in/proj_out are nn.Linear on [b, hw, c]; SD1: 1×1 nn.Conv2d on [b, c, h, w]. */
  linearProjection: boolean;
  attentionGain: number;
}

/** BasicTransformerBlock: self-attention, cross-attention and a GEGLU feed-forward, each pre-norm + residual. */
function basicTransformerBlock(b: GraphBuilder, mod: string, x: string, context: string, o: TransformerOptions): string {
  const dim = o.heads * o.dimHead;
  const att = { heads: o.heads, dimHead: o.dimHead, queryDim: dim, qkvBias: false, gain: o.attentionGain };
  let h = x;
  const a1 = attention(b, join(mod, 'attn1'), layerNorm(b, join(mod, 'norm1'), h, dim, 1e-5), undefined, att);
  h = b.op(mod, 'Add', [a1, h]);
  const a2 = attention(b, join(mod, 'attn2'), layerNorm(b, join(mod, 'norm2'), h, dim, 1e-5), context, { ...att, contextDim: o.contextDim });
  h = b.op(mod, 'Add', [a2, h]);
  const ff = feedForwardGeglu(b, join(mod, 'ff'), layerNorm(b, join(mod, 'norm3'), h, dim, 1e-5), dim);
  return b.op(mod, 'Add', [ff, h]);
}

/** FeedForward(activation_fn="geglu"): net.0 = GEGLU(proj: dim → 2·4dim), net.2 = Linear(4dim → dim). */
function feedForwardGeglu(b: GraphBuilder, mod: string, x: string, dim: number): string {
  const inner = 4 * dim;
  const gegluMod = join(mod, 'net.0');
  const proj = linear(b, join(gegluMod, 'proj'), x, dim, 2 * inner);
  const axis = b.i64(gegluMod, [-1]);
  const hidden = b.op(gegluMod, 'Slice', [proj, b.i64(gegluMod, [0]), b.i64(gegluMod, [inner]), axis]);
  const gate = b.op(gegluMod, 'Slice', [proj, b.i64(gegluMod, [inner]), b.i64(gegluMod, [2 * inner]), axis]);
  const gated = b.op(gegluMod, 'Mul', [hidden, gelu(b, gegluMod, gate)]);
  return linear(b, join(mod, 'net.2'), gated, inner, dim);
}

/** Transformer2DModel with one BasicTransformerBlock, on [b, c, h, w]. */
export function transformer2d(b: GraphBuilder, mod: string, x: string, context: string, o: TransformerOptions): string {
  const c = o.channels;
  const inner = o.heads * o.dimHead;
  const residual = x;
  let h = groupNorm(b, join(mod, 'norm'), x, c, o.groups, 1e-6);
  if (!o.linearProjection) h = conv2d(b, join(mod, 'proj_in'), h, c, inner, 1);
  h = reshape(b, mod, transpose(b, mod, h, [0, 2, 3, 1]), [0, -1, o.linearProjection ? c : inner]);
  if (o.linearProjection) h = linear(b, join(mod, 'proj_in'), h, c, inner);
  h = basicTransformerBlock(b, join(mod, 'transformer_blocks.0'), h, context, o);
  if (o.linearProjection) h = linear(b, join(mod, 'proj_out'), h, inner, c);
  // Back to [b, c, h, w]: the target shape [b, h, w, C] comes from the block's input, as in the export.
  const bhw = b.op(mod, 'Gather', [b.op(mod, 'Shape', [residual]), b.i64(mod, [0, 2, 3])], { axis: ai(0) });
  const shape = b.op(mod, 'Concat', [bhw, b.i64(mod, [o.linearProjection ? c : inner])], { axis: ai(0) });
  h = transpose(b, mod, b.op(mod, 'Reshape', [h, shape], { allowzero: ai(0) }), [0, 3, 1, 2]);
  if (!o.linearProjection) h = conv2d(b, join(mod, 'proj_out'), h, inner, c, 1);
  return b.op(mod, 'Add', [h, residual]);
}

/** Downsample2D(use_conv=True): a stride-2 3×3 conv; the VAE's variant pads (0, 1, 0, 1) itself first. */
export function downsample(b: GraphBuilder, mod: string, x: string, channels: number, asymmetricPad: boolean): string {
  if (!asymmetricPad) return conv2d(b, join(mod, 'conv'), x, channels, channels, 3, { stride: 2, pad: 1 });
  const padded = b.op(mod, 'Pad', [x, b.i64(mod, [0, 0, 0, 0, 0, 0, 1, 1]), b.f32(mod, [0])], {});
  return conv2d(b, join(mod, 'conv'), padded, channels, channels, 3, { stride: 2, pad: 0 });
}

/** Upsample2D(use_conv=True): nearest ×2 then a 3×3 conv. */
export function upsample(b: GraphBuilder, mod: string, x: string, channels: number): string {
  return conv2d(b, join(mod, 'conv'), upsampleNearest2x(b, mod, x), channels, channels, 3);
}

/**
 * The VAE mid-block's single-head Attention on [b, c, h, w] (group_norm inside, residual_connection=True):
 * flatten to [b, hw, c], normalise over channels, attend, project, restore [b, c, h, w], add the residual.
 */
export function vaeAttention(b: GraphBuilder, mod: string, x: string, channels: number, groups: number): string {
  const c = channels;
  const flat = reshape(b, mod, x, [0, c, -1]); // [b, c, hw]
  const tokens = transpose(b, mod, flat, [0, 2, 1]); // [b, hw, c]
  const normed = groupNorm(b, join(mod, 'group_norm'), transpose(b, mod, tokens, [0, 2, 1]), c, groups, 1e-6, 3);
  const h = transpose(b, mod, normed, [0, 2, 1]);
  const attended = attentionCore(b, mod, h, c);
  const back = b.op(mod, 'Reshape', [transpose(b, mod, attended, [0, 2, 1]), b.op(mod, 'Shape', [x])], { allowzero: ai(0) });
  const sum = b.op(mod, 'Add', [back, x]);
  return b.op(mod, 'Div', [sum, b.f32(mod, [1])]);
}

/** Single-head self-attention with biased projections (the VAE's), without the rescale Div. */
function attentionCore(b: GraphBuilder, mod: string, x: string, c: number): string {
  const q = linear(b, join(mod, 'to_q'), x, c, c);
  const k = linear(b, join(mod, 'to_k'), x, c, c);
  const v = linear(b, join(mod, 'to_v'), x, c, c);
  const kt = transpose(b, mod, k, [0, 2, 1]);
  const scores = b.op(mod, 'Mul', [b.op(mod, 'MatMul', [q, kt]), b.f32(mod, [1 / Math.sqrt(c)])]);
  const probs = b.op(mod, 'Softmax', [scores], { axis: ai(-1) });
  const out = b.op(mod, 'MatMul', [probs, v]);
  return linear(b, join(mod, 'to_out.0'), out, c, c);
}
