/**
 * bench/lora-resolve: the CPU side of request-time LoRA alone — no onnxruntime session is created, so the
 * SD1.5-shaped case runs in seconds (bench/lora.ts measures the same resolve next to real UNet steps).
 *
 *   node --expose-gc --import tsx bench/lora-resolve.ts [--preset tiny|sd15] [--repeat 5] [--fp16]
 *
 * Prints, for the preset's three demo LoRAs: first use of the files (parse), a never-seen set of 3 (median over
 * `repeat` fresh factor caches), new weights for a seen set, and heap/RSS held per LoRA against its file size.
 * `--fp16` branches the graphs as float16 (an fp16 export), to see the fp16 feed path.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { emptyFeeds } from '../src/engine/lora-feeds.js';
import { LoraResolver } from '../src/engine/lora-resolver.js';
import type { LoadedModel } from '../src/engine/model.js';
import { LoraLibrary, type LoraTarget } from '../src/lora/index.js';
import { discoverTargetLayers, type TargetLayer } from '../src/onnx/graph-modules.js';
import { addLoraBranches } from '../src/onnx/lora-branches.js';
import { GraphBuilder } from '../src/synth/graph-builder.js';
import { defaultLoraSpecs, writeLora } from '../src/synth/loras.js';
import { PRESETS, type PresetName } from '../src/synth/presets.js';
import { buildTextEncoder } from '../src/synth/text-encoder.js';
import { buildUnet } from '../src/synth/unet.js';

const { values } = parseArgs({ options: { preset: { type: 'string', default: 'sd15' }, repeat: { type: 'string', default: '5' }, fp16: { type: 'boolean', default: false } } });
const preset = PRESETS[values.preset as PresetName];
const repeat = Number(values.repeat);
const root = mkdtempSync(join(tmpdir(), 'loraserve-bench-resolve-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function graph(build: (b: GraphBuilder) => void, part: 'unet' | 'te') {
  const b = new GraphBuilder({ seed: 0, component: part === 'unet' ? 'unet' : 'text_encoder' });
  build(b);
  const { model } = b.build();
  const layers: TargetLayer[] = discoverTargetLayers(model).map((l) => (values.fp16 ? { ...l, dtype: 'float16' } : l));
  const plan = addLoraBranches(model, layers);
  const targets: LoraTarget[] = layers.map((l) => ({ part, module: l.module, kind: l.op === 'Conv' ? 'conv' : 'linear', inFeatures: l.inFeatures, outFeatures: l.outFeatures, ...(l.kernel ? { kernel: l.kernel } : {}) }));
  return { plan, targets, empty: emptyFeeds(plan), layers };
}
const unet = graph((b) => buildUnet(b, preset.unet), 'unet');
const te = graph((b) => buildTextEncoder(b, preset.textEncoder), 'te');
for (const spec of defaultLoraSpecs(3, preset)) writeLora(root, spec, { unet: unet.layers, textEncoder: te.layers }, 0, preset);
// Only `lora` is read by the resolver.
const model = { lora: { unet, te } } as unknown as LoadedModel;

const library = await LoraLibrary.open(root);
const names = library.list().map((e) => e.name);
const fileBytes = names.reduce((n, name) => n + statSync(join(root, `${name}.safetensors`)).size, 0);
const targets = [...te.targets, ...unet.targets];
const three = names.map((n, i) => ({ name: n, weight: [0.6, 0.8, 0.4][i] }));

global.gc?.();
const heap0 = process.memoryUsage();
let t = performance.now();
for (const n of names) await library.load(n, targets);
const parseMs = performance.now() - t;
let resolver = new LoraResolver(model, library);
// As a render worker does: feed memory touched at load and topped up after each render, whose end releases
// its feeds (LoraResolver.prepare, ResolvedLoras.release).
const render = async (specs: Array<{ name: string; weight: number }>): Promise<number> => {
  const s = performance.now();
  const r = await resolver.resolve(specs);
  const ms = performance.now() - s;
  r.release?.();
  resolver.prepare();
  return ms;
};
resolver.prepare();
t = performance.now();
for (const n of names) await resolver.resolve([{ name: n, weight: 1 }]);
const firstUseMs = performance.now() - t;
global.gc?.();
const heap1 = process.memoryUsage();
// The pre-touched factor memory (LoraResolver.prepare) is reported apart from what the LoRAs hold.
const arena = resolver.arenaBytes;

const never: number[] = [];
const newWeights: number[] = [];
for (let i = 0; i < repeat; i++) {
  resolver = new LoraResolver(model, library); // fresh stacks: every set is never seen
  resolver.prepare();
  for (const n of names) await render([{ name: n, weight: 1 }]);
  never.push(await render(three));
  newWeights.push(await render(three.map((s) => ({ ...s, weight: s.weight * (0.5 + i / 10) }))));
}
const held = heap1.arrayBuffers + heap1.heapUsed - heap0.arrayBuffers - heap0.heapUsed - arena;
console.log(`${preset.name}${values.fp16 ? ' (fp16 graph)' : ''}: ${unet.plan.branches.length} UNet + ${te.plan.branches.length} text-encoder branches; LoRAs ${names.join(', ')} (${mb(fileBytes)} of files)`);
console.log(`  parse 3 files              ${parseMs.toFixed(1)} ms; first use (single-LoRA feeds) ${firstUseMs.toFixed(1)} ms`);
console.log(`  never-seen set of 3        ${median(never).toFixed(1)} ms (median of ${repeat}: ${never.map((x) => x.toFixed(0)).join(' ')})`);
console.log(`  new weights, same set      ${median(newWeights).toFixed(1)} ms (${newWeights.map((x) => x.toFixed(1)).join(' ')})`);
console.log(`  held after loading 3       ${mb(held)} (${(held / fileBytes).toFixed(2)}× file size; adapters ${mb(library.cacheStats().bytes)}); stacked set ${mb(resolver.stackedBytes)}; pre-touched factor memory ${mb(arena)}`);
library.close();
