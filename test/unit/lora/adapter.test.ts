import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLora } from '../../../src/lora/adapter.js';
import { factorToFloat32 } from '../../../src/lora/safetensors.js';
import type { LoraTarget } from '../../../src/lora/types.js';
import type { SafetensorsTensor } from '../../../src/synth/safetensors-writer.js';
import { f32, file, kohya, pair, sd15Targets, target, throwsCode, TINY } from './support.js';

const T = sd15Targets();
const Q = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';
const K2 = 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k';
const OUT0 = 'up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_out.0';
const PROJ_IN = 'mid_block.attentions.0.proj_in';
const CONV1 = 'down_blocks.1.resnets.0.conv1';
const TE_Q = 'text_model.encoder.layers.0.self_attn.q_proj';
const TE_FC1 = 'text_model.encoder.layers.1.mlp.fc1';

const layerOf = (a: ReturnType<typeof parseLora>, module: string) => {
  const l = a.layers.find((x) => x.module === module);
  assert.ok(l, `no layer for ${module}`);
  return l;
};

test('kohya: linear, 1×1 conv and text encoder; alpha/rank scale; values kept; model order', () => {
  const q = kohya(target(T, Q), 4, { alpha: 2, seed: 1 });
  const proj = kohya(target(T, PROJ_IN), 4, { alpha: 2, seed: 2 });
  const te = kohya(target(T, TE_Q), 4, { alpha: 1, seed: 3 });
  const out0 = kohya(target(T, OUT0), 4, { seed: 4 }); // no alpha: alpha = rank
  const a = parseLora('catears', file([...q.tensors, ...proj.tensors, ...te.tensors, ...out0.tensors], { ss_base_model_version: 'sd_v1' }), T);
  assert.equal(a.format, 'kohya');
  assert.equal(a.unetNaming, 'diffusers');
  assert.deepEqual(a.unmatchedKeys, []);
  assert.deepEqual(
    a.layers.map((l) => l.module),
    T.filter((t) => [Q, PROJ_IN, TE_Q, OUT0].includes(t.module)).map((t) => t.module),
  );
  const lq = layerOf(a, Q);
  assert.deepEqual([lq.part, lq.kind, lq.rank, lq.alpha, lq.scale], ['unet', 'linear', 4, 2, 0.5]);
  assert.deepEqual(lq.down, q.down);
  assert.deepEqual(lq.up, q.up);
  assert.deepEqual(lq.downKernel, [1, 1]);
  assert.equal(lq.key, `lora_unet_${Q.replace(/\./g, '_')}`);
  const lp = layerOf(a, PROJ_IN);
  assert.deepEqual([lp.kind, lp.scale, lp.down.length, lp.up.length], ['conv', 0.5, 4 * TINY.channels[3], TINY.channels[3] * 4]);
  assert.deepEqual([layerOf(a, TE_Q).part, layerOf(a, TE_Q).scale], ['te', 0.25]);
  assert.deepEqual([layerOf(a, OUT0).alpha, layerOf(a, OUT0).scale], [4, 1]);
  assert.deepEqual(a.info.alphas, [1, 2, 4]);
  assert.equal(a.info.alphaSource, 'tensors');
  assert.equal(a.bytes, a.layers.reduce((s, l) => s + 4 * (l.down.length + l.up.length), 0));
});

test('fp16 files stay fp16 (bytes ≈ file size), bf16 is widened to float32; both exactly', () => {
  for (const dtype of ['F16', 'BF16'] as const) {
    const q = kohya(target(T, Q), 8, { alpha: 8, dtype });
    const a = parseLora('idol', file(q.tensors), T);
    const l = layerOf(a, Q);
    assert.ok(dtype === 'F16' ? l.down instanceof Uint16Array && l.up instanceof Uint16Array : l.down instanceof Float32Array, dtype);
    assert.deepEqual(factorToFloat32(l.down), q.down, dtype);
    assert.deepEqual(factorToFloat32(l.up), q.up, dtype);
    assert.equal(l.scale, 1);
    assert.equal(a.bytes, (dtype === 'F16' ? 2 : 4) * (l.down.length + l.up.length));
  }
});

test('LoCon: 3×3 ResNet conv down [r, in, 3, 3] with 1×1 up', () => {
  const c = target(T, CONV1);
  const conv = kohya(c, 2, { alpha: 1 });
  const q = kohya(target(T, Q), 4, { alpha: 4 });
  const a = parseLora('costume', file([...conv.tensors, ...q.tensors], { ss_network_args: '{"conv_dim": "2", "conv_alpha": "1"}' }), T);
  assert.equal(a.format, 'locon');
  const l = layerOf(a, CONV1);
  assert.deepEqual([l.kind, l.rank, l.scale, l.downKernel], ['conv', 2, 0.5, [3, 3]]);
  assert.equal(l.down.length, 2 * c.inFeatures * 9);
  assert.equal(a.info.convRank, 2);
  assert.equal(a.info.convAlpha, 1);
});

test('a 2-D LoRA fits a 1×1 conv (linear proj_in LoRAs), a 4-D 1×1 LoRA fits a linear layer', () => {
  const p = target(T, PROJ_IN);
  const linearOnConv = pair(p, { down: 'lora_unet_mid_block_attentions_0_proj_in.lora_down.weight', up: 'lora_unet_mid_block_attentions_0_proj_in.lora_up.weight', rank: 2, downShape: [2, p.inFeatures], upShape: [p.outFeatures, 2] });
  const q = target(T, Q);
  const convOnLinear = pair(q, { down: `lora_unet_${Q.replace(/\./g, '_')}.lora_down.weight`, up: `lora_unet_${Q.replace(/\./g, '_')}.lora_up.weight`, rank: 2, downShape: [2, q.inFeatures, 1, 1], upShape: [q.outFeatures, 2, 1, 1] });
  const a = parseLora('mixed', file([...linearOnConv.tensors, ...convOnLinear.tensors]), T);
  assert.equal(a.layers.length, 2);
  // A 3×3 conv cannot take a 2-D down.
  const c = target(T, CONV1);
  const flat = pair(c, { down: 'lora_unet_down_blocks_1_resnets_0_conv1.lora_down.weight', up: 'lora_unet_down_blocks_1_resnets_0_conv1.lora_up.weight', rank: 2, downShape: [2, c.inFeatures], upShape: [c.outFeatures, 2] });
  throwsCode(() => parseLora('flat', file(flat.tensors), T), 'LORA_MISMATCH', /down_blocks\.1\.resnets\.0\.conv1: expected down \[r, \d+, 3, 3\]/);
});

test('old diffusers attention processors and lora_linear_layer', () => {
  const tensors: SafetensorsTensor[] = [];
  const base = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1';
  const add = (module: string, down: string, up: string) => tensors.push(...pair(target(T, module), { down, up, rank: 4 }).tensors);
  add(`${base}.to_q`, `${base}.processor.to_q_lora.down.weight`, `${base}.processor.to_q_lora.up.weight`);
  add(`${base}.to_out.0`, `${base}.processor.to_out_lora.down.weight`, `${base}.processor.to_out_lora.up.weight`);
  const teAttn = 'text_model.encoder.layers.0.self_attn';
  add(`${teAttn}.v_proj`, `text_encoder.${teAttn}.to_v_lora.down.weight`, `text_encoder.${teAttn}.to_v_lora.up.weight`);
  add(TE_FC1, `text_encoder.${TE_FC1}.lora_linear_layer.down.weight`, `text_encoder.${TE_FC1}.lora_linear_layer.up.weight`);
  const a = parseLora('attnprocs', file(tensors), T);
  assert.equal(a.format, 'diffusers-attnprocs');
  assert.deepEqual(a.layers.map((l) => `${l.part}:${l.module}`).sort(), [`te:${teAttn}.v_proj`, `te:${TE_FC1}`, `unet:${base}.to_out.0`, `unet:${base}.to_q`].sort());
  assert.ok(a.layers.every((l) => l.scale === 1));
});

test('diffusers 0.21 LoRACompatible keys (`.lora.down.weight`) with unet./text_encoder. prefixes', () => {
  const a = parseLora(
    'compat',
    file([
      ...pair(target(T, PROJ_IN), { down: `unet.${PROJ_IN}.lora.down.weight`, up: `unet.${PROJ_IN}.lora.up.weight`, rank: 2 }).tensors,
      ...pair(target(T, TE_Q), { down: `text_encoder.${TE_Q}.lora.down.weight`, up: `text_encoder.${TE_Q}.lora.up.weight`, rank: 2 }).tensors,
    ]),
    T,
  );
  assert.equal(a.format, 'diffusers');
  assert.equal(a.layers.length, 2);
});

function peftFile(metadata?: Record<string, string>, extra: SafetensorsTensor[] = [], prefix = { unet: 'unet.', te: 'text_encoder.' }): Uint8Array {
  return file(
    [
      ...pair(target(T, Q), { down: `${prefix.unet}${Q}.lora_A.weight`, up: `${prefix.unet}${Q}.lora_B.weight`, rank: 4 }).tensors,
      ...pair(target(T, K2), { down: `${prefix.unet}${K2}.lora_A.weight`, up: `${prefix.unet}${K2}.lora_B.weight`, rank: 4 }).tensors,
      ...pair(target(T, TE_Q), { down: `${prefix.te}${TE_Q}.lora_A.weight`, up: `${prefix.te}${TE_Q}.lora_B.weight`, rank: 2 }).tensors,
      ...extra,
    ],
    metadata,
  );
}

test('PEFT: alpha from diffusers lora_adapter_metadata (per component, alpha_pattern), default alpha = rank', () => {
  const meta = {
    format: 'pt',
    lora_adapter_metadata: JSON.stringify({
      'unet.lora_alpha': 8,
      'unet.r': 4,
      'unet.alpha_pattern': { 'attn2.to_k': 2 },
      'text_encoder.lora_alpha': 1,
      'text_encoder.r': 2,
    }),
  };
  const a = parseLora('lights', peftFile(meta), T);
  assert.equal(a.format, 'peft');
  assert.deepEqual([layerOf(a, Q).alpha, layerOf(a, Q).scale], [8, 2]);
  assert.deepEqual([layerOf(a, K2).alpha, layerOf(a, K2).scale], [2, 0.5]);
  assert.deepEqual([layerOf(a, TE_Q).alpha, layerOf(a, TE_Q).scale], [1, 0.5]);
  assert.equal(a.info.alphaSource, 'metadata');
  // No config anywhere: alpha = rank.
  const plain = parseLora('plain', peftFile(), T);
  assert.ok(plain.layers.every((l) => l.scale === 1 && l.alpha === l.rank));
  assert.equal(plain.info.alphaSource, 'none');
});

test('PEFT: base_model.model. prefix, embedded adapter_config, flat lora_alpha, external config, rsLoRA, per-key alpha', () => {
  const bare = { unet: 'base_model.model.', te: 'base_model.model.' };
  const embedded = parseLora('emb', peftFile({ adapter_config: JSON.stringify({ r: 4, lora_alpha: 16, peft_type: 'LORA' }) }, [], bare), T);
  assert.equal(layerOf(embedded, Q).scale, 4);
  assert.equal(layerOf(embedded, TE_Q).part, 'te');
  assert.equal(layerOf(embedded, TE_Q).scale, 8);
  const flat = parseLora('flat', peftFile({ lora_alpha: '2' }), T);
  assert.equal(layerOf(flat, Q).scale, 0.5);
  const external = parseLora('ext', peftFile(), T, { adapterConfig: { lora_alpha: 12, r: 4 } });
  assert.equal(layerOf(external, Q).scale, 3);
  const rs = parseLora('rs', peftFile({ adapter_config: JSON.stringify({ lora_alpha: 8, use_rslora: true }) }), T);
  assert.equal(layerOf(rs, Q).scale, 8 / Math.sqrt(4));
  // A per-key alpha tensor wins over the config.
  const perKey = parseLora('pk', peftFile({ lora_alpha: '2' }, [{ name: `unet.${Q}.alpha`, dtype: 'F32', shape: [], data: f32([1]) }]), T);
  assert.equal(layerOf(perKey, Q).scale, 0.25);
  assert.equal(layerOf(perKey, K2).scale, 0.5);
});

const REFUSED: Array<[string, string, RegExp]> = [
  ['hada_w1_a', 'LoHa', /LoHa is not supported yet/],
  ['lokr_w1', 'LoKr', /LoKr is not supported yet/],
  ['dora_scale', 'DoRA', /DoRA is not supported yet/],
  ['on_input', 'IA3', /IA3 is not supported yet/],
  ['a1.weight', 'GLoRA', /GLoRA is not supported yet/],
  ['diff', 'full weight difference (LyCORIS "full")', /full weight difference/],
  ['lora_mid.weight', 'LoCon with Tucker/CP decomposition (lora_mid)', /Tucker/],
];

test('LoHa, LoKr, DoRA, IA3, GLoRA, full, Tucker LoCon: the whole file is refused by name', () => {
  const good = kohya(target(T, Q), 4, { alpha: 4 }).tensors;
  for (const [suffix, network, message] of REFUSED) {
    const bad: SafetensorsTensor = { name: `lora_unet_${CONV1.replace(/\./g, '_')}.${suffix}`, dtype: 'F32', shape: [2], data: f32([1, 2]) };
    const e = throwsCode(() => parseLora('x', file([...good, bad]), T), 'LORA_UNSUPPORTED', message);
    assert.equal(e.details?.network, network);
  }
  const peftDora: SafetensorsTensor = { name: `unet.${Q}.lora_magnitude_vector`, dtype: 'F32', shape: [2], data: f32([1, 2]) };
  throwsCode(() => parseLora('x', peftFile(undefined, [peftDora]), T), 'LORA_UNSUPPORTED', /DoRA is not supported yet/);
});

test('a LoRA for another base model (SDXL 2048-dim / SD2 1024-dim context) is LORA_MISMATCH listing mismatches', () => {
  const t = target(T, K2);
  const sdxl = (ctx: number) =>
    pair(t, { down: `lora_unet_${K2.replace(/\./g, '_')}.lora_down.weight`, up: `lora_unet_${K2.replace(/\./g, '_')}.lora_up.weight`, rank: 4, downShape: [4, ctx], upShape: [t.outFeatures, 4] }).tensors;
  const e = throwsCode(
    () => parseLora('xl', file([...kohya(target(T, Q), 4).tensors, ...sdxl(2048)], { ss_base_model_version: 'sdxl_base_v1-0' }), T),
    'LORA_MISMATCH',
    new RegExp(`trained for sdxl_base_v1-0.*1 of 2 matched layers.*${K2.replace(/\./g, '\\.')}: expected down \\[r, ${TINY.context}\\] / up \\[${t.outFeatures}, r\\], got down \\[4, 2048\\]`),
  );
  assert.equal(e.details?.count, 1);
  assert.deepEqual((e.details?.mismatches as Array<{ module: string }>)[0].module, K2);
  assert.equal(e.details?.baseModel, 'sdxl');
  throwsCode(() => parseLora('sd2', file(sdxl(1024)), T), 'LORA_MISMATCH', /got down \[4, 1024\]/);
});

test('a LoRA that matches no layer is LORA_MISMATCH, not a silent no-op', () => {
  const fake: LoraTarget = { part: 'unet', module: 'some_block.proj', kind: 'linear', inFeatures: 4, outFeatures: 4 };
  const e = throwsCode(() => parseLora('ghost', file(kohya(fake, 2).tensors), T), 'LORA_MISMATCH', /matches none of this model's \d+ LoRA-targetable layers.*lora_unet_some_block_proj/);
  assert.equal(e.details?.unmatchedCount, 2);
  throwsCode(() => parseLora('empty', file([{ name: 'x', dtype: 'F32', shape: [1], data: f32([1]) }]), T), 'LORA_MISMATCH', /matches none/);
});

test('unmatched keys are reported: SDXL te2, unknown suffixes, bundled embeddings, lone alphas', () => {
  const te2 = kohya(target(T, TE_Q), 2, { prefix: 'te2' }).tensors;
  const extras: SafetensorsTensor[] = [
    { name: 'lora_unet_mid_block_attentions_0_norm.something', dtype: 'F32', shape: [1], data: f32([0]) },
    { name: 'bundle_emb.badhand.string_to_param.*', dtype: 'F32', shape: [2], data: f32([0, 0]) },
    { name: 'lora_unet_conv_out.alpha', dtype: 'F32', shape: [], data: f32([1]) },
  ];
  const a = parseLora('multi', file([...kohya(target(T, Q), 4).tensors, ...te2, ...extras]), T);
  assert.equal(a.layers.length, 1);
  assert.deepEqual(
    [...a.unmatchedKeys].sort(),
    [...te2.map((t) => t.name), ...extras.map((t) => t.name)].sort(),
  );
  assert.deepEqual(a.info.bundledEmbeddings, ['badhand']);
  assert.equal(a.info.modules.te2, 1);
});

test('kohya `_` ambiguity is resolved by the model’s module list, and reported when the model itself is ambiguous', () => {
  // Names with underscores inside segments resolve exactly: to_out.0, time_emb_proj, ff.net.0.proj, conv_shortcut.
  const mods = [OUT0, 'down_blocks.1.resnets.0.time_emb_proj', 'mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj', 'down_blocks.1.resnets.0.conv_shortcut'];
  const a = parseLora('u', file(mods.flatMap((m, i) => kohya(target(T, m), 2, { seed: i }).tensors)), T);
  assert.deepEqual(a.layers.map((l) => l.module).sort(), [...mods].sort());
  // A model with both `a.b_c` and `a_b.c`: `lora_unet_a_b_c` could be either; refused, not guessed.
  const weird: LoraTarget[] = [
    { part: 'unet', module: 'a.b_c', kind: 'linear', inFeatures: 4, outFeatures: 4 },
    { part: 'unet', module: 'a_b.c', kind: 'linear', inFeatures: 4, outFeatures: 4 },
  ];
  const e = throwsCode(() => parseLora('amb', file(kohya(weird[0], 2).tensors), weird), 'LORA_MISMATCH', /could name a\.b_c or a_b\.c/);
  assert.deepEqual(e.details?.candidates, ['a.b_c', 'a_b.c']);
});

test('kohya keys with A1111/ldm UNet names map onto the diffusers modules', () => {
  const cases: Array<[string, string]> = [
    ['input_blocks_1_1_transformer_blocks_0_attn1_to_q', Q],
    ['middle_block_1_proj_in', PROJ_IN],
    ['input_blocks_4_0_in_layers_2', CONV1],
    ['output_blocks_11_1_transformer_blocks_0_attn1_to_out_0', OUT0],
    ['diffusion_model_output_blocks_2_1_conv', 'up_blocks.0.upsamplers.0.conv'],
  ];
  const tensors = cases.flatMap(([ldm, module], i) => kohya(target(T, module), 2, { name: ldm, seed: i }).tensors);
  const a = parseLora('ldm', file(tensors), T);
  assert.equal(a.unetNaming, 'ldm');
  assert.deepEqual(a.layers.map((l) => l.module).sort(), cases.map(([, m]) => m).sort());
});

test('broken pairs: lone down, rank disagreement, two keys for one module, NaN weights', () => {
  const q = kohya(target(T, Q), 4).tensors;
  throwsCode(() => parseLora('x', file(q.filter((t) => !t.name.endsWith('lora_up.weight'))), T), 'LORA_INVALID', /has a down tensor but no up/, 'incomplete-layer');
  const t = target(T, Q);
  const skew = pair(t, { down: 'lora_unet_x.lora_down.weight', up: 'lora_unet_x.lora_up.weight', rank: 4, upShape: [t.outFeatures, 2] }).tensors;
  throwsCode(() => parseLora('x', file(skew), T), 'LORA_INVALID', /ranks disagree/, 'rank-mismatch');
  const peftQ = pair(t, { down: `unet.${Q}.lora_A.weight`, up: `unet.${Q}.lora_B.weight`, rank: 4 }).tensors;
  throwsCode(() => parseLora('x', file([...q, ...peftQ]), T), 'LORA_INVALID', /both adapt/, 'duplicate-layer');
  const nan = kohya(t, 4).tensors.map((x) => (x.name.endsWith('lora_up.weight') ? { ...x, data: f32(new Float32Array(t.outFeatures * 4).fill(NaN)) } : x));
  throwsCode(() => parseLora('x', file(nan), T), 'LORA_INVALID', /non-finite/, 'non-finite');
});
