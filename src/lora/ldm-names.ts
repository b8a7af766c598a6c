/**
 * diffusers UNet module paths → the original Stable Diffusion (ldm / "compvis") paths that A1111 uses.
 *
 * Why: some LoRAs (LyCORIS, A1111-side tools) name UNet layers the ldm way, `lora_unet_input_blocks_1_1_proj_in`,
 * and A1111's "LoRA Block Weight" ids (IN00…OUT11) are ldm block indices. We map each of the *model's* diffusers
 * modules forward to its ldm path (a function), instead of parsing ldm names backwards, so a LoRA key is matched
 * only when it names a layer the model really has.
 *
 * Upstream: diffusers `scripts/convert_diffusers_to_original_stable_diffusion.py` (unet_conversion_map) and
 * A1111 `extensions-builtin/Lora/lora_convert.py` (convert_diffusers_name_to_compvis, make_unet_conversion_map):
 *   down_blocks.i.resnets.j / attentions.j → input_blocks.{1 + i·(L+1) + j}.0 / .1
 *   down_blocks.i.downsamplers.0.conv      → input_blocks.{(i+1)·(L+1)}.0.op
 *   mid_block.resnets.j / attentions.0     → middle_block.{2j} / middle_block.1
 *   up_blocks.i.resnets.j / attentions.j   → output_blocks.{i·(L+1) + j}.0 / .1
 *   up_blocks.i.upsamplers.0.conv          → output_blocks.{i·(L+1) + L}.{2 if the block has attentions else 1}.conv
 *   resnet conv1 / conv2 / time_emb_proj / conv_shortcut → in_layers.2 / out_layers.3 / emb_layers.1 / skip_connection
 *   conv_in → input_blocks.0.0, time_embedding.linear_1/2 → time_embed.0/2, conv_out → out.2
 * with L = layers_per_block (2 for SD1.x/SD2.x; A1111 hard-codes 3 = L + 1).
 */

export interface UnetLayout {
  /** Resnets per down block (up blocks have one more). */
  layersPerBlock: number;
  /** Up blocks that contain attentions (SD1.5: 1, 2, 3); decides where the upsampler sits. */
  upBlocksWithAttention: ReadonlySet<number>;
}

/** SD1.x / SD2.x: 2 layers per block, up_blocks.0 is the attention-free UpBlock2D. */
export const SD_UNET_LAYOUT: UnetLayout = { layersPerBlock: 2, upBlocksWithAttention: new Set([1, 2, 3]) };

/** The layout of a UNet from its module paths; SD's when the modules do not say (e.g. attention-only target lists). */
export function unetLayoutFromModules(modules: Iterable<string>): UnetLayout {
  let maxDownResnet = -1;
  const withAttention = new Set<number>();
  let sawUp = false;
  for (const m of modules) {
    const d = /^down_blocks\.\d+\.resnets\.(\d+)\./.exec(m);
    if (d) maxDownResnet = Math.max(maxDownResnet, Number(d[1]));
    const u = /^up_blocks\.(\d+)\.(attentions|resnets)\./.exec(m);
    if (u) {
      sawUp = true;
      if (u[2] === 'attentions') withAttention.add(Number(u[1]));
    }
  }
  return {
    layersPerBlock: maxDownResnet >= 0 ? maxDownResnet + 1 : SD_UNET_LAYOUT.layersPerBlock,
    upBlocksWithAttention: sawUp ? withAttention : SD_UNET_LAYOUT.upBlocksWithAttention,
  };
}

const RESNET_SUFFIX: Record<string, string> = {
  conv1: 'in_layers.2',
  conv2: 'out_layers.3',
  time_emb_proj: 'emb_layers.1',
  conv_shortcut: 'skip_connection',
  norm1: 'in_layers.0',
  norm2: 'out_layers.0',
};

function resnetRest(rest: string): string | undefined {
  return RESNET_SUFFIX[rest];
}

/** The ldm path of a diffusers UNet module path (dotted), or undefined for modules outside the table. */
export function diffusersToLdm(module: string, layout: UnetLayout = SD_UNET_LAYOUT): string | undefined {
  const L1 = layout.layersPerBlock + 1;
  let m: RegExpExecArray | null;
  if (module === 'conv_in') return 'input_blocks.0.0';
  if (module === 'conv_out') return 'out.2';
  if (module === 'conv_norm_out') return 'out.0';
  if ((m = /^time_embedding\.linear_(\d+)$/.exec(module))) return `time_embed.${(Number(m[1]) - 1) * 2}`;
  if ((m = /^down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(module))) {
    const rest = resnetRest(m[3]);
    return rest && `input_blocks.${1 + Number(m[1]) * L1 + Number(m[2])}.0.${rest}`;
  }
  if ((m = /^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(module))) {
    return `input_blocks.${1 + Number(m[1]) * L1 + Number(m[2])}.1.${m[3]}`;
  }
  if ((m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv$/.exec(module))) return `input_blocks.${(Number(m[1]) + 1) * L1}.0.op`;
  if ((m = /^mid_block\.attentions\.0\.(.+)$/.exec(module))) return `middle_block.1.${m[1]}`;
  if ((m = /^mid_block\.resnets\.(\d+)\.(.+)$/.exec(module))) {
    const rest = resnetRest(m[2]);
    return rest && `middle_block.${2 * Number(m[1])}.${rest}`;
  }
  if ((m = /^up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(module))) {
    const rest = resnetRest(m[3]);
    return rest && `output_blocks.${Number(m[1]) * L1 + Number(m[2])}.0.${rest}`;
  }
  if ((m = /^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(module))) {
    return `output_blocks.${Number(m[1]) * L1 + Number(m[2])}.1.${m[3]}`;
  }
  if ((m = /^up_blocks\.(\d+)\.upsamplers\.0\.conv$/.exec(module))) {
    const i = Number(m[1]);
    return `output_blocks.${i * L1 + layout.layersPerBlock}.${layout.upBlocksWithAttention.has(i) ? 2 : 1}.conv`;
  }
  return undefined;
}

/** Which ldm block a ldm path sits in: `input_blocks.N…` → ['in', N], `middle_block…` → ['mid', 0], `output_blocks.N…` → ['out', N]. */
export function ldmBlock(ldmPath: string): { kind: 'in' | 'mid' | 'out'; index: number } | undefined {
  let m: RegExpExecArray | null;
  if ((m = /^input_blocks\.(\d+)\./.exec(ldmPath))) return { kind: 'in', index: Number(m[1]) };
  if (/^middle_block\./.test(ldmPath)) return { kind: 'mid', index: 0 };
  if ((m = /^output_blocks\.(\d+)\./.exec(ldmPath))) return { kind: 'out', index: Number(m[1]) };
  return undefined;
}
