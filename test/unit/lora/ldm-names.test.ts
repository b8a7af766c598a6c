import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BLOCK_IDS_17, BLOCK_IDS_26, blockIdOf, blockWeightsFromVector } from '../../../src/lora/block-weights.js';
import { kohyaName } from '../../../src/lora/key-formats.js';
import { diffusersToLdm, SD_UNET_LAYOUT, unetLayoutFromModules } from '../../../src/lora/ldm-names.js';
import { sd15Targets } from './support.js';

// Golden table: A1111 extensions-builtin/Lora/lora_convert.py convert_diffusers_name_to_compvis, evaluated by
// hand on kohya names for SD1.5 (its `diffusion_model_` prefix dropped): lora_unet_<left> → <right>.
const A1111_CONVERT: Array<[string, string]> = [
  ['conv_in', 'input_blocks_0_0'],
  ['conv_out', 'out_2'],
  ['time_embedding_linear_1', 'time_embed_0'],
  ['time_embedding_linear_2', 'time_embed_2'],
  ['down_blocks_0_attentions_0_proj_in', 'input_blocks_1_1_proj_in'],
  ['down_blocks_0_attentions_1_transformer_blocks_0_attn1_to_q', 'input_blocks_2_1_transformer_blocks_0_attn1_to_q'],
  ['down_blocks_1_resnets_0_conv1', 'input_blocks_4_0_in_layers_2'],
  ['down_blocks_1_resnets_0_conv_shortcut', 'input_blocks_4_0_skip_connection'],
  ['down_blocks_1_resnets_1_conv2', 'input_blocks_5_0_out_layers_3'],
  ['down_blocks_2_resnets_1_time_emb_proj', 'input_blocks_8_0_emb_layers_1'],
  ['down_blocks_3_resnets_1_conv2', 'input_blocks_11_0_out_layers_3'],
  ['down_blocks_0_downsamplers_0_conv', 'input_blocks_3_0_op'],
  ['down_blocks_2_downsamplers_0_conv', 'input_blocks_9_0_op'],
  ['mid_block_resnets_0_conv1', 'middle_block_0_in_layers_2'],
  ['mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj', 'middle_block_1_transformer_blocks_0_ff_net_0_proj'],
  ['mid_block_resnets_1_time_emb_proj', 'middle_block_2_emb_layers_1'],
  ['up_blocks_0_resnets_0_conv1', 'output_blocks_0_0_in_layers_2'],
  ['up_blocks_0_resnets_2_conv_shortcut', 'output_blocks_2_0_skip_connection'],
  ['up_blocks_0_upsamplers_0_conv', 'output_blocks_2_1_conv'],
  ['up_blocks_1_attentions_0_proj_out', 'output_blocks_3_1_proj_out'],
  ['up_blocks_1_upsamplers_0_conv', 'output_blocks_5_2_conv'],
  ['up_blocks_2_upsamplers_0_conv', 'output_blocks_8_2_conv'],
  ['up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_out_0', 'output_blocks_11_1_transformer_blocks_0_attn2_to_out_0'],
];

test('diffusers → ldm names agree with A1111 convert_diffusers_name_to_compvis (SD1.5)', () => {
  const modules = new Map(sd15Targets().filter((t) => t.part === 'unet').map((t) => [kohyaName(t.module), t.module]));
  const layout = unetLayoutFromModules(modules.values());
  for (const [kohya, ldm] of A1111_CONVERT) {
    const module = modules.get(kohya);
    assert.ok(module, `test targets lack ${kohya}`);
    const got = diffusersToLdm(module, layout);
    assert.equal(got && kohyaName(got), ldm, kohya);
  }
});

test('every SD1.5 UNet layer has a distinct ldm name', () => {
  const unet = sd15Targets().filter((t) => t.part === 'unet');
  const names = unet.map((t) => diffusersToLdm(t.module));
  assert.ok(names.every((n) => n !== undefined));
  assert.equal(new Set(names).size, unet.length);
});

test('layout from the module list: layers per block and attention-free up blocks', () => {
  const layout = unetLayoutFromModules(sd15Targets().map((t) => t.module));
  assert.equal(layout.layersPerBlock, 2);
  assert.deepEqual([...layout.upBlocksWithAttention].sort(), [1, 2, 3]);
  // Attention-only targets say nothing about resnets: SD's layout.
  assert.equal(unetLayoutFromModules(['down_blocks.0.attentions.0.proj_in']).layersPerBlock, SD_UNET_LAYOUT.layersPerBlock);
  // One layer per block (a smaller UNet): indices shift accordingly.
  const one = { layersPerBlock: 1, upBlocksWithAttention: new Set([1]) };
  assert.equal(diffusersToLdm('down_blocks.1.resnets.0.conv1', one), 'input_blocks.3.0.in_layers.2');
  assert.equal(diffusersToLdm('up_blocks.1.upsamplers.0.conv', one), 'output_blocks.3.2.conv');
});

// LoRA Block Weight ids (hako-mikan sd-webui-lora-block-weight BLOCKS: "diffusion_model_input_blocks_N_" → INnn).
test('block ids of SD1.5 layers', () => {
  const table: Array<[string, string | undefined]> = [
    ['conv_in', 'IN00'],
    ['down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q', 'IN01'],
    ['down_blocks.0.resnets.1.conv1', 'IN02'],
    ['down_blocks.0.downsamplers.0.conv', 'IN03'],
    ['down_blocks.1.attentions.0.proj_in', 'IN04'],
    ['down_blocks.2.attentions.1.proj_out', 'IN08'],
    ['down_blocks.3.resnets.1.conv2', 'IN11'],
    ['mid_block.attentions.0.transformer_blocks.0.attn2.to_k', 'M00'],
    ['mid_block.resnets.1.conv1', 'M00'],
    ['up_blocks.0.resnets.0.conv1', 'OUT00'],
    ['up_blocks.0.upsamplers.0.conv', 'OUT02'],
    ['up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2', 'OUT03'],
    ['up_blocks.3.attentions.2.proj_out', 'OUT11'],
    ['time_embedding.linear_1', undefined],
    ['conv_out', undefined],
  ];
  for (const [module, id] of table) assert.equal(blockIdOf('unet', module), id, module);
  assert.equal(blockIdOf('te', 'text_model.encoder.layers.0.mlp.fc1'), 'BASE');
  // Every id the SD1.5 UNet uses is one of LBW's 26.
  const ids = new Set(sd15Targets().map((t) => blockIdOf(t.part, t.module)).filter((x) => x !== undefined));
  assert.deepEqual([...ids].sort(), [...BLOCK_IDS_26].sort());
});

test('LBW vectors: 26 values map 1:1; 17 values leave the other 9 blocks at 0 (to26)', () => {
  const w26 = blockWeightsFromVector(BLOCK_IDS_26.map((_, i) => i));
  assert.equal(w26.BASE, 0);
  assert.equal(w26.IN00, 1);
  assert.equal(w26.OUT11, 25);
  const w17 = blockWeightsFromVector(Array(17).fill(1));
  assert.equal(Object.values(w17).filter((v) => v === 1).length, 17);
  for (const id of ['IN00', 'IN03', 'IN06', 'IN09', 'IN10', 'IN11', 'OUT00', 'OUT01', 'OUT02']) assert.equal(w17[id], 0, id);
  assert.deepEqual(
    BLOCK_IDS_17.filter((id) => w17[id] === 1),
    [...BLOCK_IDS_17],
  );
  assert.throws(() => blockWeightsFromVector([1, 2, 3]), /17 or 26 values/);
});
