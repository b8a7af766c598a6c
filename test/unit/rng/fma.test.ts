import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fma64, fmaf32 } from '../../../src/tensor/fma.js';

const f = Math.fround;

test('fmaf32 rounds once where a*b+c in float64 then float32 would round twice', () => {
  // exact a*b + c = 1 + 3*2^-24 - 2^-54: just below the float32 midpoint between 1+2^-23 and 1+2^-22.
  // float64 rounds it onto the midpoint, and the tie then goes to the even neighbour 1+2^-22 (wrong).
  const a = f(2 ** -24 * (1 + 2 ** -15));
  const b = f(1 - 2 ** -15);
  const c = f(1 + 2 ** -23);
  assert.equal(f(a * b + c), 1 + 2 ** -22, 'premise: the naive double rounding goes wrong here');
  assert.equal(fmaf32(a, b, c), 1 + 2 ** -23);
  // the same case negated (rounding is symmetric)
  assert.equal(fmaf32(-a, b, -c), -(1 + 2 ** -23));
});

test('fmaf32 agrees with float32(a*b+c) when no double rounding is involved', () => {
  const cases: [number, number, number][] = [
    [1.5, 2.25, -0.125],
    [f(0.1), f(0.2), f(0.3)],
    [f(-3.7), f(1e-3), f(2.5)],
    [0, 5, -0],
  ];
  for (const [a, b, c] of cases) assert.ok(Object.is(fmaf32(a, b, c), f(a * b + c)), `${a} ${b} ${c}`);
});

test('fma64 keeps the product bits that a separate multiply loses', () => {
  // (1+2^-52)(1-2^-52) - 1 = -2^-104 exactly; a*b rounds to 1 first and gives 0.
  assert.equal((1 + 2 ** -52) * (1 - 2 ** -52) - 1, 0);
  assert.equal(fma64(1 + 2 ** -52, 1 - 2 ** -52, -1), -(2 ** -104));
  assert.equal(fma64(3, 0.5, 0.25), 1.75);
});
