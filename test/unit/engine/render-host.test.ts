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
import { tinyModelDir } from '../../helpers/tiny-model.js';

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
