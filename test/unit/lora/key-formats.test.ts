import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kohyaName, parseKey } from '../../../src/lora/key-formats.js';

// Golden table: key → [family, part, name, role]. Names stay in the file's naming (kohya underscores are
// resolved against the model later). Sources: kohya-ss networks/lora.py, diffusers loaders
// (attn procs ≤ 0.20, PatchedLoraProjection 0.18–0.20, LoRACompatibleLinear 0.21, PEFT ≥ 0.22), PEFT.
const LORA_KEYS: Array<[string, string, string | null, string, string]> = [
  ['lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', 'kohya', 'unet', 'down_blocks_0_attentions_0_proj_in', 'down'],
  ['lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight', 'kohya', 'unet', 'down_blocks_0_attentions_0_proj_in', 'up'],
  ['lora_unet_down_blocks_0_attentions_0_proj_in.alpha', 'kohya', 'unet', 'down_blocks_0_attentions_0_proj_in', 'alpha'],
  ['lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight', 'kohya', 'te', 'text_model_encoder_layers_0_self_attn_q_proj', 'down'],
  ['lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight', 'kohya', 'te', 'text_model_encoder_layers_0_mlp_fc1', 'up'],
  ['lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight', 'kohya', 'te2', 'text_model_encoder_layers_0_mlp_fc1', 'up'],
  ['lora_unet_input_blocks_1_1_proj_in.lora_down.weight', 'kohya', 'unet', 'input_blocks_1_1_proj_in', 'down'],
  // old diffusers attention processors: UNet (processor.to_out_lora adapts to_out.0) and CLIP self_attn
  [
    'down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight',
    'diffusers-attnprocs',
    null,
    'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q',
    'down',
  ],
  [
    'unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight',
    'diffusers-attnprocs',
    'unet',
    'mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0',
    'up',
  ],
  ['text_encoder.text_model.encoder.layers.3.self_attn.to_k_lora.down.weight', 'diffusers-attnprocs', 'te', 'text_model.encoder.layers.3.self_attn.k_proj', 'down'],
  ['text_encoder.text_model.encoder.layers.3.self_attn.to_out_lora.up.weight', 'diffusers-attnprocs', 'te', 'text_model.encoder.layers.3.self_attn.out_proj', 'up'],
  ['text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_linear_layer.down.weight', 'diffusers-attnprocs', 'te', 'text_model.encoder.layers.0.mlp.fc1', 'down'],
  ['unet.up_blocks.1.attentions.0.proj_in.lora.down.weight', 'diffusers', 'unet', 'up_blocks.1.attentions.0.proj_in', 'down'],
  // PEFT: lora_A = down, lora_B = up; prefixes unet. / text_encoder. / base_model.model.; optional adapter name
  ['unet.down_blocks.1.attentions.1.transformer_blocks.0.attn1.to_q.lora_A.weight', 'peft', 'unet', 'down_blocks.1.attentions.1.transformer_blocks.0.attn1.to_q', 'down'],
  ['text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight', 'peft', 'te', 'text_model.encoder.layers.0.self_attn.q_proj', 'up'],
  ['base_model.model.down_blocks.0.attentions.0.proj_out.lora_A.weight', 'peft', null, 'down_blocks.0.attentions.0.proj_out', 'down'],
  ['base_model.model.text_model.encoder.layers.1.mlp.fc2.lora_B.default.weight', 'peft', 'te', 'text_model.encoder.layers.1.mlp.fc2', 'up'],
  ['unet.conv_in.alpha', 'peft', 'unet', 'conv_in', 'alpha'],
  ['transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight', 'peft', 'other', 'single_transformer_blocks.0.attn.to_q', 'down'],
];

test('LoRA keys: family, part, module name and role', () => {
  for (const [key, family, part, name, role] of LORA_KEYS) {
    const k = parseKey(key);
    assert.equal(k.kind, 'lora', key);
    if (k.kind !== 'lora') continue;
    assert.deepEqual([k.family, k.part, k.name, k.role], [family, part, name, role], key);
  }
});

test('down, up and alpha of one layer share a group', () => {
  const g = (key: string) => {
    const k = parseKey(key);
    return k.kind === 'lora' ? k.group : undefined;
  };
  assert.equal(g('lora_unet_x_y.lora_down.weight'), g('lora_unet_x_y.alpha'));
  assert.equal(g('unet.a.b.lora_A.weight'), g('unet.a.b.lora_B.weight'));
  assert.equal(g('unet.a.b.lora_A.weight'), g('unet.a.b.alpha'));
  assert.notEqual(g('lora_te_x.lora_down.weight'), g('lora_unet_x.lora_down.weight'));
});

// Network types refused by name (A1111 extensions-builtin/Lora/network_*.py, PEFT DoRA).
const UNSUPPORTED: Array<[string, string]> = [
  ['lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a', 'LoHa'],
  ['lora_unet_down_blocks_0_resnets_0_conv1.hada_t2', 'LoHa'],
  ['lora_unet_down_blocks_0_resnets_0_conv1.lokr_w1', 'LoKr'],
  ['lora_te_text_model_encoder_layers_0_mlp_fc1.lokr_w2_b', 'LoKr'],
  ['lora_unet_mid_block_attentions_0_proj_in.dora_scale', 'DoRA'],
  ['unet.mid_block.attentions.0.proj_in.lora_magnitude_vector', 'DoRA'],
  ['unet.mid_block.attentions.0.proj_in.lora_magnitude_vector.default.weight', 'DoRA'],
  ['lora_unet_mid_block_attentions_0_proj_in.on_input', 'IA3'],
  ['lora_unet_mid_block_attentions_0_proj_in.weight', 'IA3'],
  ['lora_unet_mid_block_attentions_0_proj_in.a1.weight', 'GLoRA'],
  ['lora_unet_mid_block_attentions_0_proj_in.oft_blocks', 'OFT'],
  ['lora_unet_mid_block_attentions_0_proj_in.diff', 'full weight difference (LyCORIS "full")'],
  ['lora_unet_mid_block_attentions_0_norm.w_norm', 'LyCORIS norm-layer weights'],
  ['lora_unet_down_blocks_0_resnets_0_conv1.lora_mid.weight', 'LoCon with Tucker/CP decomposition (lora_mid)'],
];

test('LoHa, LoKr, DoRA, IA3, GLoRA, OFT, full, norm, Tucker are recognised by name', () => {
  for (const [key, network] of UNSUPPORTED) assert.deepEqual(parseKey(key), { kind: 'unsupported', network }, key);
});

test('bundled embeddings and unknown keys', () => {
  assert.deepEqual(parseKey('bundle_emb.EasyNegative.string_to_param.*'), { kind: 'embedding', name: 'EasyNegative' });
  assert.deepEqual(parseKey('lora_unet_x.something_else'), { kind: 'unknown' });
  assert.deepEqual(parseKey('model.diffusion_model.input_blocks.0.0.weight'), { kind: 'unknown' });
});

test('kohyaName replaces every dot', () => {
  assert.equal(kohyaName('down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0'), 'down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0');
});
