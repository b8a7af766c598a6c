/**
 * AutoencoderKL decoder (diffusers v0.21.4 `models/vae.py` Decoder) as diffusers' conversion script exports
 * `vae.decode`: latent_sample float [batch, channels, height, width] (latents already divided by the
 * scaling factor) → sample, the image in about [-1, 1], NCHW.
 */
import { DataType } from '../onnx/proto.js';
import { resnetBlock, upsample, vaeAttention } from './blocks.js';
import { type GraphBuilder, join } from './graph-builder.js';
import { conv2d, groupNorm, silu } from './layers.js';
import type { VaeConfig } from './presets.js';

export function buildVaeDecoder(b: GraphBuilder, cfg: VaeConfig): void {
  const { groups } = cfg;
  const eps = 1e-6;
  const C = cfg.blockOut;
  const L = cfg.latentChannels;
  const latent = b.input('latent_sample', DataType.FLOAT, ['batch', 'channels', 'height', 'width']);
  let h = conv2d(b, 'post_quant_conv', latent, L, L, 1);
  const dec = 'decoder';
  h = conv2d(b, join(dec, 'conv_in'), h, L, C[3], 3);
  h = vaeMidBlock(b, join(dec, 'mid_block'), h, C[3], groups);
  const rev = [...C].reverse();
  let prev = rev[0];
  for (let i = 0; i < 4; i++) {
    const mod = join(dec, `up_blocks.${i}`);
    const out = rev[i];
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      h = resnetBlock(b, join(mod, `resnets.${j}`), h, j === 0 ? prev : out, out, { groups, eps });
    }
    if (i < 3) h = upsample(b, join(mod, 'upsamplers.0'), h, out);
    prev = out;
  }
  h = groupNorm(b, join(dec, 'conv_norm_out'), h, C[0], groups, eps);
  h = silu(b, join(dec, 'conv_act'), h);
  h = conv2d(b, join(dec, 'conv_out'), h, C[0], 3, 3);
  b.output(h, 'sample', DataType.FLOAT, ['Convsample_dim_0', 3, 'Convsample_dim_2', 'Convsample_dim_3']);
}

/** UNetMidBlock2D of the VAE: ResNet, single-head attention, ResNet (no time embedding). */
export function vaeMidBlock(b: GraphBuilder, mod: string, x: string, channels: number, groups: number): string {
  let h = resnetBlock(b, join(mod, 'resnets.0'), x, channels, channels, { groups, eps: 1e-6 });
  h = vaeAttention(b, join(mod, 'attentions.0'), h, channels, groups);
  return resnetBlock(b, join(mod, 'resnets.1'), h, channels, channels, { groups, eps: 1e-6 });
}
