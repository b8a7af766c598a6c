/**
 * The generator against a real diffusers/torch export (../shared/fixtures/tiny-sd15, same architecture):
 * LoRA-target discovery reproduces the fixture's onnx_lora_map.json, and a generated `tiny` pipeline has the
 * same module paths, weight shapes, node names, graph I/O, configs and LoRA keys as the fixture.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { discoverTargetLayers, type TargetLayer } from '../../../src/onnx/graph-modules.js';
import { externalDataOf, readModel, tensorDims, type onnx } from '../../../src/onnx/proto.js';
import { requireFixtures } from '../../helpers/fixtures.js';
import { makeTiny, readSafetensors } from '../../unit/synth/support.js';

const FIX = requireFixtures('tiny-sd15');
const PARTS = ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder'] as const;

type Tiny = Awaited<ReturnType<typeof makeTiny>>;
let tiny: Tiny;
const fixtureModels: Record<string, onnx.ModelProto> = {};
const generatedModels: Record<string, onnx.ModelProto> = {};
before(async () => {
  tiny = await makeTiny({ loras: 3 });
  for (const part of PARTS) {
    fixtureModels[part] = (await readModel(join(FIX, part, 'model.onnx'))).model;
    generatedModels[part] = (await readModel(join(tiny.outDir, part, 'model.onnx'))).model;
  }
});
after(() => tiny?.cleanup());

interface MapEntry {
  module: string;
  initializer: string;
  initializer_shape: number[];
  nodes: Array<{ name: string; op_type: string; input_index: number }>;
  external_data?: { offset: number; length: number };
}

test('discoverTargetLayers on the real export finds every layer of onnx_lora_map.json, and nothing else', () => {
  const map = JSON.parse(readFileSync(join(FIX, 'onnx_lora_map.json'), 'utf8')) as Record<string, MapEntry[]>;
  for (const part of ['text_encoder', 'unet'] as const) {
    const found = new Map(discoverTargetLayers(fixtureModels[part]).map((l) => [l.module, l]));
    assert.equal(found.size, map[part].length, part);
    for (const e of map[part]) {
      const l = found.get(e.module);
      assert.ok(l, `${part}: ${e.module} not discovered`);
      assert.equal(l.weightName, e.initializer, e.module);
      assert.deepEqual(l.weightShape, e.initializer_shape, e.module);
      assert.equal(l.nodeName, e.nodes[0].name, e.module);
      assert.equal(l.op, e.nodes[0].op_type, e.module);
      assert.equal(e.nodes[0].input_index, 1);
    }
  }
});

test('a generated tiny pipeline has the fixture’s module paths, ops, node names and weight shapes', () => {
  const summary = (layers: TargetLayer[]) => layers.map((l) => `${l.module} ${l.op} ${l.nodeName} ${l.layout} [${l.weightShape}]`).sort();
  for (const part of PARTS) {
    const want = summary(discoverTargetLayers(fixtureModels[part]));
    const got = summary(discoverTargetLayers(generatedModels[part]));
    assert.ok(want.length > 0);
    assert.deepEqual(got, want, part);
  }
});

test('graph inputs/outputs (names, element types, dims), opset and IR match the export', () => {
  const io = JSON.parse(readFileSync(join(FIX, 'onnx_io.json'), 'utf8')) as Record<string, { ir_version: number; opset: Array<{ version: number }> }>;
  for (const part of PARTS) {
    const f = fixtureModels[part].graph!;
    const g = generatedModels[part].graph!;
    const plain = (v: unknown) => JSON.parse(JSON.stringify(v)); // protobufjs messages → plain JSON (int64 as strings)
    assert.deepEqual(g.input!.map(plain), f.input!.map(plain), `${part} inputs`);
    assert.deepEqual(g.output!.map(plain), f.output!.map(plain), `${part} outputs`);
    assert.equal(Number(generatedModels[part].irVersion), io[part].ir_version);
    assert.deepEqual(generatedModels[part].opsetImport!.map((o) => Number(o.version)), io[part].opset.map((o) => o.version));
  }
});

test('torch-named parameters exist with the same shapes; the UNet keeps ≥1 KiB tensors in weights.pb', () => {
  for (const part of PARTS) {
    const gen = new Map(generatedModels[part].graph!.initializer!.map((t) => [t.name!, tensorDims(t)]));
    for (const t of fixtureModels[part].graph!.initializer!) {
      if (t.name!.startsWith('onnx::')) continue; // anonymous: numbering differs
      assert.deepEqual(gen.get(t.name!), tensorDims(t), `${part}: ${t.name}`);
    }
  }
  const ext = (m: onnx.ModelProto) => m.graph!.initializer!.filter((t) => externalDataOf(t)).reduce((a, t) => a + externalDataOf(t)!.length!, 0);
  assert.equal(ext(generatedModels.unet), ext(fixtureModels.unet)); // same parameters moved to weights.pb
});

test('model_index.json, scheduler config and tokenizer configs are the ones diffusers/transformers write', () => {
  const json = (root: string, rel: string) => JSON.parse(readFileSync(join(root, rel), 'utf8'));
  assert.deepEqual(json(tiny.outDir, 'model_index.json'), json(FIX, 'model_index.json'));
  assert.deepEqual(json(tiny.outDir, 'scheduler/scheduler_config.json'), json(FIX, 'scheduler/scheduler_config.json'));
  assert.deepEqual(json(tiny.outDir, 'tokenizer/tokenizer_config.json'), json(FIX, 'tokenizer/tokenizer_config.json'));
  assert.deepEqual(json(tiny.outDir, 'tokenizer/special_tokens_map.json'), json(FIX, 'tokenizer/special_tokens_map.json'));
  assert.equal(readFileSync(join(tiny.outDir, 'tokenizer/merges.txt'), 'utf8').split('\n')[0], readFileSync(join(FIX, 'tokenizer/merges.txt'), 'utf8').split('\n')[0]);
});

test('catears / idol / stage: the same keys, shapes and dtypes as the fixture’s LoRA files', () => {
  for (const name of ['catears', 'idol', 'stage']) {
    const f = readSafetensors(join(FIX, 'loras', `${name}.safetensors`));
    const g = readSafetensors(join(tiny.outDir, 'loras', `${name}.safetensors`));
    assert.deepEqual([...g.tensors.keys()].sort(), [...f.tensors.keys()].sort(), name);
    for (const [key, t] of f.tensors) {
      const u = g.tensors.get(key)!;
      assert.equal(u.dtype, t.dtype, key);
      // kohya writes alpha as a 0-d tensor; the fixture's writer used shape [1]. Readers must take both.
      if (key.endsWith('.alpha')) assert.equal(u.shape.reduce((a, b) => a * b, 1), 1, key);
      else assert.deepEqual(u.shape, t.shape, key);
    }
    for (const k of ['ss_network_module', 'ss_network_dim', 'ss_network_alpha', 'ss_output_name', 'ss_base_model_version', 'ss_v2']) {
      assert.equal(g.metadata[k], f.metadata[k], `${name} ${k}`);
    }
  }
});

test('same-named Conv / Gemm / GroupNorm / Resize nodes carry the same attributes (pads, strides, eps, modes)', () => {
  const attrs = (n: onnx.INodeProto) => JSON.stringify((n.attribute ?? []).map((a) => JSON.parse(JSON.stringify(a))).sort((a, b) => (a.name < b.name ? -1 : 1)));
  for (const part of PARTS) {
    const gen = new Map(generatedModels[part].graph!.node!.map((n) => [n.name!, n]));
    let compared = 0;
    for (const n of fixtureModels[part].graph!.node!) {
      if (!['Conv', 'Gemm', 'InstanceNormalization', 'Resize'].includes(n.opType!)) continue;
      const g = gen.get(n.name!);
      assert.ok(g, `${part}: no node ${n.name}`);
      assert.equal(attrs(g), attrs(n), `${part}: ${n.name}`);
      compared++;
    }
    if (part !== 'text_encoder') assert.ok(compared > 10, part); // the text encoder has none of these ops
  }
});

test('timestep embedding frequencies equal the exported constant (flip_sin_to_cos, shift 0)', () => {
  const constOf = (m: onnx.ModelProto, nodeName: string): Float32Array => {
    const g = m.graph!;
    const mul = g.node!.find((n) => n.name === nodeName)!;
    const c = g.node!.find((n) => n.opType === 'Constant' && n.output![0] === mul.input![1])!;
    const raw = c.attribute![0].t!.rawData!;
    return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  };
  const want = constOf(fixtureModels.unet, '/time_proj/Mul');
  const got = constOf(generatedModels.unet, '/time_proj/Mul');
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-7 * Math.max(1, Math.abs(want[i])), `freq ${i}: ${got[i]} vs ${want[i]}`);
});
