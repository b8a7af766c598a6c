/**
 * The text-encoder rewrite (src/onnx/text-encoder-rewrite.ts) on the real diffusers/torch export
 * ../shared/fixtures/tiny-sd15/text_encoder/model.onnx, run with onnxruntime-node at the optimization level
 * sessions use ('all'):
 *  - with no extra rows ([0, 32] feed) and clip skip 1, last_hidden_state and pooler_output equal the original
 *    model's bit for bit, on the reference prompts' ids (refs input_ids) and on long multi-row batches;
 *  - an id ≥ 49408 reads the extra row: rows copied from the token table give the original outputs exactly;
 *  - hidden_state_skip_k = final_layer_norm(hidden_states[-k]), checked against a float64 layer norm of the
 *    original graph's layer outputs (located by the torch exporter's node names, independently of the rewrite's
 *    structural search), and hidden_state_skip_k matches the encoder's own output structure (12 layers).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { DataType, encodeModel, initializerFloat32, readModel, type onnx } from '../../../src/onnx/proto.js';
import { rewriteTextEncoder, skipOutputName, textEncoderFeeds } from '../../../src/onnx/text-encoder-rewrite.js';
import { requireFixtures, tinySd15Refs } from '../../helpers/fixtures.js';

ort.env.logLevel = 'error';

const D = 32;
const load = async (): Promise<onnx.IModelProto> => (await readModel(join(requireFixtures('tiny-sd15'), 'text_encoder', 'model.onnx'))).model;
const session = (m: onnx.IModelProto) => ort.InferenceSession.create(encodeModel(m), { graphOptimizationLevel: 'all' });
const f32 = (t: ort.Tensor): Float32Array => t.data as Float32Array;
const toOrt = (feeds: ReturnType<typeof textEncoderFeeds>['feeds']) => Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)]));

test('tiny-sd15 text encoder rewrite: unchanged outputs, textual-inversion rows, clip-skip outputs', async () => {
  const original = await load();
  const rewritten = await load();
  const info = rewriteTextEncoder(rewritten);
  assert.equal(info.tableRows, 49408);
  assert.equal(info.hiddenSize, D);
  assert.equal(info.layers, 12);
  assert.equal(info.idsType, 'int32');
  assert.deepEqual(Object.keys(info.skipOutputs).map(Number), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

  // reference layer outputs: the exporter names the output of encoder layer l `/text_model/encoder/layers.l/Add_1_output_0`
  const reference = await load();
  const layerOut = (l: number) => `/text_model/encoder/layers.${l}/Add_1_output_0`;
  for (let l = 0; l < 12; l++) reference.graph!.output!.push({ name: layerOut(l), type: { tensorType: { elemType: DataType.FLOAT } } });

  const [a, b, r] = await Promise.all([session(original), session(rewritten), session(reference)]);
  const refIds = tinySd15Refs().i32('pipe/euler_64x64/input_ids').data;
  // plus a batch of 3 rows with many different ids, and a BOS/EOS-only row
  const extraRows = new Int32Array(3 * 77).fill(49407);
  for (let i = 0; i < 77; i++) extraRows[i] = i === 0 ? 49406 : (i * 613) % 49406;
  extraRows[77] = 49406;
  extraRows[154] = 49406;
  for (let i = 1; i < 60; i++) extraRows[154 + i] = 267 + i;
  for (const ids of [refIds, extraRows]) {
    const n = ids.length / 77;
    const outA = await a.run({ input_ids: new ort.Tensor('int32', ids, [n, 77]) });
    const outB = await b.run(toOrt(textEncoderFeeds(info, ids, new Float32Array(0), 1).feeds));
    assert.deepEqual(f32(outB.last_hidden_state), f32(outA.last_hidden_state), 'last_hidden_state bit for bit');
    assert.deepEqual(f32(outB.pooler_output), f32(outA.pooler_output), 'pooler_output bit for bit');

    const outR = await r.run({ input_ids: new ort.Tensor('int32', ids, [n, 77]) });
    const w = initializerOf(reference, 'text_model.final_layer_norm.weight');
    const bias = initializerOf(reference, 'text_model.final_layer_norm.bias');
    let worst = 0;
    for (let k = 2; k <= 12; k++) {
      const expected = layerNorm(f32(outR[layerOut(12 - k)]), w, bias);
      const got = f32(outB[skipOutputName(k)]);
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - expected[i]));
    }
    assert.ok(worst < 2e-5, `clip-skip outputs vs float64 layer norm: max abs diff ${worst}`);
  }

  // textual-inversion rows: copies of table rows 2368 ("cat</w>") and 1611 ("girl</w>") behind ids 49408, 49409
  const table = initializerOf(original, 'text_model.embeddings.token_embedding.weight');
  const extra = new Float32Array(2 * D);
  extra.set(table.subarray(2368 * D, 2369 * D), 0);
  extra.set(table.subarray(1611 * D, 1612 * D), D);
  const plain = new Int32Array(77).fill(49407);
  plain.set([49406, 320, 2368, 1611, 2368]);
  const slots = new Int32Array(77).fill(49407);
  slots.set([49406, 320, 49408, 49409, 49408]);
  const outPlain = await a.run({ input_ids: new ort.Tensor('int32', plain, [1, 77]) });
  const outSlots = await b.run(toOrt(textEncoderFeeds(info, slots, extra, 1).feeds));
  assert.deepEqual(f32(outSlots.last_hidden_state), f32(outPlain.last_hidden_state), 'extra rows read like the ids they copy');
  // and a different row changes the output at and after the slot (causal attention), not before it
  extra[0] += 0.5;
  const outMoved = await b.run(toOrt(textEncoderFeeds(info, slots, extra, 1).feeds));
  const moved = f32(outMoved.last_hidden_state);
  const base = f32(outSlots.last_hidden_state);
  assert.deepEqual(moved.subarray(0, 2 * D), base.subarray(0, 2 * D));
  assert.notDeepEqual(moved.subarray(2 * D, 3 * D), base.subarray(2 * D, 3 * D));
});

/** An initializer by name, following the exporter's Identity nodes (the fixture shares equal weights that way). */
function initializerOf(model: onnx.IModelProto, name: string): Float32Array {
  let n = name;
  const identity = new Map((model.graph!.node ?? []).filter((x) => x.opType === 'Identity').map((x) => [x.output![0], x.input![0]]));
  while (!model.graph!.initializer!.some((t) => t.name === n) && identity.has(n)) n = identity.get(n)!;
  const t = model.graph!.initializer!.find((x) => x.name === n);
  assert.ok(t, name);
  return initializerFloat32(t, '.');
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
