/**
 * AutoencoderKL encoder (diffusers v0.21.4 `models/vae.py` Encoder + quant_conv) with the graph I/O of
 * diffusers' conversion script: sample float [batch, 3, height, width] (image in [-1, 1]) → latent_sample.
 *
 * Difference from the real export, on purpose: the script exports `latent_dist.sample()`, which puts a
 * RandomNormalLike node in the graph (a different latent on every run). This graph returns the
 * distribution's mean instead, so encoding is deterministic; like the real one it is not multiplied by
 * the scaling factor.
 */
import { DataType } from '../onnx/proto.js';
import { downsample, resnetBlock } from './blocks.js';
import { type GraphBuilder, join } from './graph-builder.js';
import { conv2d, groupNorm, silu } from './layers.js';
import type { VaeConfig } from './presets.js';
import { vaeMidBlock } from './vae-decoder.js';

export function buildVaeEncoder(b: GraphBuilder, cfg: VaeConfig): void {
  const { groups } = cfg;
  const eps = 1e-6;
  const C = cfg.blockOut;
  const L = cfg.latentChannels;
  const image = b.input('sample', DataType.FLOAT, ['batch', 'channels', 'height', 'width']);
  const enc = 'encoder';
  let h = conv2d(b, join(enc, 'conv_in'), image, 3, C[0], 3);
  let prev = C[0];
  for (let i = 0; i < 4; i++) {
    const mod = join(enc, `down_blocks.${i}`);
    const out = C[i];
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      h = resnetBlock(b, join(mod, `resnets.${j}`), h, j === 0 ? prev : out, out, { groups, eps });
    }
    if (i < 3) h = downsample(b, join(mod, 'downsamplers.0'), h, out, true);
    prev = out;
  }
  h = vaeMidBlock(b, join(enc, 'mid_block'), h, C[3], groups);
  h = groupNorm(b, join(enc, 'conv_norm_out'), h, C[3], groups, eps);
  h = silu(b, join(enc, 'conv_act'), h);
  h = conv2d(b, join(enc, 'conv_out'), h, C[3], 2 * L, 3);
  const moments = conv2d(b, 'quant_conv', h, 2 * L, 2 * L, 1);
  // DiagonalGaussianDistribution: mean, logvar = moments.chunk(2, dim=1); we return the mean.
  const mean = b.op('', 'Slice', [moments, b.i64('', [0]), b.i64('', [L]), b.i64('', [1])]);
  b.output(mean, 'latent_sample', DataType.FLOAT, ['Addlatent_sample_dim_0', 'Addlatent_sample_dim_1', 'Addlatent_sample_dim_2', 'Addlatent_sample_dim_3']);
}
