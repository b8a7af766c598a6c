import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { discoverTargetLayers, modulePathFromNodeName, type TargetLayer } from '../../../src/onnx/graph-modules.js';
import { DataType, onnx, readModel } from '../../../src/onnx/proto.js';
import { makeTiny } from './support.js';

type Tiny = Awaited<ReturnType<typeof makeTiny>>;
let tiny: Tiny;
const layers: Record<string, TargetLayer[]> = {};
before(async () => {
  tiny = await makeTiny({ loras: 0 });
  for (const part of ['unet', 'text_encoder', 'vae_decoder', 'vae_encoder']) {
    layers[part] = discoverTargetLayers((await readModel(join(tiny.outDir, part, 'model.onnx'))).model);
  }
});
after(() => tiny?.cleanup());

const byModule = (part: string) => new Map(layers[part].map((l) => [l.module, l]));

test('module paths come from torch-style node names', () => {
  const cases: Array<[string, string | undefined]> = [
    ['/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul', 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q'],
    ['/text_model/encoder/layers.11/mlp/fc2/MatMul', 'text_model.encoder.layers.11.mlp.fc2'],
    ['/up_blocks.1/attentions.2/transformer_blocks.0/ff/net.0/proj/MatMul', 'up_blocks.1.attentions.2.transformer_blocks.0.ff.net.0.proj'],
    ['/conv_in/Conv', 'conv_in'],
    ['/mid_block/attentions.0/proj_out/Conv_1', 'mid_block.attentions.0.proj_out'],
    ['/MatMul', undefined],
    ['MatMul_12', undefined],
  ];
  for (const [name, want] of cases) assert.equal(modulePathFromNodeName(name), want, name);
});

test('UNet: attention, feed-forward, proj and ResNet layers with the right layouts', () => {
  const m = byModule('unet');
  const q = m.get('down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q')!;
  assert.equal(q.op, 'MatMul');
  assert.equal(q.layout, 'in_out');
  assert.match(q.weightName, /^onnx::MatMul_\d+$/);
  assert.deepEqual([q.inFeatures, q.outFeatures], [32, 32]);
  const k2 = m.get('down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k')!;
  assert.deepEqual(k2.weightShape, [32, 32]); // cross_attention_dim 32 → 32
  const ff = m.get('up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj')!;
  assert.deepEqual([ff.inFeatures, ff.outFeatures], [32, 256]); // GEGLU: dim → 2·4·dim
  const proj = m.get('mid_block.attentions.0.proj_in')!;
  assert.equal(proj.op, 'Conv');
  assert.deepEqual(proj.kernel, [1, 1]);
  assert.equal(proj.weightName, 'mid_block.attentions.0.proj_in.weight');
  const conv = m.get('up_blocks.0.resnets.0.conv1')!;
  assert.deepEqual(conv.weightShape, [64, 128, 3, 3]);
  assert.deepEqual([conv.inFeatures, conv.outFeatures, conv.layout], [128, 64, 'conv']);
  const temb = m.get('down_blocks.1.resnets.1.time_emb_proj')!;
  assert.deepEqual([temb.op, temb.layout, temb.inFeatures, temb.outFeatures], ['Gemm', 'out_in', 128, 32]);
  assert.equal(layers.unet.length, 281);
  assert.ok(layers.unet.every((l) => l.dtype === 'float32'));
});

test('text encoder: q/k/v/out projections and MLP of every layer, nothing else', () => {
  assert.equal(layers.text_encoder.length, 12 * 6);
  assert.ok(layers.text_encoder.every((l) => /^text_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])$/.test(l.module)));
  const fc1 = byModule('text_encoder').get('text_model.encoder.layers.0.mlp.fc1')!;
  assert.deepEqual(fc1.weightShape, [32, 37]);
});

test('SD2 variant: proj_in/proj_out are MatMul (linear projection)', async () => {
  const sd2 = await makeTiny({ preset: 'tiny-sd2', loras: 0 });
  try {
    const m = new Map(discoverTargetLayers((await readModel(join(sd2.outDir, 'unet', 'model.onnx'))).model).map((l) => [l.module, l]));
    const p = m.get('down_blocks.0.attentions.0.proj_in')!;
    assert.deepEqual([p.op, p.layout], ['MatMul', 'in_out']);
  } finally {
    sd2.cleanup();
  }
});

test('edge cases: float16 weights, Gemm transB=0, Identity-shared weights, grouped convs and activation MatMuls', () => {
  const init = (name: string, dims: number[], dataType: number = DataType.FLOAT): onnx.ITensorProto => ({ name, dims, dataType });
  const model: onnx.IModelProto = {
    graph: {
      initializer: [init('onnx::MatMul_1', [8, 16], DataType.FLOAT16), init('g.weight', [8, 4]), init('c.weight', [4, 2, 3, 3]), init('d.weight', [4, 4, 1, 1]), init('onnx::MatMul_2', [4, 4], DataType.INT64)],
      node: [
        { name: '/a/to_q/MatMul', opType: 'MatMul', input: ['x', 'onnx::MatMul_1'], output: ['y'] },
        { name: '/b/MatMul', opType: 'MatMul', input: ['y', 'y2'], output: ['z'] }, // activations only
        { name: 'Identity_0', opType: 'Identity', input: ['g.weight'], output: ['shared'] },
        { name: '/e/lin/Gemm', opType: 'Gemm', input: ['x', 'shared'], output: ['w'] }, // transB defaults to 0
        { name: '/grouped/Conv', opType: 'Conv', input: ['x', 'c.weight'], output: ['v'], attribute: [{ name: 'group', type: 2, i: 2 }] },
        { name: 'Conv_7', opType: 'Conv', input: ['x', 'd.weight'], output: ['u'] }, // no module path: falls back to the weight name
        { name: '/ints/MatMul', opType: 'MatMul', input: ['x', 'onnx::MatMul_2'], output: ['t'] },
      ],
    },
  };
  const found = discoverTargetLayers(model);
  assert.deepEqual(
    found.map((l) => [l.module, l.op, l.weightName, l.layout, l.inFeatures, l.outFeatures, l.dtype]),
    [
      ['a.to_q', 'MatMul', 'onnx::MatMul_1', 'in_out', 8, 16, 'float16'],
      ['e.lin', 'Gemm', 'g.weight', 'in_out', 8, 4, 'float32'],
      ['d', 'Conv', 'd.weight', 'conv', 4, 4, 'float32'],
    ],
  );
  assert.deepEqual(discoverTargetLayers({}), []);
});
