/**
 * The render worker thread on a generated tiny model: results, progress per step, cancellation between
 * steps, a free caller event loop, A1111 batch seeds and infotext, and request validation.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { RenderHost } from '../../../src/jobs/render-host.js';
import type { RenderRequest } from '../../../src/engine/request.js';
import { readPngText } from '../../../src/image/png.js';
import { makeTinyModel, tinyModelDir } from '../../helpers/tiny-model.js';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

let host: RenderHost;
before(async () => {
  host = await RenderHost.start(await tinyModelDir(), { kind: 'cpu' });
});
after(async () => {
  await host?.close();
});

const base: RenderRequest = {
  prompt: 'cute 1girl, brown cat ears',
  negativePrompt: 'bad hands',
  steps: 6,
  cfgScale: 7,
  sampler: 'euler_a',
  scheduler: 'automatic',
  flavor: 'native',
  seed: 42,
  rng: 'cpu',
  width: 64,
  height: 64,
  batchSize: 1,
};

test('renders a PNG with A1111 infotext and reports every step', async () => {
  const steps: number[] = [];
  const r = await host.render(base, { onProgress: (p) => steps.push(p.step) });
  assert.deepEqual(steps, [1, 2, 3, 4, 5, 6]);
  assert.equal(r.images.length, 1);
  const meta = await sharp(r.images[0].png).metadata();
  assert.equal(meta.width, 64);
  assert.equal(meta.height, 64);
  const text = readPngText(Buffer.from(r.images[0].png)).parameters;
  assert.match(text, /^cute 1girl, brown cat ears\nNegative prompt: bad hands\nSteps: 6, Sampler: Euler a, Schedule type: Discrete, CFG scale: 7, Seed: 42, Size: 64x64, Model hash: [0-9a-f]{10}, Model: model/);
});

test('same seed → same pixels; batch uses seed, seed+1 like A1111', async () => {
  const a = await host.render(base);
  const b = await host.render({ ...base, batchSize: 2 });
  assert.deepEqual(b.seeds, [42, 43]);
  assert.equal(Buffer.compare(Buffer.from(a.images[0].png), Buffer.from(b.images[0].png)), 0, 'image 0 of the batch equals the single render');
  const c = await host.render({ ...base, seed: 43 });
  assert.equal(Buffer.compare(Buffer.from(c.images[0].png), Buffer.from(b.images[1].png)), 0, 'image 1 of the batch equals a render at seed+1');
  assert.match(b.images[1].infotext, /Seed: 43,/);
});

test('cancellation stops between steps with CANCELLED, and the worker stays usable', async () => {
  const ac = new AbortController();
  const seen: number[] = [];
  await assert.rejects(
    host.render({ ...base, steps: 50 }, { signal: ac.signal, onProgress: (p) => { seen.push(p.step); if (p.step === 3) ac.abort(); } }),
    (e: Error & { code?: string }) => e.code === 'CANCELLED',
  );
  assert.ok(seen.length >= 3 && seen.length < 50, `stopped early (after ${seen.length} steps)`);
  const r = await host.render(base);
  assert.equal(r.images.length, 1);
});

test('the caller event loop stays free while the worker renders', async () => {
  let maxGap = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 5);
  await host.render({ ...base, steps: 30 });
  clearInterval(timer);
  assert.ok(maxGap < 100, `largest event-loop gap ${maxGap.toFixed(1)} ms`);
});

test('bad sizes and steps are refused before any work, with stable codes', async () => {
  await assert.rejects(host.render({ ...base, width: 72 }), (e: Error & { code?: string }) => e.code === 'INVALID_SIZE' && /multiple of 64/.test(e.message));
  await assert.rejects(host.render({ ...base, steps: 0 }), (e: Error & { code?: string }) => e.code === 'INVALID_ARGUMENT');
  await assert.rejects(host.render({ ...base, sampler: 'nope' }), (e: Error & { code?: string }) => e.code === 'INVALID_SAMPLER');
});

test('an unavailable execution provider falls back to CPU with a warning', async () => {
  const warnings: string[] = [];
  const logger = { debug() {}, info() {}, error() {}, warn: (_o: object | string, m?: string) => warnings.push(m ?? String(_o)) };
  const h = await RenderHost.start(await tinyModelDir(), { kind: 'cuda' }, logger);
  try {
    assert.equal(h.model.provider, 'cpu');
    assert.ok(warnings.some((w) => /'cuda' unavailable.*falling back to CPU/.test(w)), warnings.join('\n'));
  } finally {
    await h.close();
  }
});

test('hot LoRA sets move to a merged-weights UNet (--lora-merge-after), reported in timings and cache figures', async () => {
  const tiny = await makeTinyModel({ loras: 2 });
  const names = readdirSync(join(tiny.modelDir, 'loras')).map((f) => f.replace(/\.safetensors$/, '')).sort();
  const hot = await RenderHost.start(tiny.modelDir, { kind: 'cpu' }, undefined, { loraDir: join(tiny.modelDir, 'loras'), loraMerge: { after: 1 } });
  const off = await RenderHost.start(tiny.modelDir, { kind: 'cpu' }, undefined, { loraDir: join(tiny.modelDir, 'loras'), loraMerge: { after: 'off' } });
  try {
    const req: RenderRequest = { ...base, loras: [{ name: names[0], weight: 0.8 }, { name: names[1], weight: -0.5 }] };
    const first = await hot.render(req, {});
    const second = await hot.render(req, {});
    assert.equal(first.timings.mergedUnet, false);
    assert.equal(second.timings.mergedUnet, true);
    assert.equal(hot.loraCache?.mergedBuilds, 1);
    assert.equal(hot.loraCache?.mergedSessions, 1);
    const [a, b] = await Promise.all([first, second].map((r) => sharp(r.images[0].png).raw().toBuffer()));
    let differ = 0;
    for (let i = 0; i < a.length; i++) {
      assert.ok(Math.abs(a[i] - b[i]) <= 1, 'merged and branched renders agree to one 8-bit step');
      if (a[i] !== b[i]) differ++;
    }
    assert.ok(differ <= a.length / 200, `${differ} values differ`);
    assert.equal(first.images[0].infotext, second.images[0].infotext);

    // Other weights are another set: back on the branches, at once.
    assert.equal((await hot.render({ ...req, loras: [{ name: names[0], weight: 0.3 }] }, {})).timings.mergedUnet, false);
    // No LoRAs: the plain graph, bit for bit what the branches at rank 0 give.
    const plain1 = await hot.render(base, {});
    const plain2 = await hot.render(base, {});
    assert.equal(plain2.timings.mergedUnet, true);
    assert.deepEqual(plain2.images[0].png, plain1.images[0].png);

    for (let i = 0; i < 3; i++) assert.equal((await off.render(req, {})).timings.mergedUnet, false);
    assert.equal(off.loraCache?.mergedBuilds, 0);
  } finally {
    await Promise.all([hot.close(), off.close()]);
    tiny.cleanup();
  }
});
