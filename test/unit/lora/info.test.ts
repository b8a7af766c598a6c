import assert from 'node:assert/strict';
import { test } from 'node:test';
import { baseModelOf, loraInfoFromHeader, tagFrequency } from '../../../src/lora/info.js';
import { parseHeader } from '../../../src/lora/safetensors.js';
import { file, kohya, sd15Targets, target } from './support.js';

const T = sd15Targets();

/** The header of a file, parsed from the header bytes alone: info never needs tensor data. */
function headerOnly(bytes: Uint8Array) {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return parseHeader(bytes.subarray(8, 8 + n), bytes.byteLength, 'x');
}

test('kohya metadata: ranks, alpha, base model, alias, comment, trigger words, module counts', () => {
  const tensors = [
    ...kohya(target(T, 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q'), 4, { alpha: 2 }).tensors,
    ...kohya(target(T, 'text_model.encoder.layers.0.mlp.fc1'), 4, { alpha: 2 }).tensors,
    ...kohya(target(T, 'down_blocks.1.resnets.0.conv1'), 8, { alpha: 1 }).tensors,
  ];
  const info = loraInfoFromHeader(
    headerOnly(
      file(tensors, {
        ss_network_module: 'networks.lora',
        ss_network_dim: '4',
        ss_network_alpha: '2.0',
        ss_network_args: '{"conv_dim": "8", "conv_alpha": "1"}',
        ss_output_name: 'catEars_v2',
        ss_base_model_version: 'sd_v1',
        ss_v2: 'False',
        ss_sd_model_name: 'anything-v4.5.safetensors',
        ss_training_comment: 'trigger: cat ears',
        ss_tag_frequency: JSON.stringify({ '10_catears': { 'cat ears': 40, '1girl': 33, solo: 33 }, '5_extra': { '1girl': 10, 'brown hair': 2 } }),
        sshs_model_hash: 'abc123',
      }),
    ),
  );
  assert.equal(info.format, 'locon');
  assert.equal(info.unsupported, null);
  assert.deepEqual(info.ranks, [4, 8]);
  assert.deepEqual(info.alphas, [2]);
  assert.equal(info.alphaSource, 'metadata');
  assert.deepEqual([info.convRank, info.convAlpha], [8, 1]);
  assert.deepEqual([info.baseModel, info.baseModelVersion], ['sd1', 'sd_v1']);
  assert.equal(info.outputName, 'catEars_v2');
  assert.equal(info.trainingComment, 'trigger: cat ears');
  assert.equal(info.networkModule, 'networks.lora');
  assert.equal(info.sdModelName, 'anything-v4.5.safetensors');
  assert.equal(info.declaredHash, 'abc123');
  assert.deepEqual(info.tagFrequency, [
    ['1girl', 43],
    ['cat ears', 40],
    ['solo', 33],
    ['brown hair', 2],
  ]);
  assert.deepEqual(info.triggerWords, ['1girl', 'cat ears', 'solo', 'brown hair']);
  assert.deepEqual(info.modules, { unet: 2, te: 1, te2: 0, unknown: 0 });
  assert.equal(info.tensors, 9);
  assert.deepEqual(info.dtypes, ['F32']);
});

// Golden table: what A1111 (network.py detect_version) and the modelspec / ss_* fields say.
test('base model from modelspec.architecture, ss_base_model_version, ss_v2, te2 keys', () => {
  const table: Array<[Record<string, string>, boolean, string]> = [
    [{ 'modelspec.architecture': 'stable-diffusion-v1/lora' }, false, 'sd1'],
    [{ 'modelspec.architecture': 'stable-diffusion-v2-768-v/lora' }, false, 'sd2'],
    [{ 'modelspec.architecture': 'stable-diffusion-xl-v1-base/lora' }, false, 'sdxl'],
    [{ 'modelspec.architecture': 'flux-1-dev/lora' }, false, 'other'],
    [{ ss_base_model_version: 'sdxl_base_v1-0' }, false, 'sdxl'],
    [{ ss_base_model_version: 'sd_v2_768_v' }, false, 'sd2'],
    [{ ss_base_model_version: 'sd_v1' }, false, 'sd1'],
    [{ ss_v2: 'True' }, false, 'sd2'],
    [{ ss_v2: 'False' }, false, 'sd1'],
    [{}, true, 'sdxl'],
    [{}, false, 'unknown'],
  ];
  for (const [md, te2, want] of table) assert.equal(baseModelOf(md, te2).baseModel, want, JSON.stringify(md));
});

// A1111 ui_edit_user_metadata.py build_tags: captions (average tag length ≥ 16) are split into words of ≥ 3 chars.
test('tag frequency: summed over datasets, most frequent first, captions split into words', () => {
  assert.deepEqual(tagFrequency(JSON.stringify({ a: { x: 1, y: 3 }, b: { x: 5, ' y ': 1 } })), [
    ['x', 6],
    ['y', 4],
  ]);
  const captions = tagFrequency(JSON.stringify({ d: { 'a photo of a cat with ears': 2, 'a cat on a stage, bright lights': 1 } }));
  assert.deepEqual(captions, [
    ['cat', 3],
    ['photo', 2],
    ['with', 2],
    ['ears', 2],
    ['stage', 1],
    ['bright', 1],
    ['lights', 1],
  ]);
  assert.deepEqual(tagFrequency('not json'), []);
  assert.deepEqual(tagFrequency(undefined), []);
});

test('PEFT alphas from metadata; unsupported networks flagged from the header', () => {
  const t = target(T, 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q');
  const peft = loraInfoFromHeader(
    headerOnly(
      file(
        [
          { name: `unet.${t.module}.lora_A.weight`, dtype: 'F32', shape: [4, t.inFeatures], data: new Uint8Array(16 * t.inFeatures) },
          { name: `unet.${t.module}.lora_B.weight`, dtype: 'F32', shape: [t.outFeatures, 4], data: new Uint8Array(16 * t.outFeatures) },
        ],
        { lora_adapter_metadata: JSON.stringify({ 'unet.lora_alpha': 8, 'unet.r': 4 }) },
      ),
    ),
  );
  assert.equal(peft.format, 'peft');
  assert.deepEqual(peft.alphas, [8]);
  assert.deepEqual(peft.ranks, [4]);
  const loha = loraInfoFromHeader(headerOnly(file([{ name: 'lora_unet_x.hada_w1_a', dtype: 'F32', shape: [1], data: new Uint8Array(4) }])));
  assert.equal(loha.unsupported, 'LoHa');
  assert.equal(loha.format, null);
});
