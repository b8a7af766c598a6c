import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createNoiseGenerator } from '../../../src/diffusion/rng/index.js';

const nv = (seed: number | bigint) => createNoiseGenerator('nv', seed);
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

test('nv: the example in rng_philox.py\'s docstring (Generator(0).randn((3, 4))), to its 2.6e-7 CUDA gap', () => {
  // Upstream: AUTOMATIC1111/stable-diffusion-webui modules/rng_philox.py. Those numbers came from real CUDA,
  // which runs Box-Muller in float32; the Python code (and we) run it in float64 and differ slightly.
  const expected = [
    -0.92466259, -0.42534415, -2.6438457, 0.14518388, -0.12086647, -0.57972564, -0.62285122, -0.32838709,
    -1.07454231, -0.36314407, -1.67105067, 2.26550497,
  ];
  const got = nv(0).randn([3, 4]);
  for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(got[i] - expected[i]) < 1e-6, `[${i}] ${got[i]}`);
});

test('nv: deterministic, and every prefix of a call is shape-independent', () => {
  const a = nv(1234).randn([1, 4, 8, 8]);
  assert.deepEqual(bits(nv(1234).randn([1, 4, 8, 8])), bits(a));
  assert.deepEqual(bits(nv(1234).randn([1, 4, 2, 2])), bits(a.subarray(0, 16)));
  assert.deepEqual(bits(nv(1234).randn([2, 4, 8, 8]).subarray(0, 256)), bits(a));
  assert.deepEqual(bits(nv(1234).randn([1, 4, 5, 5])), bits(a.subarray(0, 100)));
});

test('nv: each randn call advances the offset by one, whatever its size', () => {
  const g = nv(42);
  const first = g.randn([1, 4, 8, 8]);
  const second = g.randn([1, 4, 8, 8]);
  assert.notDeepEqual(bits(second), bits(first));
  // a different-sized first call still moves to the same second stream
  const h = nv(42);
  h.randn([3]);
  assert.deepEqual(bits(h.randn([1, 4, 2, 2])), bits(second.subarray(0, 16)));
});

test('nv: the full 64-bit seed matters (unlike torch cpu)', () => {
  assert.notDeepEqual(bits(nv(2 ** 32 + 5).randn([16])), bits(nv(5).randn([16])));
  assert.deepEqual(bits(nv(2 ** 40 + 3).randn([16])), bits(nv((1n << 40n) + 3n).randn([16])));
  assert.doesNotThrow(() => nv((1n << 64n) - 1n).randn([4]));
});
