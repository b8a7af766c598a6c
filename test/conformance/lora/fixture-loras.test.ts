/**
 * The fixture's three kohya LoRAs (../shared/fixtures/tiny-sd15/loras, written for diffusers 0.21.4) parsed
 * against the targets that onnx_lora_map.json lists for its real torch/ONNX export: every module the map says a
 * file touches is matched with the right rank/alpha/scale; a merged delta equals the README's merge rule
 * computed here from the raw file bytes; and the hashes equal sha256 computed independently.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseLora } from '../../../src/lora/adapter.js';
import { computeLoraHashes } from '../../../src/lora/hashes.js';
import { factorToFloat32 } from '../../../src/lora/safetensors.js';
import { LoraLibrary } from '../../../src/lora/library.js';
import { planLoraScales } from '../../../src/lora/scale-plan.js';
import type { LoraAdapter, LoraLayer, LoraTarget } from '../../../src/lora/types.js';
import { requireFixtures } from '../../helpers/fixtures.js';

const FIX = requireFixtures('tiny-sd15');

interface MapEntry {
  module: string;
  kind: 'linear' | 'conv2d';
  torch_weight_shape: number[];
  touched_by: string[];
  initializer_shape: number[];
  nodes: Array<{ op_type: string }>;
}
const map = JSON.parse(readFileSync(join(FIX, 'onnx_lora_map.json'), 'utf8')) as { unet: MapEntry[]; text_encoder: MapEntry[] };
const summary = JSON.parse(readFileSync(join(FIX, 'loras', 'loras.json'), 'utf8')) as Record<string, { rank: number; alpha: number | null; dtype: string; n_unet_modules: number; n_text_encoder_modules: number }>;

const parts = [
  ['unet', map.unet],
  ['te', map.text_encoder],
] as const;
const targets: LoraTarget[] = parts.flatMap(([part, entries]) =>
  entries.map((e) => {
    const s = e.torch_weight_shape;
    return e.kind === 'conv2d'
      ? { part, module: e.module, kind: 'conv' as const, inFeatures: s[1], outFeatures: s[0], kernel: [s[2], s[3]] as [number, number] }
      : { part, module: e.module, kind: 'linear' as const, inFeatures: s[1], outFeatures: s[0] };
  }),
);
const entryOf = (part: 'unet' | 'te', module: string): MapEntry => {
  const e = (part === 'unet' ? map.unet : map.text_encoder).find((x) => x.module === module);
  assert.ok(e, module);
  return e;
};

const NAMES = ['catears', 'idol', 'stage'] as const;
const bytesOf = (name: string) => new Uint8Array(readFileSync(join(FIX, 'loras', `${name}.safetensors`)));
const adapters = new Map<string, LoraAdapter>(NAMES.map((n) => [n, parseLora(n, bytesOf(n), targets)]));

test('every module the map lists as touched is matched, nothing else, nothing unmatched', () => {
  for (const name of NAMES) {
    const a = adapters.get(name)!;
    const want = parts.flatMap(([part, entries]) => entries.filter((e) => e.touched_by.includes(name)).map((e) => `${part}:${e.module}`)).sort();
    assert.deepEqual(a.layers.map((l) => `${l.part}:${l.module}`).sort(), want, name);
    assert.equal(a.layers.filter((l) => l.part === 'unet').length, summary[name].n_unet_modules);
    assert.equal(a.layers.filter((l) => l.part === 'te').length, summary[name].n_text_encoder_modules);
    assert.deepEqual(a.unmatchedKeys, [], name);
    assert.equal(a.format, 'kohya');
    assert.equal(a.unetNaming, 'diffusers');
    assert.equal(a.info.baseModel, 'sd1');
    assert.equal(a.info.outputName, name);
  }
});

test('rank / alpha / scale: catears 4/2.0, idol fp16 8/8.0, stage 2/no alpha (scale 1)', () => {
  const expect: Record<string, [number, number, number]> = { catears: [4, 2, 0.5], idol: [8, 8, 1], stage: [2, 2, 1] };
  for (const name of NAMES) {
    const s = summary[name];
    assert.equal(s.rank, expect[name][0]);
    assert.equal(s.alpha ?? s.rank, expect[name][1]);
    for (const l of adapters.get(name)!.layers) assert.deepEqual([l.rank, l.alpha, l.scale], expect[name], `${name} ${l.module}`);
  }
  assert.equal(adapters.get('stage')!.info.alphaSource, 'none');
  assert.equal(adapters.get('idol')!.info.dtypes.join(), 'F16');
});

// ---- an independent reading of the raw file: header JSON + little-endian F32/F16 ----
function rawTensor(bytes: Uint8Array, key: string): { shape: number[]; data: Float64Array } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8'));
  const e = header[key] as { dtype: string; shape: number[]; data_offsets: [number, number] };
  assert.ok(e, key);
  const base = 8 + n + e.data_offsets[0];
  const count = e.shape.reduce((a, b) => a * b, 1);
  const data = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    if (e.dtype === 'F32') data[i] = view.getFloat32(base + 4 * i, true);
    else if (e.dtype === 'F16') {
      const h = view.getUint16(base + 2 * i, true);
      const exp = (h >> 10) & 31;
      const mant = h & 1023;
      const mag = exp === 0 ? mant * 2 ** -24 : (1024 + mant) * 2 ** (exp - 25);
      data[i] = h & 0x8000 ? -mag : mag;
    } else throw new Error(e.dtype);
  }
  return { shape: e.shape, data };
}

/** README merge rule: scale·(alpha/rank)·up.reshape(out, rank) @ down.reshape(rank, -1), transposed for MatMul. */
function readmeDelta(name: string, part: 'unet' | 'te', module: string, userScale: number): { data: Float64Array; shape: number[] } {
  const bytes = bytesOf(name);
  const base = `lora_${part}_${module.replace(/\./g, '_')}`;
  const down = rawTensor(bytes, `${base}.lora_down.weight`);
  const up = rawTensor(bytes, `${base}.lora_up.weight`);
  const rank = down.shape[0];
  let alpha = rank;
  try {
    alpha = rawTensor(bytes, `${base}.alpha`).data[0];
  } catch {
    // no .alpha: alpha = rank
  }
  const out = up.shape[0];
  const cols = down.data.length / rank;
  const w = new Float64Array(out * cols);
  for (let o = 0; o < out; o++) for (let r = 0; r < rank; r++) for (let c = 0; c < cols; c++) w[o * cols + c] += userScale * (alpha / rank) * up.data[o * rank + r] * down.data[r * cols + c];
  const e = entryOf(part, module);
  if (e.nodes[0].op_type === 'MatMul') {
    // The ONNX initializer is Wᵀ [in, out].
    const t = new Float64Array(w.length);
    for (let o = 0; o < out; o++) for (let c = 0; c < cols; c++) t[c * out + o] = w[o * cols + c];
    return { data: t, shape: [cols, out] };
  }
  return { data: w, shape: e.torch_weight_shape };
}

/** Our delta from the parsed layer and the scale plan's effective scale. */
function ourDelta(layer: LoraLayer, scale: number, matmul: boolean): Float64Array {
  const cols = layer.down.length / layer.rank;
  const out = new Float64Array(layer.outFeatures * cols);
  const up = factorToFloat32(layer.up), down = factorToFloat32(layer.down); // fp16 files stay fp16 when parsed
  for (let o = 0; o < layer.outFeatures; o++)
    for (let r = 0; r < layer.rank; r++)
      for (let c = 0; c < cols; c++) {
        const v = scale * up[o * layer.rank + r] * down[r * cols + c];
        out[matmul ? c * layer.outFeatures + o : o * cols + c] += v;
      }
  return out;
}

test('merged delta of one module per LoRA (MatMul transposed, Conv in torch layout) equals the README rule', () => {
  const cases: Array<[string, 'unet' | 'te', string, number]> = [
    ['catears', 'unet', 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k', 0.8],
    ['catears', 'unet', 'up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj', -0.4],
    ['catears', 'unet', 'mid_block.attentions.0.proj_in', 1.3],
    ['catears', 'te', 'text_model.encoder.layers.11.mlp.fc1', 0.8],
    ['idol', 'unet', 'up_blocks.1.attentions.1.transformer_blocks.0.attn1.to_out.0', 0.7],
    ['stage', 'unet', 'down_blocks.2.attentions.1.proj_out', 1.0],
  ];
  for (const [name, part, module, weight] of cases) {
    const plan = planLoraScales([{ name, weight }], adapters);
    const scaled = plan[part].get(module)?.[0];
    assert.ok(scaled, `${name} ${module}`);
    const e = entryOf(part, module);
    const want = readmeDelta(name, part, module, weight);
    assert.deepEqual(want.shape, e.initializer_shape, 'delta has the initializer’s layout');
    const got = ourDelta(scaled.layer, scaled.scale, e.nodes[0].op_type === 'MatMul');
    let maxAbs = 0;
    let maxRef = 0;
    for (let i = 0; i < got.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(got[i] - want.data[i]));
      maxRef = Math.max(maxRef, Math.abs(want.data[i]));
    }
    assert.ok(maxRef > 0, 'non-trivial delta');
    assert.ok(maxAbs <= 1e-6 * maxRef, `${name} ${module}: max |Δ| ${maxAbs} vs ${maxRef}`);
  }
});

test('short hashes = sha256 of the bytes after the header (first 12 hex), full hash = sha256 of the file', async () => {
  for (const name of NAMES) {
    const bytes = bytesOf(name);
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const addnet = createHash('sha256').update(bytes.subarray(8 + n)).digest('hex');
    const h = await computeLoraHashes(join(FIX, 'loras', `${name}.safetensors`));
    assert.equal(h.addnet, addnet);
    assert.equal(h.short, addnet.slice(0, 12));
    assert.equal(h.sha256, createHash('sha256').update(bytes).digest('hex'));
  }
});

test('the fixture folder as a library: three LoRAs by stem and alias, loaded as parsed above', async () => {
  const lib = await LoraLibrary.open(join(FIX, 'loras'));
  assert.deepEqual(
    lib.list().map((e) => e.name),
    [...NAMES],
  );
  assert.deepEqual(lib.failures(), []);
  for (const name of NAMES) {
    const a = await lib.load(name, targets);
    assert.equal(a.layers.length, adapters.get(name)!.layers.length);
    assert.equal(lib.get(name)?.info.ranks[0], summary[name].rank);
  }
  lib.close();
});
