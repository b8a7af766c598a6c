/**
 * The generated models load in onnxruntime-node and behave like a (random) Stable Diffusion: every component
 * runs at 64×64 with finite, O(1) outputs, the UNet listens to the text context, and a 20-step Euler render
 * with classifier-free guidance stays finite at every step, for both the epsilon (SD1) and v (SD2) variants.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { makeTiny } from './support.js';

ort.env.logLevel = 'error';

type Tiny = Awaited<ReturnType<typeof makeTiny>>;
let sd1: Tiny;
let sd2: Tiny;
before(async () => {
  sd1 = await makeTiny({ loras: 0 });
  sd2 = await makeTiny({ preset: 'tiny-sd2', loras: 0 });
});
after(() => {
  sd1?.cleanup();
  sd2?.cleanup();
});

function randn(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  const next = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 1) / 4294967297;
  for (let i = 0; i < n; i++) a[i] = Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
  return a;
}

function rms(a: Float32Array): number {
  let s = 0;
  for (const v of a) s += v * v;
  return Math.sqrt(s / a.length);
}

function assertSane(name: string, a: Float32Array, lo = 0.02, hi = 5): void {
  assert.ok(a.every(Number.isFinite), `${name} has NaN/Inf`);
  const r = rms(a);
  assert.ok(r > lo && r < hi, `${name} rms ${r}`);
}

const session = (dir: string, part: string) => ort.InferenceSession.create(join(dir, part, 'model.onnx'), { logSeverityLevel: 3 });

async function encodeText(dir: string, ids: number[][]): Promise<ort.Tensor> {
  const te = await session(dir, 'text_encoder');
  const flat = new Int32Array(ids.length * 77);
  ids.forEach((row, r) => flat.set(row, r * 77));
  const out = await te.run({ input_ids: new ort.Tensor('int32', flat, [ids.length, 77]) });
  assert.deepEqual(te.inputNames, ['input_ids']);
  assert.deepEqual(te.outputNames, ['last_hidden_state', 'pooler_output']);
  assert.deepEqual(out.pooler_output.dims, [ids.length, 32]);
  assertSane('last_hidden_state', out.last_hidden_state.data as Float32Array, 0.3, 3);
  await te.release();
  return out.last_hidden_state;
}

/** [BOS, tokens, EOS, pad…] with the folder's own special-token ids (pad: EOS for SD1, "!" for SD2). */
function promptIds(dir: string, tokens: number[]): number[] {
  const vocab = JSON.parse(readFileSync(join(dir, 'tokenizer/vocab.json'), 'utf8')) as Record<string, number>;
  const padToken = JSON.parse(readFileSync(join(dir, 'tokenizer/tokenizer_config.json'), 'utf8')).pad_token as string;
  const row = new Array(77).fill(vocab[padToken]);
  row[0] = vocab['<|startoftext|>'];
  tokens.forEach((t, i) => (row[i + 1] = t));
  row[tokens.length + 1] = vocab['<|endoftext|>'];
  return row;
}

test('all four tiny models run at 64×64 with finite O(1) outputs', async () => {
  const dir = sd1.outDir;
  const ctx = await encodeText(dir, [promptIds(dir, [600, 601, 602]), promptIds(dir, [])]);
  const unet = await session(dir, 'unet');
  assert.deepEqual(unet.inputNames, ['sample', 'timestep', 'encoder_hidden_states']);
  const feeds = {
    sample: new ort.Tensor('float32', randn(2 * 4 * 8 * 8, 1), [2, 4, 8, 8]),
    timestep: new ort.Tensor('float32', Float32Array.of(500, 500), [2]),
    encoder_hidden_states: ctx,
  };
  const out = (await unet.run(feeds)).out_sample;
  assert.deepEqual(out.dims, [2, 4, 8, 8]);
  const eps = out.data as Float32Array;
  assertSane('out_sample', eps);
  // The text context matters (the two rows differ only in their prompt).
  const half = eps.length / 2;
  let diff = 0;
  for (let i = 0; i < half; i++) diff += (eps[i] - eps[i + half]) ** 2;
  assert.ok(Math.sqrt(diff / half) / rms(eps) > 0.02, 'UNet output ignores the prompt');
  await unet.release();

  const dec = await session(dir, 'vae_decoder');
  const image = (await dec.run({ latent_sample: new ort.Tensor('float32', randn(4 * 8 * 8, 2).map((v) => v / 0.18215), [1, 4, 8, 8]) })).sample;
  assert.deepEqual(image.dims, [1, 3, 64, 64]);
  assertSane('vae_decoder sample', image.data as Float32Array);
  const enc = await session(dir, 'vae_encoder');
  const pixels = randn(3 * 64 * 64, 3).map((v) => Math.tanh(v));
  const run = async () => (await enc.run({ sample: new ort.Tensor('float32', pixels, [1, 3, 64, 64]) })).latent_sample;
  const latent = await run();
  assert.deepEqual(latent.dims, [1, 4, 8, 8]);
  assertSane('vae_encoder latent_sample', latent.data as Float32Array);
  assert.deepEqual((await run()).data, latent.data, 'vae_encoder must be deterministic (distribution mean)');
});

/** k-diffusion Euler over SD's scaled-linear schedule, with CFG 7.5 on a [cond, uncond] batch. */
async function render(dir: string, prediction: 'epsilon' | 'v'): Promise<void> {
  const ctx = await encodeText(dir, [promptIds(dir, [600, 601, 602]), promptIds(dir, [])]);
  const unet = await session(dir, 'unet');
  const alphas: number[] = [];
  let prod = 1;
  for (let i = 0; i < 1000; i++) {
    const beta = (Math.sqrt(0.00085) + ((Math.sqrt(0.012) - Math.sqrt(0.00085)) * i) / 999) ** 2;
    prod *= 1 - beta;
    alphas.push(prod);
  }
  const steps = 20;
  const ts = Array.from({ length: steps }, (_, i) => Math.round(999 - (999 * i) / (steps - 1)));
  const sigmas = [...ts.map((t) => Math.sqrt((1 - alphas[t]) / alphas[t])), 0];
  const n = 4 * 8 * 8;
  const x = randn(n, 42).map((v) => v * sigmas[0]);
  for (let i = 0; i < steps; i++) {
    const s = sigmas[i];
    const cIn = 1 / Math.sqrt(s * s + 1);
    const input = new Float32Array(2 * n);
    for (let j = 0; j < n; j++) input[j] = input[j + n] = x[j] * cIn;
    const out = (
      await unet.run({
        sample: new ort.Tensor('float32', input, [2, 4, 8, 8]),
        timestep: new ort.Tensor('float32', Float32Array.of(ts[i], ts[i]), [2]),
        encoder_hidden_states: ctx,
      })
    ).out_sample.data as Float32Array;
    assert.ok(out.every(Number.isFinite), `UNet output not finite at step ${i + 1}`);
    for (let j = 0; j < n; j++) {
      const m = out[j + n] + 7.5 * (out[j] - out[j + n]);
      // epsilon: d = eps; v: denoised = x/(σ²+1) − σ·v/√(σ²+1), d = (x − denoised)/σ
      const d = prediction === 'epsilon' ? m : (x[j] - (x[j] / (s * s + 1) - (s * m) / Math.sqrt(s * s + 1))) / s;
      x[j] += (sigmas[i + 1] - s) * d;
    }
    assert.ok(x.every(Number.isFinite), `latents not finite after step ${i + 1}`);
  }
  await unet.release();
  const dec = await session(dir, 'vae_decoder');
  const image = (await dec.run({ latent_sample: new ort.Tensor('float32', x.map((v) => v / 0.18215), [1, 4, 8, 8]) })).sample.data as Float32Array;
  assert.ok(image.every(Number.isFinite), 'decoded image not finite');
}

test('a 20-step Euler render with CFG stays finite (tiny, epsilon)', async () => {
  await render(sd1.outDir, 'epsilon');
});

test('a 20-step Euler render with CFG stays finite (tiny-sd2, v-prediction, "!" padding)', async () => {
  await render(sd2.outDir, 'v');
});
