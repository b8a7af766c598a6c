/**
 * bench/pipeline: one image, end to end, in one run: wall time, time inside onnxruntime runs, and the share
 * of wall time spent on our side (goal ≤ 2%), in-process and through the worker thread.
 *
 *   node --import tsx bench/pipeline.ts [--model DIR] [--width 64 --height 64 --steps 20 --sampler euler_a --repeat 3]
 *
 * The default model is ../shared/fixtures/tiny-sd15 when present, else models/demo-tiny (see README).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../src/engine/model.js';
import { generate } from '../src/engine/generate.js';
import type { RenderRequest, RenderResult } from '../src/engine/request.js';
import { RenderHost } from '../src/jobs/render-host.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    width: { type: 'string', default: '64' },
    height: { type: 'string', default: '64' },
    steps: { type: 'string', default: '20' },
    sampler: { type: 'string', default: 'euler_a' },
    repeat: { type: 'string', default: '3' },
    device: { type: 'string', default: 'cpu' },
  },
});

const fixture = resolve('../shared/fixtures/tiny-sd15');
const modelDir = resolve(values.model ?? (existsSync(fixture) ? fixture : 'models/demo-tiny'));
const device = { kind: values.device as 'cpu' | 'cuda' | 'webgpu' };
const req: RenderRequest = {
  prompt: 'cute 1girl, brown cat ears, idol costume, holding microphone, on stage',
  negativePrompt: 'worst quality, low quality, bad hands',
  steps: Number(values.steps),
  cfgScale: 7,
  sampler: values.sampler!,
  scheduler: 'automatic',
  flavor: 'native',
  seed: 1234,
  rng: 'cpu',
  width: Number(values.width),
  height: Number(values.height),
  batchSize: 1,
};
const repeat = Number(values.repeat);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function summarize(label: string, runs: Array<{ wall: number; r: RenderResult }>): void {
  const wall = median(runs.map((x) => x.wall));
  const ort = median(runs.map((x) => x.r.timings.ortMs));
  const png = median(runs.map((x) => x.r.timings.encodeMs));
  const js = wall - ort;
  console.log(
    `${label.padEnd(22)} wall ${wall.toFixed(1).padStart(8)} ms   onnxruntime ${ort.toFixed(1).padStart(8)} ms   ` +
      `outside onnxruntime ${js.toFixed(1).padStart(7)} ms = ${((100 * js) / wall).toFixed(2)}% of wall ` +
      `(PNG encode ${png.toFixed(1)} ms; excluding it ${((100 * (js - png)) / wall).toFixed(2)}%)`,
  );
}

console.log(`model ${modelDir}  ${req.width}x${req.height}  ${req.steps} steps  ${req.sampler}  CFG batch 2  device ${device.kind}  median of ${repeat}`);

const model = await loadModel(modelDir, { device });
await generate(model, { ...req, steps: 1 }); // warm-up: first-run allocations and shape specialisation
const inproc: Array<{ wall: number; r: RenderResult }> = [];
for (let i = 0; i < repeat; i++) {
  const t = performance.now();
  const r = await generate(model, req);
  inproc.push({ wall: performance.now() - t, r });
}
await model.release();
summarize('in-process', inproc);

const host = await RenderHost.start(modelDir, device);
await host.render({ ...req, steps: 1 });
const threaded: Array<{ wall: number; r: RenderResult }> = [];
for (let i = 0; i < repeat; i++) {
  const t = performance.now();
  const r = await host.render(req);
  threaded.push({ wall: performance.now() - t, r });
}
await host.close();
summarize('worker thread', threaded);
const unet = median(inproc.map((x) => x.r.timings.denoiseMs / x.r.timings.unetCalls));
console.log(`per UNet call (CFG batch 2, incl. sampler math): ${unet.toFixed(2)} ms`);
console.log('diffusers on this fixture: no timing is recorded in its README, so no ratio is printed.');
