/**
 * The load-time branch rewrite against merged weights on a generated model, for every kind of layer a LoRA
 * targets (MatMul projections, 1×1 and 3×3 Conv incl. LoCon's ResNet convs, the Gemm time_emb_proj) and every
 * file format the generator writes (kohya, LoCon, PEFT): branch output = output of W + Σ s·up@down.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, type LoadedModel } from '../../../src/engine/model.js';
import { LoraResolver } from '../../../src/engine/lora-resolver.js';
import { MergedUnets } from '../../../src/engine/merged-unets.js';
import type { LoraSpec } from '../../../src/engine/request.js';
import { factorToFloat32, LoraLibrary, planLoraScales, unetLayoutFromModules } from '../../../src/lora/index.js';
import { discoverTargetLayers } from '../../../src/onnx/graph-modules.js';
import { encodeModel, initializerFloat32, readModel } from '../../../src/onnx/proto.js';
import { OnnxSession } from '../../../src/onnx/runtime.js';
import { textEncoderFeeds } from '../../../src/onnx/text-encoder-rewrite.js';
import type { HostTensor } from '../../../src/tensor/host-tensor.js';
import { makeTinyModel, type TinyModel } from '../../helpers/tiny-model.js';

let tiny: TinyModel;
let model: LoadedModel;
let library: LoraLibrary;
let resolver: LoraResolver;
before(async () => {
  tiny = await makeTinyModel({ loras: 5 });
  model = await loadModel(tiny.modelDir, { device: { kind: 'cpu' } });
  library = await LoraLibrary.open(join(tiny.modelDir, 'loras'));
  resolver = new LoraResolver(model, library);
});
after(async () => {
  library?.close();
  await model?.release();
  tiny?.cleanup();
});

/** A session on the original graph with every targeted weight replaced by W + ΔW (all initializers inline). */
async function mergedSession(component: 'unet' | 'text_encoder', part: 'unet' | 'te', specs: LoraSpec[]): Promise<OnnxSession> {
  const { model: proto, dir } = await readModel(join(tiny.modelDir, component, 'model.onnx'));
  const layers = discoverTargetLayers(proto);
  const targets = [...model.lora.te.targets, ...model.lora.unet.targets];
  const adapters = new Map(await Promise.all(specs.map(async (s) => [s.name, await library.load(s.name, targets)] as const)));
  const plan = planLoraScales(specs, adapters, { layout: unetLayoutFromModules(model.lora.unet.targets.map((t) => t.module)) });
  const byName = new Map(proto.graph!.initializer!.map((t) => [t.name!, t]));
  for (const t of proto.graph!.initializer!) {
    const data = initializerFloat32(t, dir);
    t.rawData = new Uint8Array(data.buffer);
    t.externalData = [];
    t.dataLocation = 0;
  }
  for (const l of layers) {
    const list = (part === 'unet' ? plan.unet : plan.te).get(l.module);
    if (!list) continue;
    const init = byName.get(l.weightName)!;
    const w = new Float32Array(init.rawData!.buffer.slice(init.rawData!.byteOffset, init.rawData!.byteOffset + init.rawData!.byteLength));
    const cols = l.inFeatures * (l.kernel ? l.kernel[0] * l.kernel[1] : 1);
    for (const { layer, scale } of list) {
      const up = factorToFloat32(layer.up), down = factorToFloat32(layer.down);
      for (let o = 0; o < l.outFeatures; o++) for (let c = 0; c < cols; c++) {
        let acc = 0;
        for (let j = 0; j < layer.rank; j++) acc += up[o * layer.rank + j] * down[j * cols + c];
        const idx = l.layout === 'in_out' ? c * l.outFeatures + o : o * cols + c;
        w[idx] += scale * acc;
      }
    }
    init.rawData = new Uint8Array(w.buffer);
  }
  return OnnxSession.create(encodeModel(proto), { device: { kind: 'cpu' }, label: `${component} (merged)` });
}

function folderBytes(dir: string): number {
  return readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

/** The same UNet inputs for every comparison: CFG batch 2 at 8×8 latents, t = 500. */
function unetInputs(): Record<string, HostTensor> {
  const sig = model.unetSig;
  return {
    [sig.sample]: { type: 'float32', data: Float32Array.from({ length: 2 * 4 * 64 }, (_, i) => Math.sin(i)), dims: [2, 4, 8, 8] },
    [sig.timestep]: { type: 'float32', data: new Float32Array([500, 500]), dims: [2] },
    [sig.context]: { type: 'float32', data: Float32Array.from({ length: 2 * 77 * sig.contextDim }, (_, i) => Math.cos(i)), dims: [2, 77, sig.contextDim] },
  };
}

function relL2(a: Float32Array, b: Float32Array): number {
  let n = 0, d = 0;
  for (let i = 0; i < a.length; i++) { n += (a[i] - b[i]) ** 2; d += b[i] ** 2; }
  return Math.sqrt(n / d);
}

const specs: LoraSpec[] = [
  { name: 'costume', weight: 0.7 },
  { name: 'catears', weight: -0.4 },
  { name: 'lights', weight: 1.3 },
];

test('UNet: branches (kohya + LoCon 3x3 + PEFT at 0.7 / -0.4 / 1.3) equal merged weights', async () => {
  const sig = model.unetSig;
  const feeds = unetInputs();
  const { feeds: lora } = await resolver.resolve(specs);
  const branched = (await model.unet.run({ ...feeds, ...lora.unet }))[sig.output].data as Float32Array;
  const merged = await mergedSession('unet', 'unet', specs);
  const reference = (await merged.run(feeds))[sig.output].data as Float32Array;
  const base = (await model.unet.run({ ...feeds, ...model.lora.unet.empty }))[sig.output].data as Float32Array;
  await merged.release();
  assert.ok(relL2(reference, base) > 1e-2, 'the LoRAs change the output');
  assert.ok(relL2(branched, reference) < 1e-5, `relL2 ${relL2(branched, reference)}`);
  const conv3 = model.lora.unet.plan.branches.filter((b) => b.kind === 'conv' && b.kernel[0] === 3).length;
  assert.ok(conv3 > 0, 'the model has 3x3 conv branches');
});

test('UNet: rank-0 feeds give the unmodified graph\'s output bit for bit', async () => {
  const sig = model.unetSig;
  const feeds = unetInputs();
  const plain = await OnnxSession.create(join(tiny.modelDir, 'unet', 'model.onnx'), { device: { kind: 'cpu' }, label: 'unet (unmodified)' });
  const reference = (await plain.run(feeds))[sig.output].data as Float32Array;
  await plain.release();
  const branched = (await model.unet.run({ ...feeds, ...model.lora.unet.empty }))[sig.output].data as Float32Array;
  assert.deepEqual(branched, reference);
});

test('text encoder: branches equal merged weights', async () => {
  const ids = new Int32Array(2 * 77).fill(model.tokenizer.eosId);
  ids.set(model.tokenizer.encodeForModel('cute 1girl, brown cat ears'));
  const feeds: Record<string, HostTensor> = { [model.textInput.name]: { type: 'int32', data: ids, dims: [2, 77] } };
  const { feeds: lora } = await resolver.resolve(specs);
  const teFeeds = textEncoderFeeds(model.te, ids, new Float32Array(0), 1).feeds;
  const branched = (await model.textEncoder.run({ ...teFeeds, ...lora.te })).last_hidden_state.data as Float32Array;
  const merged = await mergedSession('text_encoder', 'te', specs);
  const reference = (await merged.run(feeds)).last_hidden_state.data as Float32Array;
  await merged.release();
  assert.ok(relL2(branched, reference) < 1e-5, `relL2 ${relL2(branched, reference)}`);
});

test('merged UNet sessions (src/engine/merged-unets.ts) match the branches, and are built on the (after+1)-th use', async () => {
  const sig = model.unetSig;
  const feeds = unetInputs();
  const merged = new MergedUnets(model, { after: 1, maxBytes: 2 * folderBytes(join(tiny.modelDir, 'unet')) });
  const withMerge = new LoraResolver(model, library, { merged });
  try {
    assert.equal(merged.capacity, 2);
    const first = await withMerge.resolve(specs);
    assert.equal(first.unet, undefined, 'first use: branches');
    const branched = (await model.unet.run({ ...feeds, ...first.feeds.unet }))[sig.output].data as Float32Array;
    const second = await withMerge.resolve(specs);
    assert.ok(second.unet, 'second use builds the merged session');
    const fromMerged = (await second.unet.run(feeds))[sig.output].data as Float32Array;
    assert.ok(relL2(fromMerged, branched) < 1e-5, `relL2 ${relL2(fromMerged, branched)}`);
    assert.equal((await withMerge.resolve(specs)).unet, second.unet, 'third use: the same session');

    // Other weights are another set; no LoRAs at all gets the plain graph, bit for bit the unmodified model.
    await withMerge.resolve([]);
    const plain = (await withMerge.resolve([])).unet!;
    const base = (await model.unet.run({ ...feeds, ...model.lora.unet.empty }))[sig.output].data as Float32Array;
    assert.deepEqual((await plain.run(feeds))[sig.output].data, base);
    assert.deepEqual(merged.stats().sessions, 2);

    // A third hot set evicts the least recently used (the LoRA set), not the plain session just used.
    const other: LoraSpec[] = [{ name: 'costume', weight: 0.5 }];
    await withMerge.resolve(other);
    const otherMerged = (await withMerge.resolve(other)).unet!;
    assert.deepEqual(merged.keys.length, 2);
    assert.equal((await withMerge.resolve(other)).unet, otherMerged);
    assert.ok((await withMerge.resolve([])).unet, 'the plain session stayed');
    assert.notEqual((await withMerge.resolve(specs)).unet, second.unet, 'the first set was evicted and is rebuilt on its next use');
    assert.equal(merged.stats().builds, 4);
  } finally {
    await merged.release();
  }
});

test('merging is off without `after`, and with no room for one session', async () => {
  for (const merged of [new MergedUnets(model, {}), new MergedUnets(model, { after: 0, maxBytes: 1 })]) {
    const r = new LoraResolver(model, library, { merged });
    for (let i = 0; i < 3; i++) assert.equal((await r.resolve(specs)).unet, undefined);
    assert.equal(merged.capacity, 0);
  }
});

test('a merged build that fails (here: its scratch folder cannot be made) leaves the set on the branches, logged, not retried', async () => {
  const warnings: string[] = [];
  const logger = { debug() {}, info() {}, error() {}, warn: (_o: object | string, m?: string) => warnings.push(m ?? String(_o)) };
  const merged = new MergedUnets(model, { after: 0, maxBytes: Number.MAX_SAFE_INTEGER, cacheRoot: join(tiny.modelDir, 'unet', 'model.onnx', 'x'), logger });
  const r = new LoraResolver(model, library, { merged });
  try {
    for (let i = 0; i < 2; i++) {
      const got = await r.resolve(specs);
      assert.equal(got.unet, undefined);
      got.release?.();
    }
    assert.equal(warnings.length, 1, warnings.join('; '));
    assert.match(warnings[0], /stays on the branched graph/);
    assert.equal(merged.stats().builds, 0);
  } finally {
    await merged.release();
  }
});
