/**
 * bench/lora: the cost of request-time LoRA, measured in one run on a generated model.
 *
 *   node --expose-gc --import tsx bench/lora.ts [--preset tiny|sd15] [--latent 64] [--repeat 21 (tiny) / 3] [--rank 32]
 *
 * Prints:
 *   - UNet step time (CFG batch 2) on the unmodified graph, and on the LoRA-branched graph with 0, 1 and 3
 *     active LoRAs — overhead ratios against the unmodified graph (goal ≤ 3 %);
 *   - time from a never-seen LoRA set, and from new weights for a seen set, to the end of the first UNet step,
 *     split into "resolve" (parse on a miss + build feeds) and the step itself (goal: resolve ≤ 50 ms on sd15);
 *   - the same steps on merged-weights sessions (what a hot set runs on; src/engine/merged-unets.ts), and the
 *     time to build one (merge W + ΔW, write, create the session);
 *   - memory per loaded LoRA against its file size (the parsed factors, and the process RSS around parsing),
 *     and the bytes of the feed cache (stacked and scaled factors, bounded).
 * bench/lora-resolve.ts measures the resolve side alone, without sessions (seconds on sd15).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../src/engine/model.js';
import { LoraResolver } from '../src/engine/lora-resolver.js';
import { MergedUnets } from '../src/engine/merged-unets.js';
import type { LoraSpec } from '../src/engine/request.js';
import { LoraLibrary } from '../src/lora/index.js';
import { OnnxSession } from '../src/onnx/runtime.js';
import type { HostTensor } from '../src/tensor/host-tensor.js';
import { synthesize, type PresetName } from '../src/synth/index.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'tiny' },
    latent: { type: 'string' },
    repeat: { type: 'string' },
    rank: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const preset = values.preset as PresetName;
const latent = Number(values.latent ?? (preset === 'tiny' ? 8 : 64));
// The tiny step is ~10 ms, so other load on the machine shows; more interleaved rounds steady the median.
const repeat = Number(values.repeat ?? (preset === 'tiny' ? 21 : 3));

const root = mkdtempSync(join(tmpdir(), 'loraserve-bench-lora-'));
const cleanup = () => (values.keep ? console.log(`kept ${root}`) : rmSync(root, { recursive: true, force: true }));
process.on('exit', cleanup);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
const pct = (a: number, b: number) => `${a >= b ? '+' : ''}${((100 * (a - b)) / b).toFixed(1)}%`;
const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

let t = performance.now();
const synth = await synthesize({ preset, outDir: join(root, 'model'), seed: 0, loras: 3, loraRank: values.rank ? Number(values.rank) : undefined });
console.log(`generated ${preset} in ${((performance.now() - t) / 1000).toFixed(1)} s; LoRAs: ${synth.loras.map((p) => `${basename(p)} (${mb(statSync(p).size)})`).join(', ')}`);

t = performance.now();
const model = await loadModel(synth.outDir, { device: { kind: 'cpu' } });
const loadMs = performance.now() - t;
t = performance.now();
const plain = await OnnxSession.create(join(synth.outDir, 'unet/model.onnx'), { device: { kind: 'cpu' }, label: 'unet (unmodified)' });
const plainCreateMs = performance.now() - t;
console.log(`load (all sessions, LoRA-branched) ${(loadMs / 1000).toFixed(1)} s; unmodified UNet session alone ${(plainCreateMs / 1000).toFixed(2)} s — the floor of one merged-weights rebuild`);

const sig = model.unetSig;
const rows = 2;
const per = sig.latentChannels * latent * latent;
const feeds: Record<string, HostTensor> = {
  [sig.sample]: { type: 'float32', data: Float32Array.from({ length: rows * per }, (_, i) => Math.sin(i)), dims: [rows, sig.latentChannels, latent, latent] },
  [sig.timestep]: { type: 'float32', data: new Float32Array(rows).fill(500), dims: [rows] },
  [sig.context]: { type: 'float32', data: Float32Array.from({ length: rows * 77 * sig.contextDim }, (_, i) => Math.cos(i) * 0.5), dims: [rows, 77, sig.contextDim] },
};

let settle = false;
async function step(session: OnnxSession, extra: Record<string, HostTensor>): Promise<number> {
  // Each session has its own thread pool: the first run after the other session's ran slower by several ms on
  // tiny, so short steps are timed on a second run (on sd15 that difference is lost in seconds).
  if (settle) await session.run({ ...feeds, ...extra });
  const s = performance.now();
  await session.run({ ...feeds, ...extra });
  return performance.now() - s;
}

await step(plain, {}); // warm-up both graphs at this shape before any memory reading
settle = (await step(model.unet, model.lora.unet.empty)) < 200;

const library = await LoraLibrary.open(join(synth.outDir, 'loras'));
const resolver = new LoraResolver(model, library);
// As a render worker does: feed memory touched at load, topped up after each render (whose end releases its feeds).
resolver.prepare();
const afterRender = (r: { release?: () => void }) => {
  r.release?.();
  resolver.prepare();
};
const names = library.list().map((e) => e.name).slice(0, 3);
const one: LoraSpec[] = [{ name: names[0], weight: 0.6 }];
const three: LoraSpec[] = names.map((n, i) => ({ name: n, weight: [0.6, 0.8, 0.4][i] }));
const targets = [...model.lora.te.targets, ...model.lora.unet.targets];
const fileBytes = names.reduce((n, name) => n + statSync(join(synth.outDir, 'loras', `${name}.safetensors`)).size, 0);

// first use of a file: parse + check against the model (the library keeps the parsed adapter)
global.gc?.();
const rss0 = process.memoryUsage().rss;
t = performance.now();
for (const n of names) await library.load(n, targets);
const parseMs = performance.now() - t;
global.gc?.();
const rss1 = process.memoryUsage().rss;
const adapterBytes = library.cacheStats().bytes;
let singleMs = 0;
for (const n of names) {
  t = performance.now();
  const r = await resolver.resolve([{ name: n, weight: 1 }]);
  singleMs += performance.now() - t;
  afterRender(r);
}

// a never-seen combination of loaded LoRAs → first step
t = performance.now();
const r3 = await resolver.resolve(three);
const firstResolve = performance.now() - t;
const firstStep = await step(model.unet, r3.feeds.unet);
resolver.prepare(); // r3's feeds stay leased: the step loop below uses them

// new weights for the seen set → first step
t = performance.now();
const r3b = await resolver.resolve(three.map((s) => ({ ...s, weight: s.weight * 0.5 })));
const newWeightsResolve = performance.now() - t;
const newWeightsStep = await step(model.unet, r3b.feeds.unet);
afterRender(r3b);

const r1 = await resolver.resolve(one);

const times = { plain: [] as number[], zero: [] as number[], one: [] as number[], three: [] as number[] };
for (let i = 0; i < repeat; i++) {
  // interleaved, so drift from other load on the machine hits every variant alike
  times.plain.push(await step(plain, {}));
  times.zero.push(await step(model.unet, model.lora.unet.empty));
  times.one.push(await step(model.unet, r1.feeds.unet));
  times.three.push(await step(model.unet, r3.feeds.unet));
}

// The other way (src/engine/merged-unets.ts): a hot set's own session with the LoRAs merged into its weights.
// One at a time (an SD1.5-shaped fp32 session is ~3.4 GB), each timed interleaved with the unmodified graph.
const mergedRows: Array<{ label: string; step: number; base: number; buildMs: number; rss: number }> = [];
let unetBytes = 0;
for (const [label, specs] of [['0 LoRAs (plain)', []], ['1 LoRA', one], ['3 LoRAs', three]] as const) {
  const merged = new MergedUnets(model, { after: 0, maxBytes: Number.MAX_SAFE_INTEGER });
  unetBytes = merged.unetBytes;
  const mergedResolver = new LoraResolver(model, library, { merged });
  global.gc?.();
  const before = process.memoryUsage().rss;
  t = performance.now();
  const session = (await mergedResolver.resolve(specs)).unet!;
  const buildMs = performance.now() - t;
  global.gc?.();
  const rss = process.memoryUsage().rss - before;
  await step(session, {});
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < repeat; i++) {
    a.push(await step(plain, {}));
    b.push(await step(session, {}));
  }
  mergedRows.push({ label, step: median(b), base: median(a), buildMs, rss });
  await merged.release();
}
const base = median(times.plain);
console.log(`\nUNet step, CFG batch 2, latent ${latent}x${latent} (${latent * 8}x${latent * 8} px), median of ${repeat}, ${model.lora.unet.plan.branches.length} branched layers:`);
console.log(`  unmodified graph          ${base.toFixed(1).padStart(9)} ms`);
console.log(`  branched, 0 LoRAs         ${median(times.zero).toFixed(1).padStart(9)} ms  ${pct(median(times.zero), base)}`);
console.log(`  branched, 1 LoRA          ${median(times.one).toFixed(1).padStart(9)} ms  ${pct(median(times.one), base)}`);
console.log(`  branched, 3 LoRAs         ${median(times.three).toFixed(1).padStart(9)} ms  ${pct(median(times.three), base)}`);
for (const r of mergedRows) {
  console.log(`  merged, ${r.label.padEnd(17)}${r.step.toFixed(1).padStart(9)} ms  ${pct(r.step, r.base)} vs the unmodified graph timed beside it (${r.base.toFixed(1)} ms); built in ${r.buildMs.toFixed(0)} ms`);
}
console.log(`  a server (--lora-merge-after 2, the default) renders a set's first 2 requests on the branches, then builds once and waits for it`);
console.log(`\nswitching (request → its first UNet step can start):`);
console.log(`  first use of 3 LoRA files parse + shape check ${parseMs.toFixed(1)} ms (once per file; kept); then each alone: feeds ${singleMs.toFixed(1)} ms for the 3`);
console.log(`  never-seen set of 3       feeds ${firstResolve.toFixed(2)} ms, then the step (${firstStep.toFixed(1)} ms)`);
console.log(`  new weights, same set     feeds ${newWeightsResolve.toFixed(2)} ms, then the step (${newWeightsStep.toFixed(1)} ms)`);
console.log(`  merged-weights session    ${mergedRows[2].buildMs.toFixed(0)} ms to build for the set of 3 (merge + write + session creation; the plain session alone ${plainCreateMs.toFixed(0)} ms)`);
console.log(`\nmemory: 3 LoRAs, ${mb(fileBytes)} of files → parsed factors ${mb(adapterBytes)} (${(adapterBytes / fileBytes).toFixed(2)}× file size), process RSS +${mb(rss1 - rss0)} around parsing`);
console.log(`  feed cache (stacked and scaled factors of the sets above, LRU-bounded): ${mb(resolver.stackedBytes)}`);
console.log(`  one merged-weights session (3-LoRA set): process RSS +${mb(mergedRows[2].rss)}; the UNet's weights are ${mb(unetBytes)} (what --lora-merge-mb counts per session)`);

library.close();
await plain.release();
await model.release();
