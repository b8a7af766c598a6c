/**
 * UNet2DConditionModel (diffusers v0.21.4 `models/unet_2d_condition.py`, `models/unet_2d_blocks.py`) with
 * SD's block layout: CrossAttnDownBlock2D ×3 + DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D +
 * CrossAttnUpBlock2D ×3. Graph I/O as diffusers' scripts/convert_stable_diffusion_checkpoint_to_onnx.py
 * exports it: sample float [batch, channels, height, width], timestep float [batch],
 * encoder_hidden_states float [batch, sequence, D] → out_sample.
 */
import { DataType } from '../onnx/proto.js';
import { type TimeEmbedding, downsample, resnetBlock, transformer2d, upsample } from './blocks.js';
import { ai, type GraphBuilder, join } from './graph-builder.js';
import { conv2d, gemm, groupNorm, silu } from './layers.js';
import type { UnetConfig } from './presets.js';

/** The fixture doubles every attention projection so the output depends on the text context (see its README). */
const ATTENTION_GAIN = 2;

export function buildUnet(b: GraphBuilder, cfg: UnetConfig): void {
  const C = cfg.blockOut;
  const groups = cfg.groups;
  const eps = 1e-5;
  const sample = b.input('sample', DataType.FLOAT, ['batch', 'channels', 'height', 'width']);
  const timestep = b.input('timestep', DataType.FLOAT, ['batch']);
  const context = b.input('encoder_hidden_states', DataType.FLOAT, ['batch', 'sequence', cfg.crossAttentionDim]);

  // 1. time: timesteps.expand(batch) → sinusoidal (flip_sin_to_cos, shift 0) → TimestepEmbedding
  const batch = b.op('', 'Slice', [b.op('', 'Shape', [sample]), b.i64('', [0]), b.i64('', [1])]);
  const ts = b.op('', 'Expand', [timestep, batch]);
  const temb = timestepEmbedding(b, ts, C[0]);
  const tembDim = 4 * C[0];
  let emb = gemm(b, 'time_embedding.linear_1', temb, C[0], tembDim);
  emb = silu(b, 'time_embedding.act', emb);
  emb = gemm(b, 'time_embedding.linear_2', emb, tembDim, tembDim);
  const time: TimeEmbedding = { value: emb, dim: tembDim };

  // 2. pre-process
  let h = conv2d(b, 'conv_in', sample, cfg.inChannels, C[0], 3);
  const skips: Array<{ value: string; channels: number }> = [{ value: h, channels: C[0] }];

  // 3. down
  const attn = (mod: string, x: string, channels: number, heads: number): string =>
    transformer2d(b, mod, x, context, {
      channels,
      heads,
      dimHead: channels / heads,
      contextDim: cfg.crossAttentionDim,
      groups,
      linearProjection: cfg.linearProjection,
      attentionGain: ATTENTION_GAIN,
    });
  let channels = C[0];
  for (let i = 0; i < 4; i++) {
    const mod = `down_blocks.${i}`;
    const out = C[i];
    const hasAttention = i < 3;
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      h = resnetBlock(b, join(mod, `resnets.${j}`), h, j === 0 ? channels : out, out, { groups, eps, temb: time });
      if (hasAttention) h = attn(join(mod, `attentions.${j}`), h, out, cfg.heads[i]);
      skips.push({ value: h, channels: out });
    }
    channels = out;
    if (i < 3) {
      h = downsample(b, join(mod, 'downsamplers.0'), h, out, false);
      skips.push({ value: h, channels: out });
    }
  }

  // 4. mid
  const last = C[3];
  h = resnetBlock(b, 'mid_block.resnets.0', h, last, last, { groups, eps, temb: time });
  h = attn('mid_block.attentions.0', h, last, cfg.heads[3]);
  h = resnetBlock(b, 'mid_block.resnets.1', h, last, last, { groups, eps, temb: time });

  // 5. up (reversed channels; each block takes layers_per_block + 1 skips)
  const rev = [...C].reverse();
  const revHeads = [...cfg.heads].reverse();
  let prevOut = rev[0];
  for (let i = 0; i < 4; i++) {
    const mod = `up_blocks.${i}`;
    const out = rev[i];
    const hasAttention = i > 0;
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      const skip = skips.pop()!;
      const inC = j === 0 ? prevOut : out;
      h = b.op(mod, 'Concat', [h, skip.value], { axis: ai(1) });
      h = resnetBlock(b, join(mod, `resnets.${j}`), h, inC + skip.channels, out, { groups, eps, temb: time });
      if (hasAttention) h = attn(join(mod, `attentions.${j}`), h, out, revHeads[i]);
    }
    if (i < 3) h = upsample(b, join(mod, 'upsamplers.0'), h, out);
    prevOut = out;
  }

  // 6. post-process
  h = groupNorm(b, 'conv_norm_out', h, C[0], groups, eps);
  h = silu(b, 'conv_act', h);
  h = conv2d(b, 'conv_out', h, C[0], cfg.outChannels, 3);
  b.output(h, 'out_sample', DataType.FLOAT, ['Convout_sample_dim_0', cfg.outChannels, 'Convout_sample_dim_2', 'Convout_sample_dim_3']);
}

/** Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0): [cos(t·f), sin(t·f)], f_i = 10000^(-i/half). */
function timestepEmbedding(b: GraphBuilder, ts: string, dim: number): string {
  const half = dim / 2;
  const freqs = Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
  const mod = 'time_proj';
  let t = b.op(mod, 'Unsqueeze', [ts, b.i64(mod, [1])]);
  t = b.op(mod, 'Cast', [t], { to: ai(DataType.FLOAT) });
  const args = b.op(mod, 'Mul', [t, b.f32(mod, freqs, [1, half])]);
  const sinCos = b.op(mod, 'Concat', [b.op(mod, 'Sin', [args]), b.op(mod, 'Cos', [args])], { axis: ai(-1) });
  // flip_sin_to_cos: torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
  const axis1 = (): string => b.i64(mod, [1]);
  const cos = b.op(mod, 'Slice', [sinCos, b.i64(mod, [half]), b.i64(mod, [dim]), axis1(), b.i64(mod, [1])]);
  const sin = b.op(mod, 'Slice', [sinCos, b.i64(mod, [0]), b.i64(mod, [half]), axis1(), b.i64(mod, [1])]);
  const flipped = b.op(mod, 'Concat', [cos, sin], { axis: ai(-1) });
  return b.op('', 'Cast', [flipped], { to: ai(DataType.FLOAT) });
}
