import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { discoverTargetLayers, type TargetLayer } from '../../../src/onnx/graph-modules.js';
import { readModel } from '../../../src/onnx/proto.js';
import { encodeSafetensors } from '../../../src/synth/safetensors-writer.js';
import { float32, makeTiny, readSafetensors } from './support.js';

type Tiny = Awaited<ReturnType<typeof makeTiny>>;
let tiny: Tiny;
let unet: Map<string, TargetLayer>;
let te: Map<string, TargetLayer>;
before(async () => {
  tiny = await makeTiny({ loras: 8 });
  const layers = async (part: string) =>
    new Map(discoverTargetLayers((await readModel(join(tiny.outDir, part, 'model.onnx'))).model).map((l) => [l.module, l]));
  unet = await layers('unet');
  te = await layers('text_encoder');
});
after(() => tiny?.cleanup());

const file = (name: string) => readSafetensors(join(tiny.outDir, 'loras', `${name}.safetensors`));

/** kohya key → module, via the discovered module set (`_` is ambiguous, so match against known modules). */
function kohyaModule(key: string): { part: 'unet' | 'te'; layer: TargetLayer } {
  const m = /^lora_(unet|te)_(.+)$/.exec(key);
  assert.ok(m, key);
  const part = m[1] as 'unet' | 'te';
  const table = part === 'unet' ? unet : te;
  const layer = [...table.values()].find((l) => l.module.replace(/\./g, '_') === m[2]);
  assert.ok(layer, `${key} names no layer of the model`);
  return { part, layer };
}

/** Checks down/up shapes against the layer: [r, in(, kh, kw)] and [out, r(, 1, 1)]. */
function checkPair(layer: TargetLayer, down: number[], up: number[]): number {
  const r = down[0];
  assert.equal(up[1], r);
  assert.equal(down[1], layer.inFeatures, layer.module);
  assert.equal(up[0], layer.outFeatures, layer.module);
  if (layer.op === 'Conv') {
    assert.equal(down.length, 4);
    assert.deepEqual(up.slice(2), [1, 1]);
  } else {
    assert.equal(down.length, 2);
  }
  return r;
}

function kohyaModules(name: string): Map<string, { part: string; layer: TargetLayer; rank: number; alpha?: number; convDown: boolean; dtype: string }> {
  const f = file(name);
  const out = new Map<string, { part: string; layer: TargetLayer; rank: number; alpha?: number; convDown: boolean; dtype: string }>();
  const bases = new Set([...f.tensors.keys()].map((k) => k.replace(/\.(lora_down\.weight|lora_up\.weight|alpha)$/, '')));
  for (const base of bases) {
    const down = f.tensors.get(`${base}.lora_down.weight`);
    const up = f.tensors.get(`${base}.lora_up.weight`);
    assert.ok(down && up, `${base}: down and up`);
    const { part, layer } = kohyaModule(base);
    const rank = checkPair(layer, down.shape, up.shape);
    const alphaT = f.tensors.get(`${base}.alpha`);
    if (alphaT) assert.deepEqual(alphaT.shape, []); // kohya saves alpha as a 0-d tensor
    out.set(base, { part, layer, rank, alpha: alphaT ? float32(alphaT)[0] : undefined, convDown: down.shape.length === 4 && down.shape[2] === 3, dtype: down.dtype });
  }
  return out;
}

test('safetensors layout: u64 header length, sorted keys, padded with spaces to 8, contiguous data', () => {
  const f = file('catears');
  assert.equal(f.headerBytes.byteLength % 8, 0);
  const keys = Object.keys(f.header);
  assert.equal(keys[0], '__metadata__');
  assert.deepEqual(keys.slice(1), [...keys.slice(1)].sort());
  assert.match(f.headerBytes.toString('utf8'), /^\{.*\} *$/s);
  const bytes = encodeSafetensors([{ name: 'b', dtype: 'F32', shape: [1], data: new Uint8Array(4) }, { name: 'a', dtype: 'F16', shape: [], data: new Uint8Array(2) }]);
  const n = Number(bytes.readBigUInt64LE(0));
  assert.equal(bytes.subarray(8, 8 + n).toString().trimEnd(), '{"a":{"dtype":"F16","shape":[],"data_offsets":[0,2]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}');
  assert.throws(() => encodeSafetensors([{ name: 'x', dtype: 'F32', shape: [2], data: new Uint8Array(4) }]), /needs 8/);
});

test('catears: kohya with alpha, UNet transformer layers + every text-encoder projection', () => {
  const mods = kohyaModules('catears');
  const unetMods = [...mods.values()].filter((m) => m.part === 'unet');
  const teMods = [...mods.values()].filter((m) => m.part === 'te');
  assert.equal(unetMods.length, 192);
  assert.equal(teMods.length, 72);
  assert.ok([...mods.values()].every((m) => m.rank === 4 && m.alpha === 2 && m.dtype === 'F32'));
  assert.ok(unetMods.some((m) => m.layer.module.endsWith('proj_in') && m.layer.op === 'Conv'));
  const meta = file('catears').metadata;
  assert.equal(meta.ss_output_name, 'catears');
  assert.equal(meta.ss_network_dim, '4');
  assert.equal(meta.ss_network_alpha, '2.0'); // str(float), as kohya writes it
  assert.equal(meta.ss_base_model_version, 'sd_v1');
  assert.ok(Object.keys(JSON.parse(meta.ss_tag_frequency)).length > 0);
});

test('idol: float16, rank 8 = alpha; stage: no alpha tensors at all', () => {
  const idol = kohyaModules('idol');
  assert.equal(idol.size, 128);
  assert.ok([...idol.values()].every((m) => m.dtype === 'F16' && m.rank === 8 && m.alpha === 8 && /\.attn[12]\.to_/.test(m.layer.module)));
  const stage = kohyaModules('stage');
  assert.equal(stage.size, 128);
  assert.ok([...stage.values()].every((m) => m.alpha === undefined && m.rank === 2 && !/\.attn1\./.test(m.layer.module)));
  assert.ok(![...file('stage').tensors.keys()].some((k) => k.endsWith('.alpha')));
});

test('costume: LoCon with 3×3 conv downs on ResNets and Gemm time_emb_proj', () => {
  const mods = kohyaModules('costume');
  const conv3 = [...mods.values()].filter((m) => m.convDown);
  assert.ok(conv3.length > 0);
  assert.ok(conv3.every((m) => /resnets\.\d+\.conv[12]$|samplers\.0\.conv$/.test(m.layer.module)));
  assert.ok([...mods.values()].some((m) => m.layer.op === 'Gemm' && m.layer.module.endsWith('time_emb_proj')));
  assert.deepEqual(JSON.parse(file('costume').metadata.ss_network_args), { conv_dim: '4', conv_alpha: '1' });
});

test('lights: PEFT keys with unet./text_encoder. prefixes and alpha in lora_adapter_metadata', () => {
  const f = file('lights');
  let n = 0;
  for (const [key, t] of f.tensors) {
    const m = /^(unet|text_encoder)\.(.+)\.lora_(A|B)\.weight$/.exec(key);
    assert.ok(m, key);
    const layer = (m[1] === 'unet' ? unet : te).get(m[2]);
    assert.ok(layer, `${key} names no layer`);
    if (m[3] === 'A') {
      checkPair(layer, t.shape, f.tensors.get(key.replace('lora_A', 'lora_B'))!.shape);
      n++;
    }
  }
  assert.equal(n, 128 + 48);
  const meta = JSON.parse(f.metadata.lora_adapter_metadata);
  assert.equal(f.metadata.format, 'pt');
  assert.equal(meta['unet.r'], 4);
  assert.equal(meta['unet.lora_alpha'], 8);
  assert.equal(meta['text_encoder.lora_alpha'], 8);
  assert.deepEqual(meta['unet.target_modules'], ['to_k', 'to_out.0', 'to_q', 'to_v']);
});

test('more LoRAs than the five named ones cycle formats; every key maps onto a discovered module', () => {
  assert.equal(tiny.loras.length, 8);
  assert.ok(kohyaModules('lora_06').size > 0); // kohya
  assert.ok([...kohyaModules('lora_07').values()].some((m) => m.convDown)); // locon
  assert.ok([...file('lora_08').tensors.keys()].every((k) => /^(unet|text_encoder)\..+\.lora_[AB]\.weight$/.test(k))); // peft
});

test('LoRA values are small and finite (weight 1 changes a layer by ~strength, not by multiples)', () => {
  for (const name of ['catears', 'idol', 'costume']) {
    for (const t of file(name).tensors.values()) assert.ok(float32(t).every((v) => Number.isFinite(v) && Math.abs(v) < 10), name);
  }
});
