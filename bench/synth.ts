/**
 * bench/synth: how long `synthesize` takes for a preset, the peak memory while generating (goal: < 1.5× the
 * pipeline's size, i.e. streaming works), and optionally how long the generated UNet takes to load and to
 * run one step at a 64×64 latent (512×512 image) through the project's onnxruntime chokepoint.
 *
 *   node --import tsx bench/synth.ts [--preset tiny|tiny-sd2|sd15|sd2] [--out DIR] [--keep] [--unet-step] [--seed N]
 *
 * Without --out the folder goes to the OS temp dir and is deleted afterwards (sd15 is 4.2 GB) unless --keep.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { OnnxSession } from '../src/onnx/runtime.js';
import { isPresetName } from '../src/synth/presets.js';
import { synthesize } from '../src/synth/index.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'tiny' },
    out: { type: 'string' },
    seed: { type: 'string', default: '0' },
    keep: { type: 'boolean', default: false },
    'unet-step': { type: 'boolean', default: false },
  },
});
if (!isPresetName(values.preset!)) throw new Error(`unknown preset ${values.preset}`);

const root = values.out ? undefined : mkdtempSync(join(tmpdir(), 'loraserve-bench-synth-'));
const outDir = resolve(values.out ?? join(root!, values.preset!));
const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;

try {
  const t0 = performance.now();
  const r = await synthesize({ preset: values.preset, outDir, seed: Number(values.seed), overwrite: true });
  const seconds = (performance.now() - t0) / 1000;
  // maxRSS covers the whole process so far, which is only the generator at this point.
  const peak = process.resourceUsage().maxRSS * 1024;
  console.log(`${values.preset}: ${gib(r.bytes)} written in ${seconds.toFixed(1)} s; peak RSS ${gib(peak)} (${((peak / r.bytes) * 100).toFixed(1)}% of the output)`);

  if (values['unet-step']) {
    const manifest = JSON.parse(readFileSync(join(outDir, 'synth.json'), 'utf8')) as { unet: { crossAttentionDim: number } };
    const dim = manifest.unet.crossAttentionDim;
    let t = performance.now();
    const unet = await OnnxSession.create(join(outDir, 'unet', 'model.onnx'), { device: { kind: 'cpu' }, label: 'unet' });
    console.log(`unet load: ${((performance.now() - t) / 1000).toFixed(1)} s`);
    for (const batch of [1, 2]) {
      const n = batch * 4 * 64 * 64;
      const sample = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 1.5);
      const context = Float32Array.from({ length: batch * 77 * dim }, (_, i) => Math.cos(i * 78.233));
      t = performance.now();
      const out = await unet.run({
        sample: { type: 'float32', data: sample, dims: [batch, 4, 64, 64] },
        timestep: { type: 'float32', data: new Float32Array(batch).fill(500), dims: [batch] },
        encoder_hidden_states: { type: 'float32', data: context, dims: [batch, 77, dim] },
      });
      const data = out.out_sample.data as Float32Array;
      const finite = data.every(Number.isFinite);
      console.log(`unet step, batch ${batch}, 64×64 latent: ${((performance.now() - t) / 1000).toFixed(2)} s, finite: ${finite}`);
    }
    await unet.release();
  }
} finally {
  if (root && !values.keep) rmSync(root, { recursive: true, force: true });
}
