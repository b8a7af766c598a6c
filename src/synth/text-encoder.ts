/**
 * CLIPTextModel (transformers v4.33 `models/clip/modeling_clip.py`) as diffusers' conversion script exports
 * it: input_ids int32 [batch, sequence] → last_hidden_state [batch, sequence, D], pooler_output [batch, D].
 * Init follows CLIPPreTrainedModel._init_weights (std per projection), drawn uniform with the same std.
 */
import { DataType } from '../onnx/proto.js';
import { ai, type GraphBuilder, join } from './graph-builder.js';
import { gelu, layerNorm, linear, quickGelu, reshape, transpose } from './layers.js';
import type { TextEncoderConfig } from './presets.js';

/** Bound of a uniform distribution with standard deviation `std`. */
const uniformBound = (std: number): number => std * Math.sqrt(3);

export function buildTextEncoder(b: GraphBuilder, cfg: TextEncoderConfig): void {
  const D = cfg.hidden;
  const root = 'text_model';
  const ids = b.input('input_ids', DataType.INT32, ['batch', 'sequence']);

  // Embeddings: token + position (position_ids is a [1, max_positions] buffer, sliced to the sequence length).
  const idsShape = b.op(root, 'Shape', [ids]);
  const seqLen = b.op(root, 'Gather', [idsShape, b.i64(root, [1], [])], { axis: ai(0) });
  const flatIds = b.op(root, 'Reshape', [ids, b.op(root, 'Concat', [b.i64(root, [-1]), b.op(root, 'Unsqueeze', [seqLen, b.i64(root, [0])])], { axis: ai(0) })], {
    allowzero: ai(0),
  });
  const emb = join(root, 'embeddings');
  const positionIds = b.op(emb, 'Slice', [
    b.i64(emb, Array.from({ length: cfg.maxPositions }, (_, i) => i), [1, cfg.maxPositions]),
    b.i64(emb, [0]),
    b.op(emb, 'Unsqueeze', [seqLen, b.i64(emb, [0])]),
    b.i64(emb, [1]),
    b.i64(emb, [1]),
  ]);
  const tokenTable = b.param(join(emb, 'token_embedding.weight'), [cfg.vocabSize, D], { bound: uniformBound(0.02) });
  const positionTable = b.param(join(emb, 'position_embedding.weight'), [cfg.maxPositions, D], { bound: uniformBound(0.01) });
  const tokens = b.op(join(emb, 'token_embedding'), 'Gather', [tokenTable, flatIds]);
  const positions = b.op(join(emb, 'position_embedding'), 'Gather', [positionTable, positionIds]);
  let h = b.op(emb, 'Add', [tokens, positions]);

  // Causal mask [seq, seq]: 0 on and below the diagonal, float32 min above (transformers' _make_causal_mask).
  const range = b.op(root, 'Range', [b.i64(root, [0], []), b.op(root, 'Cast', [seqLen], { to: ai(DataType.INT64) }), b.i64(root, [1], [])]);
  const rowsPlusOne = b.op(root, 'Unsqueeze', [b.op(root, 'Add', [range, b.i64(root, [1], [])]), b.i64(root, [1])]);
  const cols = b.op(root, 'Unsqueeze', [range, b.i64(root, [0])]);
  const allowed = b.op(root, 'Less', [cols, rowsPlusOne]);
  const mask = b.op(root, 'Where', [allowed, b.f32(root, [0]), b.f32(root, [-3.4028234663852886e38])]);

  const heads = cfg.heads;
  const dimHead = D / heads;
  const factor = 1;
  const inProjStd = D ** -0.5 * (2 * cfg.layers) ** -0.5 * factor;
  const outProjStd = D ** -0.5 * factor;
  const fcStd = (2 * D) ** -0.5 * factor;
  const biasBound = 0.02; // CLIP zero-initialises biases; small random ones make a bias/weight mix-up visible
  for (let l = 0; l < cfg.layers; l++) {
    const layer = join(root, `encoder.layers.${l}`);
    const attnMod = join(layer, 'self_attn');
    const x = layerNorm(b, join(layer, 'layer_norm1'), h, D, 1e-5);
    const proj = (name: string, std: number): string =>
      linear(b, join(attnMod, name), x, D, D, { weightBound: uniformBound(std), biasBound });
    const q = b.op(attnMod, 'Mul', [proj('q_proj', inProjStd), b.f32(attnMod, [dimHead ** -0.5])]);
    const k = proj('k_proj', inProjStd);
    const v = proj('v_proj', inProjStd);
    const qh = transpose(b, attnMod, reshape(b, attnMod, q, [0, 0, heads, dimHead]), [0, 2, 1, 3]);
    const kt = transpose(b, attnMod, reshape(b, attnMod, k, [0, 0, heads, dimHead]), [0, 2, 3, 1]);
    const vh = transpose(b, attnMod, reshape(b, attnMod, v, [0, 0, heads, dimHead]), [0, 2, 1, 3]);
    const scores = b.op(attnMod, 'Add', [b.op(attnMod, 'MatMul', [qh, kt]), mask]);
    const probs = b.op(attnMod, 'Softmax', [scores], { axis: ai(-1) });
    const ctx = reshape(b, attnMod, transpose(b, attnMod, b.op(attnMod, 'MatMul', [probs, vh]), [0, 2, 1, 3]), [0, 0, D]);
    const attnOut = linear(b, join(attnMod, 'out_proj'), ctx, D, D, { weightBound: uniformBound(outProjStd), biasBound });
    h = b.op(layer, 'Add', [h, attnOut]);

    const mlp = join(layer, 'mlp');
    const y = layerNorm(b, join(layer, 'layer_norm2'), h, D, 1e-5);
    let f = linear(b, join(mlp, 'fc1'), y, D, cfg.intermediate, { weightBound: uniformBound(fcStd), biasBound });
    f = cfg.act === 'quick_gelu' ? quickGelu(b, join(mlp, 'activation_fn'), f) : gelu(b, join(mlp, 'activation_fn'), f);
    f = linear(b, join(mlp, 'fc2'), f, cfg.intermediate, D, { weightBound: uniformBound(inProjStd), biasBound });
    h = b.op(layer, 'Add', [h, f]);
  }
  const last = layerNorm(b, join(root, 'final_layer_norm'), h, D, 1e-5);
  b.output(last, 'last_hidden_state', DataType.FLOAT, ['Addlast_hidden_state_dim_0', 'Addlast_hidden_state_dim_1', D]);

  // pooler_output = last_hidden_state[arange(batch), input_ids.argmax(-1)]: the end token has the largest id.
  const batch = b.op(root, 'Gather', [b.op(root, 'Shape', [last]), b.i64(root, [0], [])], { axis: ai(0) });
  const rowStart = b.op(root, 'Mul', [b.op(root, 'Range', [b.i64(root, [0], []), batch, b.i64(root, [1], [])]), seqLen]);
  const eosPos = b.op(root, 'ArgMax', [b.op(root, 'Cast', [flatIds], { to: ai(DataType.INT32) })], {
    axis: ai(-1),
    keepdims: ai(0),
    select_last_index: ai(0),
  });
  const flatHidden = b.op(root, 'Flatten', [last], { axis: ai(2) }); // [batch·seq, D]
  const pooled = b.op(root, 'Gather', [flatHidden, b.op(root, 'Add', [eosPos, rowStart])], { axis: ai(0) });
  const pooledOut = reshape(b, root, pooled, [-1, D]);
  b.output(pooledOut, 'pooler_output', DataType.FLOAT, ['Addlast_hidden_state_dim_0', D]);
}
