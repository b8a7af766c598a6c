/**
 * The text-encoder rewrite on a small CLIP text encoder built by src/synth (diffusers-export-shaped, random
 * weights, 3 layers, 600 tokens): outputs unchanged bit for bit, placeholder ids read the extra rows, clip-skip
 * outputs equal final_layer_norm(hidden_states[-k]) computed here in float64 from the layer outputs.
 * The same checks on the real export (../shared/fixtures/tiny-sd15) are in test/conformance/onnx/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { DataType, encodeModel, onnx } from '../../../src/onnx/proto.js';
import { rewriteTextEncoder, skipOutputName, textEncoderFeeds } from '../../../src/onnx/text-encoder-rewrite.js';
import { GraphBuilder } from '../../../src/synth/graph-builder.js';
import { buildTextEncoder } from '../../../src/synth/text-encoder.js';

ort.env.logLevel = 'error';

const D = 16;
const LAYERS = 3;
const VOCAB = 600;

function buildModel(): onnx.IModelProto {
  const b = new GraphBuilder({ seed: 7, component: 'text_encoder' });
  buildTextEncoder(b, { hidden: D, intermediate: 20, layers: LAYERS, heads: 2, vocabSize: VOCAB, maxPositions: 77, act: 'quick_gelu' });
  const { model, initializers } = b.build();
  model.graph!.initializer = initializers.map((p) => ({ name: p.name, dims: p.dims, dataType: p.dataType, rawData: p.produce() }));
  return model;
}

function ids(rows: number[][]): Int32Array {
  const out = new Int32Array(rows.length * 77).fill(VOCAB - 1); // the synth's end token is the last id
  rows.forEach((r, i) => out.set(r, i * 77));
  return out;
}

const session = (m: onnx.IModelProto) => ort.InferenceSession.create(encodeModel(m), { graphOptimizationLevel: 'all' });
const f32 = (t: ort.Tensor): Float32Array => t.data as Float32Array;

test('rewritten encoder: same outputs bit for bit, placeholder ids read the extra rows, skip outputs', async () => {
  const original = buildModel();
  const rewritten = buildModel();
  const info = rewriteTextEncoder(rewritten);
  assert.deepEqual(
    { ...info, skipOutputs: undefined },
    { idsInput: 'input_ids', idsType: 'int32', tableRows: VOCAB, hiddenSize: D, extraInput: 'extra_token_embeddings', extraType: 'float32', lastHiddenState: 'last_hidden_state', layers: LAYERS, skipOutputs: undefined },
  );
  assert.deepEqual(info.skipOutputs, { 2: skipOutputName(2), 3: skipOutputName(3) });
  assert.throws(() => rewriteTextEncoder(rewritten), /rewritten twice/);

  // reference: the layer outputs of the original graph (torch-exporter names the synth reproduces) as outputs
  const reference = buildModel();
  const layerOut = (l: number) => `/text_model/encoder/layers.${l}/Add_1_output_0`;
  const known = new Set(reference.graph!.node!.flatMap((n) => n.output ?? []));
  for (let l = 0; l < LAYERS; l++) {
    assert.ok(known.has(layerOut(l)), layerOut(l));
    reference.graph!.output!.push({ name: layerOut(l), type: { tensorType: { elemType: DataType.FLOAT } } });
  }

  const [a, b, r] = await Promise.all([session(original), session(rewritten), session(reference)]);
  const input = ids([
    [VOCAB - 2, 40, 41, 42, VOCAB - 1],
    [VOCAB - 2, 7, VOCAB - 1],
  ]);
  const outA = await a.run({ input_ids: new ort.Tensor('int32', input, [2, 77]) });
  const { feeds } = textEncoderFeeds(info, input, new Float32Array(0), 1);
  const outB = await b.run(Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)])));
  assert.deepEqual(f32(outB.last_hidden_state), f32(outA.last_hidden_state), 'last_hidden_state, no extra rows');
  assert.deepEqual(f32(outB.pooler_output), f32(outA.pooler_output), 'pooler_output');

  // clip skip k = final LN of the output of layer L-k (transformers' hidden_states[-k])
  const outR = await r.run({ input_ids: new ort.Tensor('int32', input, [2, 77]) });
  const lnW = floatInit(reference, 'text_model.final_layer_norm.weight');
  const lnB = floatInit(reference, 'text_model.final_layer_norm.bias');
  for (let k = 2; k <= LAYERS; k++) {
    const expected = layerNorm(f32(outR[layerOut(LAYERS - k)]), lnW, lnB);
    const got = f32(outB[skipOutputName(k)]);
    let max = 0;
    for (let i = 0; i < got.length; i++) max = Math.max(max, Math.abs(got[i] - expected[i]));
    assert.ok(max < 1e-5, `skip ${k}: max abs diff ${max}`);
  }
  assert.notDeepEqual(f32(outB[skipOutputName(2)]), f32(outB.last_hidden_state));
  assert.equal(textEncoderFeeds(info, input, new Float32Array(0), 3).output, skipOutputName(3));
  assert.throws(() => textEncoderFeeds(info, input, new Float32Array(0), 4), /beyond this text encoder's 3 layers/);

  // placeholder ids: rows equal to table rows 40 and 41 give the outputs of ids 40 and 41 exactly
  const table = floatInit(reference, 'text_model.embeddings.token_embedding.weight');
  const extra = new Float32Array(2 * D);
  extra.set(table.subarray(41 * D, 42 * D), 0);
  extra.set(table.subarray(40 * D, 41 * D), D);
  const withSlots = ids([
    [VOCAB - 2, VOCAB + 1, VOCAB + 0, 42, VOCAB - 1],
    [VOCAB - 2, 7, VOCAB - 1],
  ]);
  const slotFeeds = textEncoderFeeds(info, withSlots, extra, 1).feeds;
  const outS = await b.run(Object.fromEntries(Object.entries(slotFeeds).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)])));
  assert.deepEqual(f32(outS.last_hidden_state), f32(outA.last_hidden_state), 'extra rows read like the ids they copy');
});

function floatInit(model: onnx.IModelProto, name: string): Float32Array {
  const t = model.graph!.initializer!.find((x) => x.name === name);
  assert.ok(t?.rawData, name);
  const copy = new Uint8Array(t.rawData);
  return new Float32Array(copy.buffer);
}

/** nn.LayerNorm (eps 1e-5) over the last axis, float64. */
function layerNorm(x: Float32Array, w: Float32Array, b: Float32Array): Float64Array {
  const d = w.length;
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[r * d + i];
    mean /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[r * d + i] - mean) ** 2;
    v /= d;
    const s = Math.sqrt(v + 1e-5);
    for (let i = 0; i < d; i++) out[r * d + i] = ((x[r * d + i] - mean) / s) * w[i] + b[i];
  }
  return out;
}
