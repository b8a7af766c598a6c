import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fmaF32, fmaF64, torchLinspace } from '../../../src/diffusion/torch-math.js';

test('fmaF32 rounds a·b + c once (the double-rounding midpoint case)', () => {
  // a·b + c = 1 + 3·2^-24 − 2^-54: just below the float32 midpoint between 1 + 2^-23 and 1 + 2^-22.
  const a = 2 ** -24 * (1 - 2 ** -15);
  const b = 1 + 2 ** -15;
  const c = 1 + 2 ** -23;
  assert.equal(Math.fround(a * b + c), 1 + 2 ** -22); // two roundings land on the tie and go to even
  assert.equal(fmaF32(a, b, c), 1 + 2 ** -23);
  assert.equal(fmaF32(3, 0.5, 1), 2.5);
  assert.equal(fmaF32(-2, 0.25, 0.5), 0);
});

test('fmaF64 keeps the product bits a·b + c loses', () => {
  const a = 1 + 2 ** -30;
  const b = 1 - 2 ** -30;
  assert.equal(a * b - 1, 0); // 1 − 2^-60 rounds to 1
  assert.equal(fmaF64(a, b, -1), -(2 ** -60));
});

test('torchLinspace: endpoints, halves counted from each end, float32 steps', () => {
  assert.deepEqual(Array.from(torchLinspace(0, 1, 5, 'float32')), [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(Array.from(torchLinspace(3, 3, 1, 'float64')), [3]);
  const t = torchLinspace(999, 0, 8, 'float32');
  const step = Math.fround(-999 / 7);
  // first half from 999 (one fused rounding each), second half from 0
  assert.deepEqual(Array.from(t), [
    999,
    Math.fround(999 + step),
    Math.fround(999 + 2 * step),
    Math.fround(999 + 3 * step),
    Math.fround(-step * 3),
    Math.fround(-step * 2),
    Math.fround(-step),
    0,
  ]);
  const long = torchLinspace(Math.sqrt(0.00085), Math.sqrt(0.012), 1000, 'float32');
  assert.equal(long[0], Math.fround(Math.sqrt(0.00085)));
  assert.equal(long[999], Math.fround(Math.sqrt(0.012)));
  for (let i = 1; i < 1000; i++) assert.ok(long[i] > long[i - 1]);
});
